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

import random
import re
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
