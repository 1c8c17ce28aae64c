"""Code judge, the trainer's half: turn a completion into a judge job, run it in the sandbox, decode what comes back
as plain data, compare it here and write the feedback an online judge would. The half that runs inside the sandbox
is judge_child.py; the sandbox is process.py. Used through sandbox.judge (sandbox/__init__.py):

    job = make_job(example, completion, timeout=None)   # None: the completion holds no code
    records, result = run_job(job, mode)                 # the test records and the candidate's SandboxResult
    reward, feedback, info = verdict(example, records, result, job)

Threat model. The completion is adversarial: inside the sandbox it may patch anything (builtins, json, sys), walk
frames or gc, read its program file, argv and environment, write anything to any descriptor it holds, exit early.
So the sandboxed process holds only the candidate, the test inputs and judge_child.py, never an expected output
or a verdict: it returns each test's value as repr text (or the program's stdout), and the trainer decodes it with
decode_plain (plain data only: no class, no builtin subclass with its own __eq__) and compares it here. Forging a
record is then computing the answer. HumanEval's check() and MBPP's asserts run in a second sandboxed process
that runs no model code: it calls the candidate through a proxy (two pipes, plain data only) and writes the
verdicts to a file only it holds. Not covered: a model that memorized the benchmark; a sandbox that fails.
Test kinds: call (args repr -> value), functional (LiveCodeBench JSON lines -> value), stdio (stdin -> stdout),
asserts (MBPP statements) and check (HumanEval's check(candidate)); the last two are run by the checker.
"""
from __future__ import annotations

import json
import math
import os
import re
import tempfile
from concurrent.futures import ThreadPoolExecutor

from . import judge_child
from .process import SandboxResult, run_program

_CHILD_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "judge_child.py")
_CHILD_SOURCE: list[str] = []
RECORDS_CAP = 64 << 20           # bytes of test records read back
VALUE_CAP = 8 << 20              # characters of one returned value's repr that the trainer will parse


_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)(?:```|\Z)", re.S)


def extract_code(completion: str) -> str:
    """The program in a completion: the LAST fenced block tagged python/py/python3 (a model's final answer usually
    comes last; an unterminated fence at the end counts, as when generation ran out of tokens); else the last
    untagged fenced block; else, with no fence at all, the bare text if it looks like code. "" = no code."""
    blocks = _FENCE.findall(completion)
    tagged = [b for tag, b in blocks if tag.lower() in ("python", "py", "python3")]
    untagged = [b for tag, b in blocks if not tag]
    for group in (tagged, untagged):
        if group and group[-1].strip():
            return group[-1].strip("\n")
    if blocks:
        return ""
    text = completion.strip()
    looks_like_code = re.search(r"^\s*(def |class |import |from \S+ import |print\()", text, re.M)
    return text if looks_like_code else ""


def make_job(ex: dict, completion: str, timeout: float | None = None) -> dict | None:
    """The judge job for one completion: {"timeout", "tests": spec} or {"timeout", "serve": spec, "check": spec}
    (see judge_child.py); None when the completion holds no code. Per-test limit ex["timeout"], total
    ex["total_timeout"]; `timeout` sets both."""
    code = extract_code(completion)
    if not code:
        return None
    per_test = timeout or ex.get("timeout", 6.0)
    total = timeout or ex.get("total_timeout", per_test)
    kind, entry, setup = ex["kind"], ex.get("entry_point", ""), ex.get("setup", "")
    if kind not in ("asserts", "check"):
        inputs = [t["args"] if kind == "call" else t["input"] for t in ex["tests"]]
        return {"timeout": total, "tests": {"mode": "tests", "kind": kind, "setup": setup, "code": code,
                                            "entry_point": entry, "tests": inputs, "test_timeout": per_test}}
    checker = {"mode": "check", "kind": kind, "prelude": setup, "test_code": ex.get("test_code", ""),
               "tests": ex["tests"] if kind == "asserts" else [], "entry_point": entry,
               "proxies": ex.get("proxies") or [entry], "test_timeout": per_test, "total_timeout": total}
    if kind == "check" and code[:1] in " \t":       # a body-only completion continues the HumanEval prompt
        setup, code = "", setup + code
    return {"timeout": total, "serve": {"mode": "serve", "setup": setup, "code": code}, "check": checker}


def _child_source() -> str:
    if not _CHILD_SOURCE:
        with open(_CHILD_PATH, encoding="utf-8") as f:
            _CHILD_SOURCE.append(f.read())
    return _CHILD_SOURCE[0]


def run_job(job: dict, mode: str | None = None) -> tuple[list[dict], SandboxResult]:
    """Run one judge job in the sandbox's `mode` (process.self_test): (the records written to a descriptor only the
    judge holds, the candidate's result)."""
    with tempfile.TemporaryFile() as rec:
        rec_fd, src = os.dup(rec.fileno()), _child_source()
        if "serve" not in job:
            res = run_program(src, json.dumps(job["tests"]), job["timeout"], max_file_mb=32, argv=[str(rec_fd)],
                              pass_fds=(rec_fd,), mode=mode)
        else:
            (req_r, req_w), (resp_r, resp_w) = os.pipe(), os.pipe()
            with ThreadPoolExecutor(1) as pool:
                candidate = pool.submit(run_program, src, json.dumps(job["serve"]), job["timeout"] + 1,
                                        argv=[str(req_r), str(resp_w)], pass_fds=(req_r, resp_w), mode=mode)
                run_program(src, json.dumps(job["check"]), job["timeout"] + 3,
                            argv=[str(req_w), str(resp_r), str(rec_fd)], pass_fds=(req_w, resp_r, rec_fd), mode=mode)
                res = candidate.result()
        rec.seek(0)
        lines = rec.read(RECORDS_CAP).decode("utf-8", errors="replace").splitlines()
    records = []
    for line in lines:
        try:
            r = json.loads(line)
        except ValueError:
            continue
        if isinstance(r, dict):
            records.append(r)
    return records, res


def _same(a, b) -> bool:
    """Equality of plain data, floats up to rel 1e-6 / abs 1e-9; a list never equals a tuple."""
    if isinstance(a, float) or isinstance(b, float):
        try:
            return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9)
        except TypeError:
            return False
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return type(a) == type(b) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def same_stdout(got: str, want: str) -> bool:
    """LiveCodeBench's rule: both outputs stripped and split into lines, each line stripped; equal line counts and
    each line pair equal as text or, failing that, as lists of Decimal numbers (so "6.0" matches "6")."""
    a, b = [x.strip() for x in got.strip().split("\n")], [x.strip() for x in want.strip().split("\n")]
    return len(a) == len(b) and all(x == y or _decimals(x) is not None and _decimals(x) == _decimals(y)
                                    for x, y in zip(a, b))


def _decimals(line: str):
    from decimal import Decimal, InvalidOperation
    try:
        return [Decimal(w) for w in line.split()]
    except (InvalidOperation, ValueError):
        return None


def _short(text: str, n: int = 300) -> str:
    return text if len(text) <= n else text[:n] + " ..."


def _grade(ex: dict, i: int, record: dict) -> tuple[bool, dict]:
    """(passed, details for the feedback) for test i. The candidate's records carry values only; the checker's
    records (asserts/check) carry its verdict."""
    kind, test = ex["kind"], ex["tests"][i] if ex["kind"] != "check" else None
    if kind in ("asserts", "check") or "error" in record or "timeout" in record:
        detail = {k: str(record[k]) for k in ("error", "expected", "got", "timeout") if k in record}
        return record.get("ok") is True and not detail.get("error"), detail
    if kind == "stdio":
        got = str(record.get("stdout", ""))
        return same_stdout(got, test["output"]), {"expected": _short(test["output"].strip()),
                                                  "got": _short(got.strip())}
    want = judge_child.decode_plain(test["expected"]) if kind == "call" else json.loads(test["output"])
    text = str(record.get("value"))
    try:
        if len(text) > VALUE_CAP:               # the trainer's memory is not the candidate's to spend
            raise ValueError
        got = judge_child.decode_plain(text)
        if kind == "functional":       # compared as LiveCodeBench does: after a JSON round trip (tuples -> lists)
            got = json.loads(json.dumps(got))
    except (ValueError, TypeError):
        return False, {"expected": _short(repr(want)), "got": _short(text) + " (not plain data)"}
    return _same(got, want), {"expected": _short(repr(want)), "got": _short(repr(got))}


def verdict(ex: dict, records: list[dict], res: SandboxResult, job: dict) -> tuple[float, str, dict]:
    """(reward, feedback, info) from the records of run_job: reward 1 only when every test passed; the feedback
    names the first failed test like an online judge (uncapped; "" on success)."""
    n = 1 if ex["kind"] == "check" else len(ex["tests"])
    first: dict[int, dict] = {}
    for r in records:
        if type(r.get("i")) is int and 0 <= r["i"] < n:
            first.setdefault(r["i"], r)
    graded = {i: _grade(ex, i, r) for i, r in first.items()}
    passed = sum(ok for ok, _ in graded.values())
    info = {"passed_frac": passed / n, "status": res.status, "tests": n}
    if passed == n:
        return 1.0, "", info
    load_error = next((str(r["load_error"]) for r in records if "load_error" in r), None)
    if load_error and not first:
        return 0.0, "Your code failed before any test could run:\n" + _tail(load_error), info
    k = next(i for i in range(n) if not graded.get(i, (False,))[0])
    if k in graded and graded[k][1].get("error") != judge_child.STOPPED:
        per_test = (job.get("tests") or job["check"])["test_timeout"]
        return 0.0, _failure_text(ex, k, graded[k][1], n, per_test), info
    where = f" on test {k + 1} of {n} (input: {_input_text(ex, k)})"
    if res.status == "time limit exceeded":
        text = f"Time limit exceeded ({job['timeout']:g} s){where}."
    elif res.ok:
        text = f"Your program exited before it finished test {k + 1} of {n} (input: {_input_text(ex, k)})."
    else:
        text = f"{res.status.capitalize()}{where}."
        if res.stderr.strip():
            text += "\n" + _tail(res.stderr)
    return 0.0, text, info


def no_code() -> tuple[float, str, dict]:
    """The verdict of a completion that holds no code (make_job gave None)."""
    return 0.0, "No code found in your answer: put the complete solution in a ```python code block.", \
        {"passed_frac": 0.0, "status": "no code"}


def _input_text(ex: dict, i: int) -> str:
    kind, test = ex["kind"], ex["tests"][min(i, len(ex["tests"]) - 1)]
    if kind == "call":
        args = test["args"]
        inner = args[1:-1].rstrip(",") if args.startswith("(") else args
        return f"{ex['entry_point']}({inner})"
    if kind == "asserts":
        return test
    if kind == "check":
        return f"check({ex['entry_point']})"
    if kind == "functional":
        return f"{ex['entry_point']}({', '.join(l for l in test['input'].splitlines() if l.strip())})"
    return repr(test["input"]) if len(test["input"]) < 300 else repr(test["input"][:300]) + " ..."


def _failure_text(ex: dict, i: int, detail: dict, n: int, per_test: float) -> str:
    head, inp = f"test {i + 1} of {n}", _input_text(ex, i)
    if "timeout" in detail:
        return f"Time limit exceeded ({per_test:g} s) on {head}.\nInput: {inp}"
    err = detail.get("error", "").strip()
    last = err.splitlines()[-1] if err else ""
    if "expected" in detail:
        return f"Wrong answer on {head}.\nInput: {inp}\nExpected: {detail['expected']}\nGot: {detail['got']}"
    if last.startswith("MemoryError"):
        return f"Memory limit exceeded on {head}.\nInput: {inp}"
    if "File too large" in last:
        return f"Output limit exceeded on {head}.\nInput: {inp}"
    if last.startswith("AssertionError"):
        return f"Wrong answer on {head}: an assertion failed.\nInput: {inp}\n{_tail(err)}"
    if err:
        return f"Runtime error on {head}.\nInput: {inp}\n{_tail(err)}"
    return f"Wrong answer on {head}.\nInput: {inp}"


def _tail(text: str, lines: int = 8) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])
