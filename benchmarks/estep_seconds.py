"""Seconds of one E-step and one M-step on a real model (default: SmolLM2-135M-Instruct, de-quantised by
benchmarks/compare_real.py into runs/real/model), per rollout, on real rollouts of the science_mc task; with
--old-vpd FILE, the same for another version of vpd.py (e.g. `git show 497ba0d:vpd.py > /tmp/vpd_old.py`), timed
in turns with this one so that both see the same machine load. Prints a markdown table.

    python benchmarks/estep_seconds.py --old-vpd /tmp/vpd_old.py
"""
import argparse
import dataclasses
import importlib.util
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

import plumbing  # noqa: E402
import tasks  # noqa: E402
import vpd  # noqa: E402


def load_old(path: str):
    spec = importlib.util.spec_from_file_location("vpd_old", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["vpd_old"] = mod
    spec.loader.exec_module(mod)
    return mod


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=os.path.join(REPO, "runs", "real", "model"))
    p.add_argument("--old-vpd", help="another vpd.py to time in turns with this one")
    p.add_argument("--prompts", type=int, default=4)
    p.add_argument("--group-size", type=int, default=4)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    data = "qa:" + os.path.join(REPO, "data", "science_mc-{split}.jsonl")
    cfg = vpd.Config(model=args.model, task="qa", dataset=data,
                     group_size=args.group_size, max_new_tokens=32, temperature=0.6, micro_batch=8, lr=2e-5)
    model, tok = plumbing.load_for_training(cfg, torch.device("cpu"), torch.float32)
    eos = vpd.stop_ids(model, tok)
    task = tasks.get_task(cfg.task, cfg.dataset)
    rows = []
    for k in range(0, 20):   # draw batches until the rollouts hold successes and failures with a context
        exs = task.load("train")[k * args.prompts:(k + 1) * args.prompts]
        rows = vpd.collect_rollouts(model, tok, task, exs, cfg, eos, torch.float32, list(range(len(exs))))
        succ = [r.success for r, _ in vpd.e_rows(rows)]
        if any(succ) and not all(succ):
            break
    n = len(rows)
    print(f"{n} rollouts, {sum(r.success for r in rows)} successes, {len(vpd.e_rows(rows))} with an E-step context, "
          f"mean completion {sum(len(r.completion_ids) for r in rows) / n:.1f} tokens", flush=True)
    pad = tok.pad_token_id
    new_opt = vpd.e_optimizer(model, cfg, torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.0))
    timings = {"M-step (this vpd.py)": [], "E-step (this vpd.py)": []}

    def m_step():
        model.zero_grad(set_to_none=True)
        vpd.m_step(model, model, rows[:n // 2], cfg, pad, torch.float32)
        return n // 2

    es = vpd.EState(cfg.lr)

    def e_step():   # a run's E-step: the lr the controller set after the first one, AdamW state from the M-step
        out = vpd.e_step(model, model, new_opt, rows, cfg, es, pad, torch.float32)
        print(f"  kept {out.get('E/step_scale')} of the update, move {out.get('E/teacher_move')}, next lr {es.lr:.2g}")
        return n

    # one untimed M-step + E-step first, so that AdamW has its M-step moments and the controller its lr
    m_step()
    plumbing.optimizer_step(model, new_opt, cfg.lr, 1.0, 0, {"skipped": 0, "step": 0})
    e_step()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    runs = [("M-step (this vpd.py)", m_step), ("E-step (this vpd.py)", e_step)]
    if args.old_vpd:
        old = load_old(args.old_vpd)
        fields = {f.name for f in dataclasses.fields(old.Rollout)}
        old_rows = [old.Rollout(**{k: v for k, v in dataclasses.asdict(r).items() if k in fields}) for r in rows]
        old_cfg = old.Config(model=args.model, group_size=args.group_size, max_new_tokens=32, temperature=0.6,
                             micro_batch=8, lr=2e-5)
        old_opt = old.e_optimizer(model, old_cfg, torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.0))

        def old_e_step():
            model.zero_grad(set_to_none=True)
            e = old.e_step(model, model, old_rows, old_cfg, old.EState(old_cfg.e_beta, old_cfg.lr), pad,
                           torch.float32)
            old.optimizer_step(model, old_opt, old_cfg.lr, 1.0, e.pop("nonfinite"), {"skipped": 0, "step": 0})
            return n
        runs.append(("E-step (old vpd.py)", old_e_step))
        timings["E-step (old vpd.py)"] = []
    for _ in range(args.repeats):
        for name, fn in runs:
            model.load_state_dict(state)
            t = time.perf_counter()
            k = fn()
            timings[name].append((time.perf_counter() - t, k))
            print(f"{name}: {timings[name][-1][0]:.1f} s", flush=True)
    print("\n| phase | rollouts | seconds (median of %d) | seconds per rollout |" % args.repeats)
    print("|---|---:|---:|---:|")
    for name, ts in timings.items():
        sec = statistics.median(t for t, _ in ts)
        print(f"| {name} | {ts[0][1]} | {sec:.1f} | {sec / ts[0][1]:.2f} |")


if __name__ == "__main__":
    main()
