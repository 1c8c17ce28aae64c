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


def main():
    rng = random.Random(0)
    pairs, seen = [], set()
    while len(pairs) < 240:
        a, b = rng.randrange(10, 100), rng.randrange(10, 100)
        if (a, b) not in seen and (b, a) not in seen:
            seen.add((a, b))
            pairs.append((a, b))
    here = os.path.dirname(os.path.abspath(__file__))
    for split, chosen in (("test", pairs[:40]), ("train", pairs[40:])):
        with open(os.path.join(here, f"arith-{split}.jsonl"), "w") as f:
            for a, b in chosen:
                f.write(json.dumps({"question": f"What is {a} + {b}?", "answer": a + b,
                                    "explanation": f"{a} + {b} = {a + b}."}) + "\n")


def subtractions():
    rng = random.Random(1)
    pairs, seen = [], set()
    while len(pairs) < 240:
        a, b = sorted((rng.randrange(10, 100), rng.randrange(10, 100)), reverse=True)
        if (a, b) not in seen and a != b:
            seen.add((a, b))
            pairs.append((a, b))
    here = os.path.dirname(os.path.abspath(__file__))
    for split, chosen in (("test", pairs[:40]), ("train", pairs[40:])):
        with open(os.path.join(here, f"sub-{split}.jsonl"), "w") as f:
            for a, b in chosen:
                f.write(json.dumps({"question": f"What is {a} - {b}?", "answer": a - b,
                                    "explanation": f"{a} - {b} = {a - b}."}) + "\n")


if __name__ == "__main__":
    main()
    subtractions()
