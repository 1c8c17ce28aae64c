"""Writes data/arith-{train,test}.jsonl (two-digit additions) and data/sub-{train,test}.jsonl (two-digit
subtractions) for `--task qa` (deterministic).

    python data/make_arith.py

Additions: 200 train and 40 test questions "What is A + B?" with A, B in 10..99; no test pair appears in train in
either order. Subtractions: 200 / 40 questions "What is A - B?" with A > B in 10..99, no pair in both. The
explanation ("A + B = C.") is what the feedback adds after the correct answer.
"""
import json
import os
import random


def draw_pairs(seed: int, new) -> list[tuple[int, int]]:
    """240 two-digit pairs from random.Random(seed); new(pair, seen) says whether a drawn pair is kept."""
    rng = random.Random(seed)
    pairs, seen = [], set()
    while len(pairs) < 240:
        pair = (rng.randrange(10, 100), rng.randrange(10, 100))
        pair = new(pair, seen)
        if pair:
            seen.add(pair)
            pairs.append(pair)
    return pairs


def write(name: str, pairs: list[tuple[int, int]], op: str) -> None:
    """name-test.jsonl (the first 40 pairs) and name-train.jsonl (the other 200): "What is A op B?"."""
    here = os.path.dirname(os.path.abspath(__file__))
    for split, chosen in (("test", pairs[:40]), ("train", pairs[40:])):
        with open(os.path.join(here, f"{name}-{split}.jsonl"), "w") as f:
            for a, b in chosen:
                c = a + b if op == "+" else a - b
                f.write(json.dumps({"question": f"What is {a} {op} {b}?", "answer": c,
                                    "explanation": f"{a} {op} {b} = {c}."}) + "\n")


def new_sum(pair, seen):
    """An addition pair not drawn before in either order."""
    return pair if pair not in seen and pair[::-1] not in seen else None


def new_difference(pair, seen):
    """A subtraction pair, larger first, with distinct numbers, not drawn before."""
    a, b = sorted(pair, reverse=True)
    return (a, b) if (a, b) not in seen and a != b else None


def main():
    write("arith", draw_pairs(0, new_sum), "+")
    write("sub", draw_pairs(1, new_difference), "-")


if __name__ == "__main__":
    main()
