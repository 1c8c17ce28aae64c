"""Sandbox: run an untrusted python program in a contained child process (standard library only).

Isolated mode (the default; works for root and for ordinary users through user namespaces): the bootstrap
boot.py (next to this file) puts the program in new mount, pid, network, IPC and UTS namespaces (plus a user
namespace when not root). The program sees a minimal root: read-only binds of /usr, /bin, /lib*, a few /etc files,
/dev/null & co. and the python installation (wherever it lives), a fresh /proc, and a size-limited tmpfs /tmp where
it runs (/tmp/run). Home, the repository, checkpoints, tokens and the trainer's files do not exist there; the
network namespace has only a down loopback; the trainer's processes are outside its pid namespace. It holds no
capability (as root: the run's own uid VPD_SANDBOX_UID_BASE + slot; otherwise uid 0 of its user namespace with every
capability set emptied) and runs with no_new_privs, under rlimits set right before exec (CPU, address space,
processes, file size, open files, no core) and a wall-clock timeout. When the program exits, times out or the
trainer dies (PDEATHSIG), the namespace's init exits and the kernel kills every process left; run_program returns
only after that. Memory of the whole process tree is bounded by memory_mb when the trainer can create memory
cgroups (root, cgroup v1 or v2 with the memory controller delegated); elsewhere only each process is (RLIMIT_AS),
so a tree may use up to max_processes x memory_mb. Input, output and the source travel through files the trainer
opened (and unlinked) before the run: nothing the program names, plants or links is ever opened by the trainer.
`self_test(allow_weak)` (run by CodeTask at start-up) checks that a trivial program runs; where namespaces do not
work it refuses with a one-line SandboxError unless allow_weak (vpd.py --unsafe-sandbox) accepts weak mode: the
same rlimits and no_new_privs in a host temporary directory, as root under the run's uid (whose processes are
killed afterwards), but with the user's files and the network in reach.

    mode = self_test(allow_weak=False)                                       # "isolated" (or "weak"), or raises
    result = run_program(code, stdin="", timeout=5.0, memory_mb=1024, mode=mode, ...)   # SandboxResult; never raises
    results = run_many([{"code": ..., "mode": mode}, ...])                   # the same, in a thread pool

`python -m sandbox.process --bench` prints the sandbox's per-program overhead.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass


class SandboxError(ValueError):
    """The sandbox cannot run programs here; the message (one line) says what to do."""


SANDBOX_UID_BASE = int(os.environ.get("VPD_SANDBOX_UID_BASE", "60100"))
SANDBOX_SLOTS = 256
OUTPUT_CAP = 64 * 1024          # bytes of stdout/stderr read back into memory
_BOOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "boot.py")
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
        raise SandboxError(f"sandbox: {base} belongs to another user; remove it or set TMPDIR elsewhere")
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


def self_test(allow_weak: bool = False) -> str:
    """Run `print(6 * 7)` in the sandbox (once per process) and return the mode: "isolated", or "weak" when
    namespaces do not work here and `allow_weak` accepts it. Otherwise a one-line SandboxError."""
    if "why" not in _state:
        with _state_lock:
            if "why" not in _state:
                _state.update(base=_base_dir(), layout=_root_layout(), cgroup=_memory_cgroup() if os.geteuid() == 0
                              else None)
                why = "disabled by VPD_SANDBOX_NO_NAMESPACES=1" if os.environ.get("VPD_SANDBOX_NO_NAMESPACES") == "1" \
                    else _probe("isolated")
                _state.update(why=why, weak_why=_probe("weak") if why else "")
    why, weak_why = _state["why"], _state["weak_why"]
    if why and not allow_weak:
        raise SandboxError(f"sandbox: untrusted code cannot be isolated here ({why}); allow unprivileged user "
                           "namespaces (`unshare -Urmnpi true` must work), or accept weaker isolation (no "
                           "hidden files, network reachable) with --unsafe-sandbox")
    if weak_why:
        raise SandboxError(f"sandbox: even a trivial program does not run here ({weak_why}); "
                           f"check that {sys.executable} is readable and executable")
    if why and not _state.get("warned"):
        _state["warned"] = True
        print(f"warning: sandbox without namespaces ({why}): model code can read your files and reach the "
              "network (--unsafe-sandbox)", file=sys.stderr)
    return "weak" if why else "isolated"


def _close_quietly(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass


def _probe(mode: str) -> str:
    """"" when a trivial program runs and prints right in `mode`, else the reason in one line."""
    try:
        r = run_program("print(6 * 7)", timeout=30, mode=mode)
    except OSError as e:
        return str(e)
    return "" if r.ok and r.stdout == "42\n" else ((r.stderr.strip().splitlines() or [r.status])[-1])[:300]


def run_program(code: str, stdin: str = "", timeout: float = 5.0, memory_mb: int = 1024, max_processes: int = 32,
                max_file_mb: int = 16, max_open_files: int = 64, argv: list[str] | None = None,
                pass_fds: tuple[int, ...] = (), mode: str | None = None) -> SandboxResult:
    """Run `code` as a python program in the sandbox described above; never raises for anything the program does.
    mode: what self_test returned ("isolated" or "weak"); None runs self_test(allow_weak=False) first. pass_fds: descriptors the program inherits under the same numbers (pipes or files the caller opened); they are
    handed over: run_program closes the caller's copies when it returns."""
    t0 = time.monotonic()
    with contextlib.ExitStack() as stack:
        for fd in pass_fds:
            stack.callback(_close_quietly, fd)
        mode = mode or self_test()
        base, root = _state["base"], os.geteuid() == 0
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


def pool_size(n_jobs: int) -> int:
    """Threads for n_jobs sandboxed programs: twice the CPUs (each thread mostly waits on its child), at least 2,
    at most one per job, and never 0."""
    return min(n_jobs, max(2, (os.cpu_count() or 2) * 2)) or 1


def run_many(jobs: list[dict], workers: int | None = None) -> list[SandboxResult]:
    """run_program(**job) for each job, in a thread pool (the work happens in child processes)."""
    with ThreadPoolExecutor(workers or pool_size(len(jobs))) as pool:
        return list(pool.map(lambda job: run_program(**job), jobs))


def _bench_sandbox(n: int = 50) -> None:
    mode = self_test()
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
    if sys.argv[1:] == ["--bench"]:
        _bench_sandbox()
    else:
        print(__doc__)
