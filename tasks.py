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
"""
from __future__ import annotations

import fcntl
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field


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
        if got == example["answer"]:
            return Score(1.0, "")
        said = f"you answered {got}" if got else "you gave no answer"
        return Score(0.0, f"Wrong: {said}. The answer is {example['answer']}.")

    def warmup_examples(self, rng, n):
        """Random triples whose target is the digit named in the feedback (independent of the task's PERM)."""
        out = []
        for _ in range(n):
            a, b, c = rng.randrange(10), rng.randrange(10), rng.randrange(10)
            wrong = rng.choice([d for d in range(10) if d != c])
            out.append(({"a": a, "b": b, "answer": str(c)}, str(c),
                        f"Wrong: you answered {wrong}. The answer is {c}."))
        return out


# ----------------------------------------------------------------------------------------------------------------
# Sandbox: run an untrusted python program in a contained child process (standard library only).
#
# Layers, outermost first (each is set up by the parent or by the bootstrap script _BOOT before the program runs):
#   * a fresh temporary directory; the program's stdout/stderr go to files there (bounded by RLIMIT_FSIZE, read
#     back with a cap), stdin comes from a file;
#   * a new session (start_new_session=True): the parent kills the whole process group with SIGKILL at the end;
#   * when `unshare` works (checked once, cached): new network (no network at all), pid and mount namespaces.
#     The bootstrap is pid 1 of the pid namespace; it forks the program and waits; when it exits (or is killed
#     with the process group) the kernel kills every process left in the namespace, including ones that called
#     setsid() and left the process group. In the mount namespace /tmp, /var/tmp and /dev/shm are fresh small
#     tmpfs mounts (writes there vanish with the namespace; the program's cwd is a fresh dir on that /tmp, so
#     its files are bounded in size) and /proc shows only the sandbox's processes;
#   * when running as root: the program runs as a per-run uid/gid (VPD_SANDBOX_UID_BASE + slot, default
#     60100 + slot) with no supplementary groups. A slot is held exclusively (an flock, so also across processes)
#     for the run, which makes the uid private to it: RLIMIT_NPROC counts only this run's processes, and after
#     the run every process of that uid is killed and its files in /tmp, /var/tmp and /dev/shm are removed (this
#     is the safety net when namespaces are unavailable);
#   * resource limits set in the child right before exec: RLIMIT_CPU, RLIMIT_AS, RLIMIT_NPROC, RLIMIT_FSIZE,
#     RLIMIT_NOFILE, RLIMIT_CORE=0; a wall-clock timeout in the parent;
#   * a scrubbed environment (PATH, LANG only) and `python -I` (no user site, no PYTHON* variables).
# ----------------------------------------------------------------------------------------------------------------
SANDBOX_UID_BASE = int(os.environ.get("VPD_SANDBOX_UID_BASE", "60100"))
SANDBOX_SLOTS = 256
OUTPUT_CAP = 64 * 1024          # bytes of stdout/stderr read back into memory
_BASE_DIR = os.path.join(tempfile.gettempdir(), "vpd-sandbox")   # root-owned, 0711: slot locks and run dirs

# The bootstrap runs as `python -I -S -c _BOOT CONFIG_JSON` with cwd = the run's directory (program in prog.py).
_BOOT = r'''
import ctypes, json, os, resource, sys
cfg = json.loads(sys.argv[1])

def mount(src, target, fstype, flags, data):
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.mount(src.encode(), target.encode(), fstype.encode() if fstype else None, flags,
                  data.encode() if data else None) != 0:
        raise OSError(ctypes.get_errno(), "mount " + target)

def private_tmp():
    """Fresh size-limited tmpfs on the shared writable dirs; the program runs in /tmp/run on it."""
    with open("prog.py", "rb") as f:
        program = f.read()
    for d in ("/tmp", "/var/tmp", "/dev/shm"):
        if os.path.isdir(d) and not os.path.islink(d):
            mount("tmpfs", d, "tmpfs", 0x2 | 0x4, "size=%dm,mode=1777" % cfg["tmpfs_mb"])   # MS_NOSUID|MS_NODEV
    os.mkdir("/tmp/run", 0o700)
    with open("/tmp/run/prog.py", "wb") as f:
        f.write(program)
    if cfg["uid"] >= 0:
        os.chown("/tmp/run", cfg["uid"], cfg["uid"])
        os.chown("/tmp/run/prog.py", cfg["uid"], cfg["uid"])
    os.chdir("/tmp/run")

def expose(paths):
    """Make the python installation reachable for the unprivileged uid when it lies under a closed dir (/root):
    bind the closed dir aside, put a tmpfs over it and bind back only the entries python needs (read-only)."""
    MS_BIND, MS_REC, MS_RDONLY, MS_REMOUNT = 0x1000, 0x4000, 0x1, 0x20
    for closed, names in paths.items():
        aside = "/tmp/.closed"
        os.makedirs(aside, exist_ok=True)
        mount(closed, aside, None, MS_BIND | MS_REC, None)
        mount("tmpfs", closed, "tmpfs", 0x2 | 0x4, "size=1m,mode=755")
        for name in names:
            target = os.path.join(closed, name)
            os.mkdir(target)
            mount(os.path.join(aside, name), target, None, MS_BIND | MS_REC, None)
            mount("none", target, None, MS_REMOUNT | MS_BIND | MS_RDONLY, None)
        libc = ctypes.CDLL(None, use_errno=True)
        libc.umount2(aside.encode(), 2)                       # MNT_DETACH
        os.rmdir(aside)

def become_program():
    lim = cfg["limits"]
    for name, value in lim.items():
        resource.setrlimit(getattr(resource, name), (value, value))
    if cfg["uid"] >= 0:
        os.setgroups([])
        os.setgid(cfg["uid"])
        os.setuid(cfg["uid"])
    os.execve(cfg["python"], [cfg["python"], "-I", "prog.py"] + cfg["argv"], cfg["env"])

if cfg["namespaces"]:
    private_tmp()
    expose(cfg["expose"])
    pid = os.fork()
    if pid == 0:
        become_program()
    while True:                                               # pid 1: reap everything, exit with the program
        try:
            child, status = os.wait()
        except ChildProcessError:
            os._exit(125)
        if child == pid:
            os._exit(os.WEXITSTATUS(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status))
else:
    become_program()
'''


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


_unshare_cache: dict = {}
_unshare_lock = threading.Lock()


def _unshare_prefix() -> list[str]:
    """`unshare ...` argv prefix when namespaces work here (tested once, cached), else []."""
    with _unshare_lock:
        if "prefix" not in _unshare_cache:
            prefix = ["unshare", "--net", "--pid", "--fork", "--kill-child", "--mount", "--mount-proc"]
            if os.geteuid() != 0:
                prefix.insert(1, "--map-root-user")
            probe = (f"import ctypes; r = ctypes.CDLL(None).mount(b'tmpfs', b'{tempfile.gettempdir()}', b'tmpfs', 0, None)"
                     "; raise SystemExit(r)")
            try:
                ok = shutil.which("unshare") is not None and os.environ.get("VPD_SANDBOX_NO_NAMESPACES") != "1" and \
                    subprocess.run(prefix + [sys.executable, "-I", "-S", "-c", probe], capture_output=True,
                                   timeout=20).returncode == 0
            except (OSError, subprocess.SubprocessError):
                ok = False
            _unshare_cache["prefix"] = prefix if ok else []
        return _unshare_cache["prefix"]


def _closed_ancestors(uid: int) -> dict[str, list[str]]:
    """{closed dir: [child names]} on the way to the python installation that `uid` could not traverse."""
    if uid < 0:
        return {}
    out: dict[str, list[str]] = {}
    for path in {os.path.realpath(sys.executable), os.path.realpath(sys.prefix), os.path.realpath(sys.base_prefix)}:
        parts = path.strip("/").split("/")
        for i in range(len(parts) - 1):
            d = "/" + "/".join(parts[:i + 1])
            if not os.stat(d).st_mode & 0o001:
                names = out.setdefault(d, [])
                if parts[i + 1] not in names:
                    names.append(parts[i + 1])
                break
    return out


class _Slot:
    """An exclusive slot number (flock on a lock file, so exclusive across processes too) -> a private uid."""

    def __enter__(self):
        os.makedirs(_BASE_DIR, mode=0o711, exist_ok=True)
        start = (os.getpid() * 7 + threading.get_ident()) % SANDBOX_SLOTS
        while True:
            for k in range(SANDBOX_SLOTS):
                n = (start + k) % SANDBOX_SLOTS
                fd = os.open(os.path.join(_BASE_DIR, f"slot-{n}.lock"), os.O_RDWR | os.O_CREAT, 0o600)
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
    """SIGKILL every process whose real uid is `uid` (safe: the uid belongs to this run only)."""
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


def _remove_files_of(uid: int) -> None:
    """Remove top-level entries owned by `uid` in the shared writable dirs (without namespaces they are real)."""
    for d in ("/tmp", "/var/tmp", "/dev/shm"):
        try:
            entries = os.listdir(d)
        except OSError:
            continue
        for name in entries:
            p = os.path.join(d, name)
            try:
                if os.lstat(p).st_uid != uid:
                    continue
                if os.path.isdir(p) and not os.path.islink(p):
                    shutil.rmtree(p, ignore_errors=True)
                else:
                    os.unlink(p)
            except OSError:
                pass


def _read_capped(path: str, cap: int = OUTPUT_CAP) -> str:
    with open(path, "rb") as f:
        data = f.read(cap + 1)
    text = data[:cap].decode("utf-8", errors="replace")
    return text + ("\n[... output truncated ...]" if len(data) > cap else "")


def _classify(returncode: int | None, timed_out: bool, stderr: str, via_init: bool) -> str:
    if timed_out:
        return "time limit exceeded"
    if returncode == 0:
        return "ok"
    sig = -returncode if returncode < 0 else (returncode - 128 if via_init and returncode > 128 else 0)
    if sig == signal.SIGXCPU:
        return "time limit exceeded"
    if sig == signal.SIGXFSZ or "File too large" in stderr[-2000:]:      # python ignores SIGXFSZ: EFBIG instead
        return "output limit exceeded"
    if "MemoryError" in stderr[-2000:]:
        return "memory limit exceeded"
    if sig:
        return f"killed by signal {signal.Signals(sig).name}" if sig in signal.Signals._value2member_map_ \
            else f"killed by signal {sig}"
    return f"runtime error (exit code {returncode})"


def run_program(code: str, stdin: str = "", timeout: float = 5.0, memory_mb: int = 1024, max_processes: int = 32,
                max_file_mb: int = 16, max_open_files: int = 64, argv: list[str] | None = None) -> SandboxResult:
    """Run `code` as a python program in the sandbox described above; never raises for anything the program does."""
    t0 = time.monotonic()
    with _Slot() as slot, tempfile.TemporaryDirectory(prefix="run-", dir=_BASE_DIR) as workdir:
        uid = SANDBOX_UID_BASE + slot.number if os.geteuid() == 0 else -1
        prefix = _unshare_prefix()
        if uid >= 0 and not prefix and _closed_ancestors(uid):
            raise TaskError(f"sandbox: {sys.executable} is not reachable by an unprivileged uid and `unshare` does not "
                            "work here, so untrusted code would run as root; use a python outside /root or allow "
                            "namespaces")
        for name, text in (("prog.py", code), ("stdin.txt", stdin)):
            with open(os.path.join(workdir, name), "w", encoding="utf-8") as f:
                f.write(text)
        if uid >= 0:
            for p in [workdir] + [os.path.join(workdir, n) for n in ("prog.py", "stdin.txt")]:
                os.chown(p, uid, uid)
        cfg = {
            "namespaces": bool(prefix), "uid": uid, "python": sys.executable, "argv": list(argv or []),
            "env": {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}, "tmpfs_mb": 64,
            "expose": _closed_ancestors(uid) if prefix else {},
            "limits": {"RLIMIT_CPU": int(timeout) + 1, "RLIMIT_AS": memory_mb << 20, "RLIMIT_NPROC": max_processes,
                       "RLIMIT_FSIZE": max_file_mb << 20, "RLIMIT_NOFILE": max_open_files, "RLIMIT_CORE": 0},
        }
        out_path, err_path = os.path.join(workdir, "stdout.txt"), os.path.join(workdir, "stderr.txt")
        with open(os.path.join(workdir, "stdin.txt"), "rb") as fin, open(out_path, "wb") as fout, \
                open(err_path, "wb") as ferr:
            proc = subprocess.Popen(prefix + [sys.executable, "-I", "-S", "-c", _BOOT, json.dumps(cfg)],
                                    stdin=fin, stdout=fout, stderr=ferr, cwd=workdir, env=cfg["env"],
                                    start_new_session=True, close_fds=True)
            timed_out = False
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                timed_out = True
            finally:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait()
                if uid >= 0:
                    _kill_uid(uid)
                    _remove_files_of(uid)
        stdout, stderr = _read_capped(out_path), _read_capped(err_path)
        filled = max(os.path.getsize(out_path), os.path.getsize(err_path)) >= cfg["limits"]["RLIMIT_FSIZE"]
    status = "output limit exceeded" if filled and not timed_out else \
        _classify(proc.returncode, timed_out, stderr, via_init=bool(prefix))
    return SandboxResult(status, None if timed_out else proc.returncode, stdout, stderr, timed_out,
                         time.monotonic() - t0)


def run_many(jobs: list[dict], workers: int | None = None) -> list[SandboxResult]:
    """run_program(**job) for each job, in a thread pool (the work happens in child processes)."""
    workers = workers or min(len(jobs), max(2, (os.cpu_count() or 2) * 2)) or 1
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(lambda job: run_program(**job), jobs))


TASKS = {"toy": ToyTask}


def get_task(name: str, dataset: str | None = None) -> Task:
    if name not in TASKS:
        raise TaskError(f"unknown task {name!r}; choose one of: {', '.join(sorted(TASKS))}")
    cls = TASKS[name]
    if dataset is None:
        return cls()
    try:
        return cls(dataset=dataset)
    except TypeError:
        raise TaskError(f"task {name!r} takes no --dataset (it has only its embedded data)") from None
