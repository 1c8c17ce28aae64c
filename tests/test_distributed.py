"""vpd.py under torchrun on CPU (gloo, 2 processes, the tiny model): the same step as one process, and a run that
one process resumes. Run: python -m pytest -q tests/test_distributed.py"""
import json
import os
import subprocess
import sys

import pytest
import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# one VPD step with an E-step, every rollout in one micro-batch per rank (BCO's delta takes in a micro-batch at a
# time, so the partition into micro-batches is part of the algorithm); seed 1 has successes and failures
STEP = ["--model", "tiny", "--task", "toy", "--warmup-steps", "20", "--e-every", "1", "--eval-prompts", "4",
        "--batch-prompts", "4", "--group-size", "8", "--micro-batch", "64", "--seed", "1"]


def _env():
    return {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false"}


def _run(args, nproc=1, timeout=300):
    cmd = ([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}"]
           if nproc > 1 else [sys.executable]) + [os.path.join(REPO, "vpd.py"), *map(str, args)]
    res = subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=timeout)
    assert res.returncode == 0, res.stderr[-4000:]
    return res


def _metrics(run_dir):
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


def _weights(run_dir):
    from safetensors.torch import load_file
    return load_file(os.path.join(run_dir, "ckpt", "model.safetensors"))


@pytest.fixture(scope="module")
def one_step(tmp_path_factory):
    root = tmp_path_factory.mktemp("dist")
    _run([*STEP, "--steps", 1, "--eval-every", 1, "--output-dir", root / "one"])
    return root


@pytest.mark.parametrize("mode", ["fsdp", "ddp"])
def test_two_ranks_take_the_same_step_as_one_process(one_step, mode):
    """Global batch of 4 prompts: one process samples all 4, each of 2 ranks samples 2 (rollouts seeded per prompt,
    so they are the same). After one M-step + E-step the weights agree within 1e-5, and so do the logged metrics."""
    d = one_step / mode
    _run([*STEP, "--steps", 1, "--eval-every", 1, "--dist", mode, "--output-dir", d], nproc=2)
    a, b = _weights(one_step / "one"), _weights(d)
    assert a.keys() == b.keys()
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-5
    one, two = _metrics(one_step / "one")[-1], _metrics(d)[-1]
    assert two["E/skipped"] == 0 and two["E/successes"] > 0 and two["E/teacher_move"] > 0   # the E-step ran
    for k in ("reward", "success_rate", "completion_len", "M/loss", "grad_norm", "E/loss", "E/delta",
              "E/teacher_move", "E/loss_after", "E/rollouts", "eval/pass@1", "eval/teacher_success"):
        assert two[k] == pytest.approx(one[k], rel=1e-4, abs=1e-6), k


@pytest.mark.parametrize("extra", [["--algo", "vpd", "--e-lr", "0.05", "--e-optimizer", "adamw"],
                                   ["--algo", "sdpo", "--teacher", "ema"]], ids=["line-search", "sdpo-ema"])
def test_two_fsdp_ranks_follow_one_process_for_two_steps(tmp_path, extra):
    """Two steps, so that the second one reads weights the first changed: after an E-step whose update the line
    search halved or dropped (every halving re-reads the teacher, whose gathered root weights must be fresh), and
    with SDPO's EMA teacher (a sharded copy updated from the sharded student)."""
    args = [*STEP, "--steps", 2, "--eval-every", 2, *extra]
    _run([*args, "--output-dir", tmp_path / "one"])
    _run([*args, "--output-dir", tmp_path / "two"], nproc=2)
    a, b = _weights(tmp_path / "one"), _weights(tmp_path / "two")
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-5
    rows = _metrics(tmp_path / "two")
    if "vpd" in extra:
        assert any(r.get("E/step_scale", 1) < 1 for r in rows)             # the line search did halve
    for one, two in zip(_metrics(tmp_path / "one"), rows):
        assert two.get("M/loss") == pytest.approx(one.get("M/loss"), rel=1e-4)


def test_two_rank_run_logs_once_per_step_and_one_process_resumes_it(tmp_path):
    """2 ranks, 3 steps, E-step every 2, generation on a bf16 copy (its bf16 matmuls depend on the batch's shape,
    so its rollouts are not compared with one process'): one metrics line per step; the checkpoint holds both ranks'
    buffered rollouts of step 3 and optimizer state keyed by names; one process resumes it and its E-step at step 4
    reads the 16 buffered rollouts and its own 16."""
    d = tmp_path / "run"
    res = _run(["--model", "tiny", "--task", "toy", "--steps", 3, "--save-every", 1, "--warmup-steps", 20,
                "--batch-prompts", 4, "--group-size", 4, "--e-every", 2, "--e-buffer", "all", "--eval-every", 2,
                "--eval-prompts", 4, "--gen-weights", "bf16", "--output-dir", d], nproc=2)
    assert res.stdout.count("run directory:") == 1                # rank 0 speaks
    assert [m["step"] for m in _metrics(d)] == [0, 1, 2, 3]       # one line per step, written by rank 0
    saved = torch.load(d / "ckpt" / "trainer_state.pt", weights_only=False)
    assert saved["optimizer"]["state"] and all(isinstance(k, str) for k in saved["optimizer"]["state"])
    assert len(saved["state"]["buffer"]) == 16                     # step 3's rollouts, from both ranks
    _run(["--resume", d, "--steps", 4])                           # one process continues the 2-rank run
    rows = _metrics(d)
    assert [m["step"] for m in rows] == [0, 1, 2, 3, 4] and rows[-1]["skipped_steps"] == 0
    assert rows[-1]["E/rollouts"] == 32
    assert torch.load(d / "ckpt" / "trainer_state.pt", weights_only=False)["state"]["step"] == 4
