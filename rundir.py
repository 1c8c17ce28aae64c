"""Run directories of vpd.py: creating one (or reopening it for --resume), its metrics.jsonl, and learning curves
of several runs (python vpd.py --plot RUN_DIR ... --out curves.png)."""
from __future__ import annotations

import json
import math
import os
import re
import time

from lm import UserError


def make_run_dir(cfg, resume: tuple[str, dict] | None) -> str:
    """runs/<task>-<algo>-<time>, or --output-dir; a resumed run's own directory, its logs cut back to the
    checkpoint (lines logged after it, by a crash, are dropped: those steps run again)."""
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
    return run_dir


def log_metrics(run_dir: str, m: dict) -> None:
    with open(os.path.join(run_dir, "metrics.jsonl"), "a") as f:   # NaN/inf -> null (strict JSON)
        f.write(json.dumps({k: v if not isinstance(v, float) or math.isfinite(v) else None for k, v in m.items()})
                + "\n")


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
