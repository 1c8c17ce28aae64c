"""Tests for tasks.py: sandbox containment, answer extraction, feedback texts, data and loaders (CPU, offline)."""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import signal  # noqa: E402
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
def test_sandbox_runs_and_returns_output():
    r = run_program("import sys\nprint(input()[::-1])\nprint('err', file=sys.stderr)", stdin="abc\n")
    assert r.ok and r.returncode == 0 and r.stdout == "cba\n" and r.stderr == "err\n" and not r.timed_out


def test_sandbox_runtime_error_and_exit_code():
    r = run_program("raise ValueError('boom')")
    assert not r.ok and r.status.startswith("runtime error") and "ValueError: boom" in r.stderr


def test_sandbox_drops_root():
    if os.geteuid() != 0:
        pytest.skip("only meaningful as root")
    r = run_program("import os; print(os.getuid(), os.getgid(), os.getgroups())")
    uid, gid, groups = r.stdout.split(maxsplit=2)
    assert int(uid) != 0 and int(gid) != 0 and groups.strip() == "[]"


@pytest.mark.parametrize("code,status", [
    ("while True: pass", "time limit exceeded"),
    ("import time; time.sleep(60)", "time limit exceeded"),
    ("x = bytearray(8 * 1024**3)", "memory limit exceeded"),
    ("import sys\nwhile True: sys.stdout.write('x' * 65536)", "output limit exceeded"),
    ("import sys\nwhile True: sys.stderr.write('e' * 65536)", "output limit exceeded"),
    ("with open('big.bin', 'wb') as f:\n    while True: f.write(b'x' * 1048576)", "output limit exceeded"),
])
def test_sandbox_contains_resource_abuse(code, status):
    marker = uuid.uuid4().hex
    t0 = time.monotonic()
    r = run_program(code, timeout=1.5, argv=[marker])
    assert r.status == status, (r.status, r.stderr[-300:])
    assert time.monotonic() - t0 < 10
    assert len(r.stdout) < 100_000 and len(r.stderr) < 100_000
    assert _procs_with(marker) == []


def test_sandbox_fork_bomb_is_contained():
    marker = uuid.uuid4().hex
    code = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    t0 = time.monotonic()
    r = run_program(code, timeout=1.5, argv=[marker])
    assert not r.ok and time.monotonic() - t0 < 15
    time.sleep(0.2)
    assert _procs_with(marker) == []


@pytest.mark.parametrize("detach", [
    "import os, time\nif os.fork() == 0:\n    os.setsid()\n    time.sleep(120)\nprint('parent done')",
    "import subprocess, sys\nsubprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)', sys.argv[1]],"
    " start_new_session=True)\nprint('parent done')",
])
def test_sandbox_kills_detached_children(detach):
    marker = uuid.uuid4().hex
    r = run_program(detach, argv=[marker])
    assert "parent done" in r.stdout
    time.sleep(0.2)
    assert _procs_with(marker) == []


def test_sandbox_cannot_kill_its_parent():
    r = run_program("import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\nos.killpg(0, signal.SIGKILL)\n"
                    "print('still here')")
    assert not r.ok          # whatever happened inside, we are alive and got a result
    os.kill(os.getpid(), 0)


def test_sandbox_cannot_write_outside(tmp_path):
    name = "vpd-escape-" + uuid.uuid4().hex
    targets = [os.path.join("/tmp", name), os.path.join(os.path.dirname(os.path.abspath(tasks.__file__)), name)]
    code = "import sys\nfor p in sys.argv[1:]:\n    try:\n        open(p, 'w').write('x')\n    except OSError as e:\n" \
           "        print('denied', p)\n"
    r = run_program(code, argv=targets)
    for p in targets:
        assert not os.path.exists(p), p


def test_sandbox_has_no_network():
    r = run_program("import socket\nsocket.create_connection(('127.0.0.1', 9), timeout=1)\n")
    assert not r.ok


def test_run_many_in_parallel():
    t0 = time.monotonic()
    rs = run_many([{"code": "import time; time.sleep(0.5); print(%d)" % i} for i in range(8)], workers=8)
    assert [r.stdout.strip() for r in rs] == [str(i) for i in range(8)]
    assert time.monotonic() - t0 < 3.5       # 8 x 0.5 s sequentially would be >= 4 s
