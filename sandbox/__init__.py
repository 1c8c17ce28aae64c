"""The code sandbox: one safety boundary. Model-written code runs only in here.

    mode = sandbox.self_test(allow_weak=False)       # once: "isolated" (namespaces), "weak", or a SandboxError
    verdicts = sandbox.grade(examples, completions, mode)   # [(reward, feedback, info)], one per completion

process.py runs one untrusted program in a contained child process (boot.py sets up its namespaces); judge.py turns
a completion into a judge job and its results into an online judge's verdict and feedback; judge_child.py is the
judge's half inside the sandbox. docs/sandbox.md: the threat model, the isolation and its limits.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from .judge import extract_code, make_job, no_code, run_job, verdict
from .process import SandboxError, SandboxResult, pool_size, run_many, run_program, self_test

__all__ = ["SandboxError", "SandboxResult", "extract_code", "grade", "run_many", "run_program", "self_test"]


def grade(examples: list[dict], completions: list[str], mode: str, timeout: float | None = None,
          workers: int | None = None) -> list[tuple[float, str, dict]]:
    """Each completion judged against its example's tests in the sandbox's `mode` (self_test), the jobs in a thread
    pool (the work happens in child processes): (reward, feedback, info) per completion. A completion without code
    gets reward 0 and says so. timeout: per-test limit for every example (default: each example's own)."""
    jobs = [make_job(e, c, timeout) for e, c in zip(examples, completions)]
    runnable = [j for j in jobs if j is not None]
    with ThreadPoolExecutor(workers or pool_size(len(runnable))) as pool:
        results = iter(list(pool.map(lambda job: run_job(job, mode), runnable)))
    return [verdict(e, *next(results), j) if j else no_code() for e, j in zip(examples, jobs)]
