"""Re-evaluates the final checkpoints of finished runs with more samples than their in-run evaluation, so that a
difference of 0.1 in teacher success is not lost in sampling noise. Each run's own settings (task, data, lengths,
temperatures) come from its config.json; every checkpoint is evaluated with the same K evaluation seeds (common
random numbers), and the model each run started from is evaluated once the same way (the `start` row).

    python benchmarks/eval_runs.py RUN_DIR [RUN_DIR ...] [--seeds 8] [--no-start]

Prints a markdown table: student pass@1 over prompts x eval samples x K, and teacher success over every teacher
answer of the K evaluations (one per prompt whose first student sample failed), with their counts.
"""
import argparse
import dataclasses
import json
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
import torch  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
import plumbing  # noqa: E402
import tasks  # noqa: E402
import vpd  # noqa: E402


def evaluate_model(cfg: vpd.Config, seeds: int) -> tuple[float, float, int]:
    """(student pass@1, teacher success, number of teacher answers) over `seeds` evaluations of cfg.model."""
    model, tok = plumbing.load_model(cfg)
    model.eval()
    task = tasks.get_task(cfg.task, cfg.dataset)
    examples = task.load("test")[:cfg.eval_prompts]
    eos = vpd.stop_ids(model, tok)
    p1, wins, n = 0.0, 0.0, 0
    with torch.no_grad():
        for k in range(seeds):
            m = vpd.evaluate(model, tok, task, examples, cfg, eos, vpd.row_seed(4242, k), torch.float32)
            p1 += m["eval/pass@1"] / seeds
            wins += m.get("eval/teacher_success", 0.0) * m["eval/teacher_n"]
            n += m["eval/teacher_n"]
    return p1, wins / max(n, 1), n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--seeds", type=int, default=8)
    ap.add_argument("--no-start", action="store_true", help="leave out the starting models' rows")
    args = ap.parse_args()
    print("| run | student pass@1 | teacher success (answers) |\n|---|---|---|")
    starts = set()
    for run in args.runs:
        saved = json.load(open(os.path.join(run, "config.json")))
        fields = {f.name for f in dataclasses.fields(vpd.Config)}     # a run from an older commit may have more keys
        cfg = vpd.Config(**{k: v for k, v in saved.items() if k in fields})
        rows = [(os.path.basename(run.rstrip("/")), os.path.join(run, "ckpt"))]
        if cfg.model not in starts and not args.no_start:
            starts.add(cfg.model)
            rows.insert(0, (f"start ({os.path.basename(cfg.model.rstrip('/'))})", cfg.model))
        for name, path in rows:
            p1, t, n = evaluate_model(dataclasses.replace(cfg, model=path), args.seeds)
            print(f"| {name} | {p1:.2f} | {t:.2f} ({n}) |", flush=True)


if __name__ == "__main__":
    main()
