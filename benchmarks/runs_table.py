"""Markdown tables of runs, read from their metrics.jsonl: held-out student pass@1 / teacher success at every
evaluation, and a mean ± std over seeds (runs named NAME-sN are grouped by NAME), plus the E-step's readings.

    python benchmarks/runs_table.py runs/sci/vpd-s0 runs/sci/vpd-s1 runs/sci/sdpo-live-s0
    python benchmarks/runs_table.py --estep runs/sci/vpd-s0        # E-steps run/skipped, largest move, halvings
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics


def read(run_dir: str) -> list[dict]:
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


def cell(row: dict) -> str:
    s, t = row.get("eval/pass@1"), row.get("eval/teacher_success")
    return f"{s:.2f} / {t:.2f}" if s is not None and t is not None else f"{s:.2f} / -" if s is not None else ""


def mean_std(values: list[float]) -> str:
    if not values:
        return ""
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}" if len(values) > 1 else f"{values[0]:.2f}"


def eval_table(dirs: list[str], only: list[int] | None = None) -> str:
    runs = {os.path.basename(os.path.normpath(d)): [r for r in read(d) if "eval/pass@1" in r] for d in dirs}
    steps = sorted({r["step"] for rows in runs.values() for r in rows if only is None or r["step"] in only})
    out = ["| run | " + " | ".join(f"step {s}" for s in steps) + " | completion length at the end |",
           "|---|" + "---|" * (len(steps) + 1)]
    for name, rows in runs.items():
        by_step = {r["step"]: r for r in rows}
        last = read(dict(zip(runs, dirs))[name])[-1]
        out.append(f"| {name} | " + " | ".join(cell(by_step.get(s, {})) for s in steps) +
                   f" | {last.get('completion_len', float('nan')):.1f} |")
    groups: dict[str, list[list[dict]]] = {}
    for name, rows in runs.items():
        groups.setdefault(re.sub(r"-s\d+$", "", name), []).append(rows)
    out += ["", "| group (seeds) | student pass@1 at the end | teacher success at the end | teacher: end - step 0 | "
            "teacher: lowest - step 0 |", "|---|---|---|---|---|"]
    for g, members in groups.items():
        ends = [m[-1] for m in members if m]
        t = [[r.get("eval/teacher_success", 0.0) for r in m] for m in members if m]
        out.append(f"| {g} (n={len(members)}) | {mean_std([e['eval/pass@1'] for e in ends])} | "
                   f"{mean_std([x[-1] for x in t])} | {mean_std([x[-1] - x[0] for x in t])} | "
                   f"{mean_std([min(x) - x[0] for x in t])} |")
    return "\n".join(out)


def estep_table(dirs: list[str]) -> str:
    out = ["| run | E-steps run / skipped (one class) | largest `E/teacher_move` | halved or dropped | borrowed |",
           "|---|---|---|---|---|"]
    for d in dirs:
        e = [r for r in read(d) if "E/skipped" in r]
        ran = [r for r in e if not r["E/skipped"]]
        moves = [r.get("E/teacher_move") or 0.0 for r in ran]
        cut = sum((r.get("E/step_scale") if r.get("E/step_scale") is not None else 1.0) < 1 for r in ran)
        out.append(f"| {os.path.basename(os.path.normpath(d))} | {len(ran)} / {len(e) - len(ran)} | "
                   f"{max(moves, default=0.0):.4f} | {cut} of {len(ran)} | {sum(r.get('E/borrowed', 0) for r in e)} |")
    return "\n".join(out)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+")
    p.add_argument("--estep", action="store_true", help="the E-step table instead of the evaluation table")
    p.add_argument("--steps", help="comma list: only these evaluation steps as columns")
    a = p.parse_args()
    print(estep_table(a.runs) if a.estep else eval_table(a.runs, a.steps and [int(x) for x in a.steps.split(",")]))
