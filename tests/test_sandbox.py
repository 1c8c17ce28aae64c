"""The code sandbox (sandbox/process.py, boot.py): containment, limits, isolation as root and as an unprivileged
user, a python anywhere, weak mode only when allowed. docs/sandbox.md is what these tests hold it to."""
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid

import pytest

import sandbox as sandbox_lib
import tasks
from sandbox import SandboxError, run_many, run_program
from sandbox.process import SANDBOX_UID_BASE
from tasks import TaskError, get_task


def _procs_with(marker: str) -> list[int]:
    """Pids of live processes whose command line contains `marker`."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                if marker.encode() in f.read():
                    found.append(int(entry))
        except OSError:
            pass
    return [p for p in found if p != os.getpid()]


# ------------------------------------------------------------------ sandbox
# The containment tests run twice: with this process as the trainer, and (when the tests run as root) with a child
# trainer running as uid/gid 65534 ("nobody"), which must get the same isolation through user namespaces.
_RUNNER = """import json, os, sys
import sandbox
kw = json.load(sys.stdin)
kw["mode"] = sandbox.self_test()
kw["argv"] = [a.replace("{trainer}", str(os.getpid())) for a in kw.get("argv", [])]
print(json.dumps(sandbox.run_program(**kw).__dict__))
"""
NOBODY = 65534


class _Trainer:
    """Runs sandboxed programs as some user; `plain` runs the same code unsandboxed as that user (the control)."""

    def __init__(self, python: str, cwd: str, uid: int | None, scratch: str):
        self.python, self.cwd, self.uid, self.scratch = python, cwd, uid, scratch   # scratch: the user's own dir
        self.user = {} if uid is None else {"user": uid, "group": uid, "extra_groups": []}
        self.repo_file = os.path.join(cwd, "sandbox", "process.py")

    def run(self, code: str, **kw) -> sandbox_lib.SandboxResult:
        if self.uid is None:
            kw["argv"] = [a.replace("{trainer}", str(os.getpid())) for a in kw.get("argv", [])]
            return run_program(code, **kw)
        p = subprocess.run([self.python, "-c", _RUNNER], input=json.dumps({"code": code, **kw}), cwd=self.cwd,
                           env={"PATH": "/usr/bin:/bin", "HOME": self.scratch}, capture_output=True, text=True,
                           timeout=300, **self.user)
        assert p.returncode == 0, p.stderr[-2000:]
        return sandbox_lib.SandboxResult(**json.loads(p.stdout.splitlines()[-1]))

    def start(self, code: str, **kw) -> subprocess.Popen:
        """A separate trainer process running one program (to kill it mid-run)."""
        p = subprocess.Popen([self.python, "-c", _RUNNER], stdin=subprocess.PIPE, cwd=self.cwd, text=True,
                             env={"PATH": "/usr/bin:/bin", "HOME": self.scratch}, stdout=subprocess.DEVNULL,
                             **self.user)
        p.stdin.write(json.dumps({"code": code, **kw}))
        p.stdin.close()
        return p

    def plain(self, code: str, argv=()) -> subprocess.CompletedProcess:
        return subprocess.run([self.python, "-c", code, *argv], capture_output=True, text=True, timeout=60,
                              cwd=self.scratch, **self.user)


def _nobody_trainer(root: str) -> _Trainer:
    if os.geteuid() != 0:
        pytest.skip("the tests already run as an unprivileged user")
    copy = os.path.join(root, "repo")                      # the checkout may sit under a dir closed to nobody
    os.makedirs(copy)
    shutil.copytree(os.path.dirname(os.path.abspath(sandbox_lib.__file__)), os.path.join(copy, "sandbox"),
                    ignore=shutil.ignore_patterns("__pycache__"))
    scratch = os.path.join(root, "home")
    os.makedirs(scratch)
    os.chown(scratch, NOBODY, NOBODY)
    for d in (root, copy, os.path.join(copy, "sandbox")):
        os.chmod(d, 0o755)
    for python in (sys.executable, shutil.which("python3", path="/usr/local/bin:/usr/bin:/bin")):
        try:
            if python and subprocess.run([python, "-c", "import sandbox"], cwd=copy, capture_output=True,
                                         user=NOBODY, group=NOBODY, extra_groups=[]).returncode == 0:
                return _Trainer(python, copy, NOBODY, scratch)
        except OSError:                                    # e.g. an interpreter under /root
            pass
    pytest.skip("no python interpreter that uid 65534 may run")


@pytest.fixture(scope="module", params=["trainer", "nobody"])
def sandbox(request):
    root = tempfile.mkdtemp(prefix="vpd-sandbox-test-")
    try:
        if request.param == "trainer":
            scratch = os.path.join(root, "home")
            os.makedirs(scratch)
            yield _Trainer(sys.executable, os.path.dirname(os.path.abspath(tasks.__file__)), None, scratch)
        else:
            yield _nobody_trainer(root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_sandbox_runs_and_returns_output(sandbox):
    r = sandbox.run("import sys\nprint(input()[::-1])\nprint('err', file=sys.stderr)", stdin="abc\n")
    assert r.ok and r.returncode == 0 and r.stdout == "cba\n" and r.stderr == "err\n" and not r.timed_out


def test_sandbox_runtime_error_and_exit_code():
    r = run_program("raise ValueError('boom')")
    assert not r.ok and r.status.startswith("runtime error") and "ValueError: boom" in r.stderr
    assert run_program("raise SystemExit(3)").status == "runtime error (exit code 3)"


def test_sandbox_namespaces_and_privileges(sandbox):
    code = ("import os\nstatus = dict(l.split(':', 1) for l in open('/proc/self/status'))\n"
            "print(os.getuid(), os.getgid(), os.getgroups(), int(status['CapEff'], 16), int(status['CapBnd'], 16),"
            " int(status['NoNewPrivs']))\n"
            "print(*[os.readlink('/proc/self/ns/' + n) for n in ('ipc', 'net', 'pid', 'mnt', 'uts')])")
    r = sandbox.run(code)
    ids, ns = r.stdout.splitlines()
    uid, gid, groups, cap_eff, cap_bnd, no_new_privs = ids.replace("[]", "none").split()
    assert (cap_eff, cap_bnd, no_new_privs) == ("0", "0", "1")
    if sandbox.uid is None and os.geteuid() == 0:          # as root: the run's own uid, no groups
        assert int(uid) >= SANDBOX_UID_BASE and int(gid) >= SANDBOX_UID_BASE and groups == "none"
    host = [os.readlink(f"/proc/self/ns/{n}") for n in ("ipc", "net", "pid", "mnt", "uts")]
    assert all(inner != outer for inner, outer in zip(ns.split(), host)), (ns, host)


@pytest.mark.parametrize("code,status", [
    ("while True: pass", "time limit exceeded"),
    ("import time; time.sleep(60)", "time limit exceeded"),
    ("x = bytearray(8 * 1024**3)", "memory limit exceeded"),
    ("import sys\nwhile True: sys.stdout.write('x' * 65536)", "output limit exceeded"),
    ("import sys\nwhile True: sys.stderr.write('e' * 65536)", "output limit exceeded"),
    ("with open('big.bin', 'wb') as f:\n    while True: f.write(b'x' * 1048576)", "output limit exceeded"),
    ("i = 0\nwhile True:\n    open(f'/dev/shm/{i}', 'wb').write(b'x' * (8 << 20))\n    i += 1",   # tmpfs full
     "runtime error (exit code 1)"),
])
def test_sandbox_contains_resource_abuse(sandbox, code, status):
    marker = uuid.uuid4().hex
    r = sandbox.run(code, timeout=3, argv=[marker])
    assert r.status == status, (r.status, r.stderr[-300:])
    assert len(r.stdout) < 100_000 and len(r.stderr) < 100_000
    assert _procs_with(marker) == []


def test_sandbox_fork_bomb_is_contained(sandbox):
    marker = uuid.uuid4().hex
    code = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    r = sandbox.run(code, timeout=3, argv=[marker])
    assert not r.ok
    assert _procs_with(marker) == []


@pytest.mark.parametrize("detach", [
    "import os, time\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n        time.sleep(120)\n"
    "    os._exit(0)\nprint('parent done')",
    "import subprocess, sys\nsubprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)', sys.argv[1]],"
    " start_new_session=True)\nprint('parent done')",
])
def test_sandbox_kills_detached_children(sandbox, detach):
    marker = uuid.uuid4().hex
    r = sandbox.run(detach, argv=[marker])
    assert r.stdout == "parent done\n"
    assert _procs_with(marker) == []                       # run_program returns after the namespace is empty


def test_sandbox_cannot_signal_the_trainer(sandbox):
    code = ("import os, signal, sys\nfor pid in (os.getppid(), int(sys.argv[1]), 1, -1):\n    try:\n"
            "        os.kill(pid, signal.SIGKILL)\n    except OSError:\n        pass\nprint('still here')")
    r = sandbox.run(code, argv=["{trainer}"])
    assert r.stdout == "still here\n"                      # and the trainer is alive: it returned a result
    os.kill(os.getpid(), 0)


def test_sandbox_cannot_read_user_files(sandbox):
    secret = "secret-" + uuid.uuid4().hex
    files = [os.path.join(sandbox.scratch, ".cache", "huggingface", "token"),
             os.path.join(sandbox.scratch, "runs", "ckpt", "model.safetensors"),
             os.path.join(sandbox.cwd, "secret-" + uuid.uuid4().hex)]
    for p in files:
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "w") as f:
            f.write(secret)
        os.chmod(p, 0o644)
    try:
        files += [sandbox.repo_file, os.path.expanduser("~/.bashrc")]
        code = "import sys\nfor p in sys.argv[1:]:\n    try:\n        print(open(p).read())\n" \
               "    except OSError as e:\n        print('denied', type(e).__name__)\n"
        control = sandbox.plain(code, files[:4])           # unsandboxed, the same user reads them all
        assert control.stdout.count(secret) == 3 and "def run_program" in control.stdout, control.stderr
        r = sandbox.run(code, argv=files)
        assert r.ok and r.stdout.count("denied FileNotFoundError") == len(files), r.stdout
    finally:
        for p in files[:3]:
            os.unlink(p)


def test_sandbox_cannot_write_outside(sandbox):
    name = "vpd-escape-" + uuid.uuid4().hex
    targets = [os.path.join(d, name) for d in ("/tmp", sandbox.scratch, sandbox.cwd, sys.prefix, "/usr")]
    code = "import sys\nfor p in sys.argv[1:]:\n    try:\n        open(p, 'w').write('x')\n    except OSError as e:\n" \
           "        print('denied', p)\n"
    control = sandbox.plain(code, targets[1:2])            # unsandboxed, the user may write its own dir
    assert control.stdout == "" and os.path.exists(targets[1])
    os.unlink(targets[1])
    r = sandbox.run(code, argv=targets)
    assert r.ok and f"denied {targets[4]}" in r.stdout
    for p in targets:
        assert not os.path.exists(p), p


def test_sandbox_has_no_network(sandbox):
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        port = str(server.getsockname()[1])
        code = "import socket, sys\nsocket.create_connection(('127.0.0.1', int(sys.argv[1])), timeout=3)\nprint('in')"
        r = sandbox.run(code, argv=[port])
        assert not r.ok and "in" not in r.stdout and "OSError" in r.stderr, r.stderr[-300:]
        server.settimeout(0)
        with pytest.raises(BlockingIOError):
            server.accept()                                # nothing from the sandbox reached the listener
        control = sandbox.plain(code, [port])              # the same connect works outside the sandbox
        assert control.stdout == "in\n", control.stderr
        server.accept()[0].close()


def test_sandbox_planted_output_files_change_nothing(sandbox):
    code = ("import os\nfor d in ('.', '/tmp'):\n    for n in ('stdout.txt', 'stderr.txt', 'stdin.txt'):\n"
            "        p = os.path.join(d, n)\n        if n == 'stderr.txt':\n            os.symlink('/etc/passwd', p)\n"
            "        else:\n            os.mkfifo(p)\nprint('hello')")
    r = sandbox.run(code, stdin="in\n")
    assert r.ok and r.stdout == "hello\n" and r.stderr == "", r.stderr


def test_sandbox_program_dies_with_the_trainer(sandbox):
    marker = uuid.uuid4().hex
    trainer = sandbox.start("import time\ntime.sleep(120)", timeout=100, argv=[marker])
    deadline = time.monotonic() + 60
    while not _procs_with(marker) and time.monotonic() < deadline and trainer.poll() is None:
        time.sleep(0.05)
    assert _procs_with(marker), "the program never started"
    trainer.kill()
    trainer.wait()
    deadline = time.monotonic() + 30                       # its own budget: the start may have used most of the first
    while _procs_with(marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _procs_with(marker) == []


def test_sandbox_bounds_the_memory_of_a_process_tree():
    """Four children of 200 MB each stay under the per-process limit (300 MB) but not together."""
    sandbox_lib.self_test()
    if not sandbox_lib.process._state["cgroup"]:
        pytest.skip("no writable memory cgroup here: a tree is bounded by max_processes x memory_mb (docs/sandbox.md)")
    code = ("import os, time\npids = []\nfor _ in range(4):\n    pid = os.fork()\n    if pid == 0:\n"
            "        x = b'1' * (200 << 20)\n        time.sleep(2)\n        os._exit(0)\n    pids.append(pid)\n"
            "print(sum(os.waitpid(p, 0)[1] == 0 for p in pids), 'children finished')")
    r = run_program(code, timeout=20, memory_mb=300)
    assert "4 children finished" not in r.stdout, r
    assert r.status == "memory limit exceeded" or r.stdout.split()[0] in "0123", r


def test_sandbox_runs_a_python_that_lives_anywhere(tmp_path):
    """A virtual environment under /tmp in a directory with spaces (the sandbox gets a fresh /tmp of its own)."""
    venv = os.path.join(tempfile.mkdtemp(prefix="vpd venv "), "my env")
    try:
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True)
        python = os.path.join(venv, "bin", "python")
        code = "import sandbox\nr = sandbox.run_program('import sys; print(sys.prefix)')\nprint(r.status, r.stdout, end='')"
        p = subprocess.run([python, "-c", code], cwd=os.path.dirname(os.path.abspath(tasks.__file__)),
                           capture_output=True, text=True, timeout=120)
        assert p.stdout == f"ok {venv}\n", p.stderr[-1000:]
    finally:
        shutil.rmtree(os.path.dirname(venv))


_WEAK = """import json, sys
import sandbox
mode = sandbox.self_test(allow_weak=True)
print(json.dumps([mode, sandbox.run_program(sys.argv[1], argv=sys.argv[2:], mode=mode).__dict__]))
"""


def test_sandbox_refuses_weak_isolation_unless_allowed(monkeypatch):
    monkeypatch.setattr(sandbox_lib.process, "_state", {})
    monkeypatch.setenv("VPD_SANDBOX_NO_NAMESPACES", "1")
    with pytest.raises(TaskError, match=r"cannot be isolated here \(disabled by VPD_SANDBOX_NO_NAMESPACES=1\).*"
                                        r"--unsafe-sandbox") as e:
        get_task("code")
    assert "\n" not in str(e.value)
    # allowed: weak mode runs (in a fresh process; as root with a python the run's uid can reach, e.g. not /root)
    marker = uuid.uuid4().hex
    code = ("import os, time\nif os.fork() == 0:\n    os.setsid()\n    time.sleep(120)\n"
            "print(os.getuid(), int(open('/proc/self/status').read().split('NoNewPrivs:')[1].split()[0]))")
    for python in (sys.executable, shutil.which("python3", path="/usr/local/bin:/usr/bin:/bin")):
        p = subprocess.run([python, "-c", _WEAK, code, marker], capture_output=True, text=True, timeout=120,
                           cwd=os.path.dirname(os.path.abspath(tasks.__file__)))
        if p.returncode == 0:
            break
        assert os.geteuid() == 0 and "even a trivial program does not run here" in p.stderr, p.stderr
    mode, r = json.loads(p.stdout)
    uid, no_new_privs = r["stdout"].split()
    assert mode == "weak" and r["status"] == "ok" and no_new_privs == "1"
    if os.geteuid() == 0:                                  # as root: the run's own uid, killed after the run
        assert int(uid) >= SANDBOX_UID_BASE and _procs_with(marker) == []
    for pid in _procs_with(marker):                        # weak mode as a user leaves it (documented): clean up
        os.kill(pid, 9)


def test_sandbox_self_test_gives_a_one_line_error(monkeypatch):
    monkeypatch.setattr(sandbox_lib.process, "_state", {})
    monkeypatch.setattr(sandbox_lib.process, "_BOOT", "/nonexistent/boot.py")
    with pytest.raises(TaskError, match=r"^sandbox: untrusted code cannot be isolated here \(.*No such file") as e:
        get_task("code")
    assert "\n" not in str(e.value)
    with pytest.raises(SandboxError, match=r"^sandbox: even a trivial program does not run here"):
        sandbox_lib.self_test(allow_weak=True)


def test_run_many_in_parallel():
    t0 = time.monotonic()
    rs = run_many([{"code": "import time; time.sleep(0.5); print(%d)" % i} for i in range(8)], workers=8)
    assert [r.stdout.strip() for r in rs] == [str(i) for i in range(8)]
    assert time.monotonic() - t0 < 3.5       # 8 x 0.5 s sequentially would be >= 4 s

