"""Learning curves of vpd.py runs (python vpd.py --plot RUN_DIR ... --out curves.png): student pass@1 and teacher
success vs step and vs wall time; runs named NAME-sN (seeds) are grouped, mean line and min-max band per group."""
from __future__ import annotations

import json
import os
import re

from lm import UserError


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
