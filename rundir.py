"""Run directories of vpd.py: creating one (or reopening it for --resume), what a step writes there (metrics.jsonl,
samples.jsonl, health warnings), checkpoints (save, load, restore), and learning curves of several runs
(python vpd.py --plot RUN_DIR ... --out curves.png)."""
from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import shutil
import time

import torch

import lm
from lm import UserError


def make_run_dir(cfg, resume: tuple[str, dict] | None) -> str:
    """runs/<task>-<algo>-<time>, or --output-dir, with the run's config.json; a resumed run's own directory, its
    logs cut back to the checkpoint (lines logged after it, by a crash, are dropped: those steps run again). Under
    torchrun rank 0 makes it and every rank gets its name."""
    error = None
    if lm.rank() == 0:
        try:
            run_dir = _make_run_dir(cfg, resume)
        except UserError as e:
            run_dir, error = None, str(e)
    run_dir, error = lm.all_gather_list([(run_dir, error)] if lm.rank() == 0 else [])[0]
    if error:
        raise UserError(error)
    return run_dir


def _make_run_dir(cfg, resume: tuple[str, dict] | None) -> str:
    if resume:
        run_dir = os.path.dirname(os.path.abspath(resume[0]))
        for name in ("metrics.jsonl", "samples.jsonl"):
            path = os.path.join(run_dir, name)
            if os.path.exists(path):
                keep = [line for line in open(path) if json.loads(line)["step"] <= resume[1]["state"]["step"]]
                with open(path, "w") as f:
                    f.writelines(keep)
        return run_dir
    task_name = re.sub(r"[^\w.-]+", "_", os.path.basename(cfg.task))   # path/to/my.py:Cls -> my.py_Cls
    run_dir = cfg.output_dir or os.path.join("runs", f"{task_name}-{cfg.algo}-{time.strftime('%Y%m%d-%H%M%S')}")
    if os.path.exists(os.path.join(run_dir, "metrics.jsonl")):
        raise UserError(f"{run_dir} already holds a run; use --resume {run_dir} or another --output-dir")
    os.makedirs(run_dir, exist_ok=True)
    with open(os.path.join(run_dir, "config.json"), "w") as f:
        json.dump(dataclasses.asdict(cfg), f, indent=1)
    return run_dir


def log_metrics(run_dir: str, m: dict) -> None:
    with open(os.path.join(run_dir, "metrics.jsonl"), "a") as f:   # NaN/inf -> null (strict JSON)
        f.write(json.dumps({k: v if not isinstance(v, float) or math.isfinite(v) else None for k, v in m.items()})
                + "\n")


def log_samples(run_dir: str, step: int, tok, rollouts: list) -> None:
    """A few rollouts per step, with what the teacher read, to samples.jsonl."""
    with open(os.path.join(run_dir, "samples.jsonl"), "a") as f:
        for r in rollouts:
            f.write(json.dumps({"step": step, "prompt": tok.decode(r.prompt_ids), "completion": r.text, "reward":
                                r.reward, "feedback": r.feedback, "teacher_prompt": r.teacher_prompt}) + "\n")


HEALTH = [("frac_context", 0.05, "fewer than 5% of rollouts have a teacher context: the M-step has almost nothing "
                              "to learn from"),
          ("student_entropy", 1e-3, "student entropy is ~0: the policy has collapsed to deterministic outputs"),
          ("grad_norm", 1e-7, "gradient norm is ~0: nothing is being learned"),
          ("completion_len", 1.5, "completions are ~1 token long")]


def health_warnings(recent: list[dict]) -> list[str]:
    """Signs of collapse over the last steps (pitfalls 5, 9), from HEALTH: a metric whose mean over the last >= 10
    steps is below its floor (frac_context only where the last step logged one: not GRPO)."""
    def mean(key):
        vals = [m[key] for m in recent if isinstance(m.get(key), float) and math.isfinite(m[key])]
        return sum(vals) / len(vals) if vals else float("nan")
    return [msg for key, floor, msg in HEALTH
            if len(recent) >= 10 and mean(key) < floor and (key != "frac_context" or key in recent[-1])]


def save_checkpoint(run) -> None:
    """run_dir/ckpt, written atomically: the model and tokenizer (save_pretrained), the SDPO teacher and E-step prior
    copies, and trainer_state.pt (trainer state, both optimizers keyed by parameter names, RNG, config), so that
    --resume continues exactly. Whole tensors, gathered from the ranks under torchrun: a run resumes at any world
    size. `run` is the namespace vpd.setup builds."""
    sd, osd = lm.full_state(run.model, run.opt)              # collectives first: every rank takes part
    e_osd = lm.full_state(run.model, run.e_opt)[1] if run.e_opt not in (None, run.opt) else None
    copies = {name: lm.full_state(m)[0] for name, m in (("teacher", run.teacher_copy), ("prior", run.prior_copy))
              if m is not None}
    buffer = lm.all_gather_list([dataclasses.asdict(r) for r in run.buffer])
    if lm.rank() == 0:
        run.state.update(data_rng=run.data_rng.getstate(), buffer=buffer, e=dataclasses.asdict(run.es))
        tmp, final, old = (os.path.join(run.run_dir, d) for d in ("ckpt.tmp", "ckpt", "ckpt.old"))
        shutil.rmtree(tmp, ignore_errors=True)
        run.model.save_pretrained(tmp, **({"state_dict": sd} if sd is not None else {}))
        run.tok.save_pretrained(tmp)
        for name, m in (("teacher", run.teacher_copy), ("prior", run.prior_copy)):
            if m is not None:
                m.save_pretrained(os.path.join(tmp, name), **({"state_dict": copies[name]} if copies[name] else {}))
        rng = {"torch": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available()
               else None}
        torch.save({"state": run.state, "optimizer": osd, "rng": rng, "e_optimizer": e_osd,
                    "config": dataclasses.asdict(run.cfg)}, os.path.join(tmp, "trainer_state.pt"))
        if os.path.exists(final):
            os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    lm.all_gather_list([])                                   # a barrier: no rank goes on before the files are there


def load_checkpoint(path: str) -> tuple[str, dict]:
    """Returns (checkpoint dir, saved trainer state) from a run dir or its ckpt/ dir; older checkpoints upgraded."""
    ckpt = path if os.path.exists(os.path.join(path, "trainer_state.pt")) else os.path.join(path, "ckpt")
    try:
        saved = torch.load(os.path.join(ckpt, "trainer_state.pt"), weights_only=False)
    except Exception as e:  # noqa: BLE001
        raise UserError(f"cannot resume from {path!r} ({type(e).__name__}): give a run directory written by "
                        "vpd.py (it holds ckpt/trainer_state.pt)") from None
    st, c = saved["state"], saved["config"]
    if "e" not in st:   # written before the E-step state was one object (vpd.EState): beta, delta, delta_count
        st["e"] = {"beta": st["beta"], "lr": c.get("e_lr") or c["lr"], "ratio_mean": st["delta"] / st["beta"],
                   "count": st["delta_count"]}
    for gone in ("e_target_kl", "e_adapt"):   # settings of the teacher-student KL controller, now the trust region
        c.pop(gone, None)
    if c.get("e_optimizer") == "sign":
        c["e_optimizer"] = "m-precond"       # sign descent was m-precond without the M-step's moments
    if "ratio_mean" in st["e"]:   # before delta was weighted by rollouts: one weight per E-step
        e = st["e"]
        st["e"] = {"lr": e["lr"], "delta_sum": e["beta"] * e["ratio_mean"] * e["count"], "delta_n": e["count"]}
    return ckpt, saved


def restore_copies(ckpt: str, model, teacher_copy, prior_copy) -> None:
    """The SDPO teacher and E-step prior copies from a checkpoint, before they are sharded."""
    for name, m in (("teacher", teacher_copy), ("prior", prior_copy)):
        if m is not None:
            m.load_state_dict(type(model).from_pretrained(os.path.join(ckpt, name)).state_dict())


def restore_checkpoint(run, ckpt: str, saved: dict) -> None:
    """Trainer state, optimizers and RNG from a checkpoint (the model and the copies were loaded from it). The buffered
    rollouts are shared out again over the ranks, whatever their number when they were saved."""
    run.state = saved["state"]
    buffer = run.state["buffer"]
    run.state["buffer"] = buffer[lm.rank() * len(buffer) // lm.world():(lm.rank() + 1) * len(buffer) // lm.world()]
    lm.load_optimizer_state(run.model, run.opt, saved["optimizer"])
    if run.e_opt not in (None, run.opt) and saved.get("e_optimizer"):   # (checkpoints from before it had none)
        lm.load_optimizer_state(run.model, run.e_opt, saved["e_optimizer"])
    torch.set_rng_state(saved["rng"]["torch"])
    if saved["rng"]["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(saved["rng"]["cuda"])


def plot(run_dirs: list[str], out: str) -> None:
    """Runs named NAME-sN (seeds) are grouped: mean line and min-max band per group, one colour each."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise UserError("--plot needs matplotlib (optional dependency): pip install matplotlib") from None
    groups: dict[str, list[list[dict]]] = {}
    for d in run_dirs:
        path = os.path.join(d, "metrics.jsonl")
        if not os.path.exists(path):
            raise UserError(f"{d} has no metrics.jsonl; pass run directories written by vpd.py")
        rows = [r for r in map(json.loads, open(path)) if r.get("eval/pass@1") is not None]
        groups.setdefault(re.sub(r"-s\d+$", "", os.path.basename(os.path.normpath(d))), []).append(rows)
    fig, axes = plt.subplots(2, 2, figsize=(11, 7.5))
    for row, (key, what) in enumerate([("eval/pass@1", "student pass@1 (held-out, no feedback)"),
                                       ("eval/teacher_success", "teacher success (with feedback)")]):
        for col, (x, xlabel) in enumerate([("step", "step"), ("time", "wall time (s)")]):
            ax = axes[row][col]
            for label, runs in groups.items():
                n = min(len(r) for r in runs)
                ys = [[r[i].get(key) if r[i].get(key) is not None else float("nan") for r in runs] for i in range(n)]
                xs = [sum(r[i][x] for r in runs) / len(runs) for i in range(n)]
                line, = ax.plot(xs, [sum(y) / len(y) for y in ys], label=f"{label} (n={len(runs)})")
                ax.fill_between(xs, [min(y) for y in ys], [max(y) for y in ys], alpha=0.15, color=line.get_color())
            ax.set(xlabel=xlabel, ylabel=what, ylim=(-0.02, 1.02))
            ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=72)
    print(f"wrote {out}")
