"""Run VPD, SDPO (live / ema / base teacher) and GRPO on the toy task with the same budget and several seeds, then
print a markdown table of final numbers (mean ± spread over seeds) and draw the learning curves.

    python benchmarks/compare_toy.py --seeds 0 1 2 --jobs 2 --out-dir runs/compare
    python vpd.py --plot runs/compare/* --out docs/toy_curves.png

Every run uses the toy preset of vpd.py (python vpd.py --help); only --algo/--teacher/--seed differ.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

VARIANTS = {"vpd": ["--algo", "vpd"], "sdpo-live": ["--algo", "sdpo", "--teacher", "live"],
            "sdpo-ema": ["--algo", "sdpo", "--teacher", "ema"], "sdpo-base": ["--algo", "sdpo", "--teacher", "base"],
            "grpo": ["--algo", "grpo"]}
HERE = os.path.dirname(os.path.abspath(__file__))


def run(name, seed, out_dir, extra):
    d = os.path.join(out_dir, f"{name}-s{seed}")
    if not os.path.exists(os.path.join(d, "ckpt")):
        env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
        cmd = [sys.executable, os.path.join(HERE, "..", "vpd.py"), "--task", "toy", "--seed", str(seed),
               "--output-dir", d, *VARIANTS[name], *extra]
        subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return name, seed, [json.loads(line) for line in open(os.path.join(d, "metrics.jsonl"))]


def summary(rows):
    ev = [r for r in rows if r.get("eval/pass@1") is not None]
    last = ev[-1]
    return {"pass@1": last["eval/pass@1"], "best pass@1": max(r["eval/pass@1"] for r in ev),
            "teacher": last.get("eval/teacher_success"), "minutes": last["time"] / 60}


def fmt(vals):
    vals = [v for v in vals if v is not None]
    if not vals:
        return "–"
    return f"{statistics.mean(vals):.2f} ± {statistics.pstdev(vals):.2f}" if len(vals) > 1 else f"{vals[0]:.2f}"


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--out-dir", default="runs/compare")
    args, extra = p.parse_known_args()
    with ThreadPoolExecutor(args.jobs) as pool:
        results = list(pool.map(lambda a: run(*a, args.out_dir, extra),
                                [(v, s) for v in args.variants for s in args.seeds]))
    print(f"| algo | final student pass@1 | best pass@1 | final teacher success | minutes/run |  (seeds {args.seeds})")
    print("|---|---|---|---|---|")
    for v in args.variants:
        sums = [summary(rows) for name, _, rows in results if name == v]
        print(f"| {v} | " + " | ".join(fmt([s[k] for s in sums])
                                      for k in ("pass@1", "best pass@1", "teacher", "minutes")) + " |")


if __name__ == "__main__":
    main()
