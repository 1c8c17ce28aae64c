"""Tasks (tasks.py) other than code: get_task, the loaders, science, math, qa, the toy, the shipped data, a task
from your own file."""
import json
import os
import re
import time

import pytest

import tasks
from tasks import TaskError, get_task


def _extracts(extract, cases: dict) -> None:
    for text, want in cases.items():
        assert extract(text) == want, text


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


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
             "Answer: C\nWhy not (A)? (A) is too big.\nA": "C", "Options:\nA. x\nB. y": "",
             # a hedge: strong markers that name two letters are no answer, whichever comes last
             "The answer is B. The answer is D. The answer is B.": "", "\\boxed{C} so the answer is C": "C",
             "The answer is B. (D) is wrong.": "B",
             # a marker followed by a list of letters is a hedge too; a letter that starts a word is not a letter
             "Answer: B or D": "", "The answer is (B) or (D).": "", "Answer: B/D": "", "The answer is B, C and D": "",
             "(A) or (B)": "", "option B or C": "", "Answer: B, not D": "B", "Answer: B, A gas": "B",
             "Answer: B or I think so": "B", "Answer: B. A plant needs light.": "B"}
    _extracts(tasks.extract_choice, cases)


def test_science_hedge_feedback():
    task = get_task("science")
    ex = {"question": "q", "options": ["w", "x", "y", "z"], "answer": "B", "explanation": ""}
    assert tasks.answer_letters("Answer: B. Answer: D. \\boxed{B}") == ["B", "D"]
    assert tasks.answer_letters("Answer: B or D. \\boxed{C}") == ["B", "D", "C"]
    hedge = task.score(ex, "The answer is B. The answer is D. The answer is B.")
    assert hedge.reward == 0.0 and hedge.feedback == ("You gave more than one answer (B, D), which is wrong. "
                                                      "The correct answer is B (x).")
    assert task.score(ex, "The answer is B. So, Answer: B").reward == 1.0
    assert task.score(ex, "Answer: B or D").feedback.startswith("You gave more than one answer (B, D), which is")


def test_listed_letters_and_option_texts():
    options = ["Iron", "Oxygen", "Salt", "Both A and B"]
    cases = {"B": ["B"], "B or D": ["B", "D"], "(B)/(D)": ["B", "D"], "B, C and D": ["B", "C", "D"],
             "B. Oxygen or C. Salt": ["B", "C"], "**B** or **C**": ["B", "C"], "B or B": ["B"],
             "D. Both A and B": ["D"], "D) Both A and B, not C": ["D"],    # an option's own text names letters
             "B, a gas": ["B"], "B, A gas": ["B"], "B because C is wrong": ["B"], "E or B": [], "the B": []}
    assert {t: tasks.listed_letters(t, "ABCD", options) for t in cases} == cases
    assert tasks.extract_choice("Answer: D. Both A and B", "ABCD", options) == "D"
    assert tasks.extract_choice("Answer: B. Oxygen or C. Salt", "ABCD", options) == ""
    assert tasks.extract_choice("Answer: B. Oxygen or C. Salt", "ABCD") == "B"   # the list is seen through its texts


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
    _extracts(tasks.extract_number, cases)


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


# ------------------------------------------------------------------ toy (docs/algorithm.md §10)
def test_toy_task_data_reward_and_feedback():
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
    ("47", "What is 12 + 35?", "The answer is 46. No, the answer is 47.", 0.0),  # a hedge: two answers named
    ("47", "What is 12 + 35?", "The answer is 47. So the answer is **47**.", 1.0),
    ("47", "What is 12 + 35?", "The answer is: 12 + 35 = 47. The answer is 47", 1.0),   # 12 restates the question
    ("47", "What is 12 + 35?", "I wonder which answer is right: 30 + 17. The answer is 47", 1.0),  # prose, no hedge
    ("Paris", "What is the capital of France?", "The answer is Lyon. The answer is Paris.", 1.0),  # text: by the last
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
    hedges = {"The correct answer is B. The correct answer is B.": 1.0, "The answer is Oxygen. Answer: B": 1.0,
              "The correct answer is B. The correct answer is A. The correct answer is B.": 0.0,
              "Answer: salt. Final answer: B": 0.0, "Which answer is right? Iron rusts. The answer is B": 1.0,
              "Answer: B or A": 0.0, "B/C": 0.0, "The answer is B. Oxygen or C. Salt": 0.0, "B. Oxygen, not A": 1.0,
              "B, not A": 1.0, "B, C": 0.0,
              "Answer: B. Oxygen, unlike A. Iron": 1.0, "B. Oxygen, a gas": 1.0}
    assert {r: task.score(ex, r).reward for r in hedges} == hedges
    assert task.score(ex, "The answer is B. The answer is A.").feedback == (
        "You gave more than one answer (B, A), which is wrong. The correct answer is B. Oxygen. "
        "Oxygen boils at -183 C.")
    longest = get_task("qa", "qa:" + _qa_file(tmp_path, [{"question": "Rust is?", "choices": ["Iron", "Iron oxide"],
                                                          "answer": "Iron oxide"}], "longest.jsonl"))
    (rust,) = longest.read(longest.path)
    assert longest.named(rust, "iron oxide, of course") == "B"
    assert longest.score(rust, "Answer: iron oxide. Answer: B").reward == 1.0
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

