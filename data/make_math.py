"""Writes data/math_problems.jsonl: the default math task's word problems, generated from templates (deterministic).

    python data/make_math.py

Train: 500 problems from seed 1; test: 100 problems from seed 2, minus any test question that also occurs in train
(99 remain). Each row is {"id", "split", "question", "answer" (an integer, as text), "explanation" (the worked
steps the feedback quotes)}. Problem i of a seed uses template i % 9, so every template appears in both splits.
test_tasks.py checks that the shipped file equals what this script makes.
"""
import json
import os
import random

_NAMES = ["Ava", "Ben", "Chloe", "David", "Emma", "Farid", "Grace", "Hiro", "Isla", "Jonas", "Kemi", "Liam", "Mila",
          "Noah", "Olga", "Priya", "Quinn", "Rosa", "Sami", "Tara"]
_ITEMS = [("notebook", "notebooks"), ("pen", "pens"), ("apple", "apples"), ("sticker", "stickers"),
          ("candle", "candles"), ("mug", "mugs")]


def _m_shopping(r):
    name, (_, a2), (_, b2) = r.choice(_NAMES), *r.sample(_ITEMS, 2)
    na, pa, nb, pb = r.randint(2, 9), r.randint(2, 15), r.randint(2, 9), r.randint(2, 15)
    cost = na * pa + nb * pb
    bill = next(b for b in (20, 50, 100, 200, 500) if b >= cost)
    q = (f"{name} buys {na} {a2} at ${pa} each and {nb} {b2} at ${pb} each, and pays with a ${bill} bill. "
         f"How many dollars of change does {name} get?")
    steps = (f"The {a2} cost {na} x {pa} = {na * pa} dollars and the {b2} cost {nb} x {pb} = {nb * pb} dollars, "
             f"{cost} dollars in all. The change is {bill} - {cost} = {bill - cost} dollars.")
    return q, bill - cost, steps


def _m_ages(r):
    name, sib = r.sample(_NAMES, 2)
    age, diff, mult, years = r.randint(8, 20), r.randint(1, 6), r.randint(2, 4), r.randint(2, 15)
    young = age - diff
    parent = young * mult
    q = (f"{name} is {age} years old. {name}'s cousin {sib} is {diff} years younger, and their aunt is {mult} times "
         f"as old as {sib}. How old will the aunt be in {years} years?")
    steps = (f"{sib} is {age} - {diff} = {young}. The aunt is {mult} x {young} = {parent} now, so in {years} years "
             f"she will be {parent} + {years} = {parent + years}.")
    return q, parent + years, steps


def _hours(n: int) -> str:
    return f"{n} hour" if n == 1 else f"{n} hours"


def _m_rates(r):
    name = r.choice(_NAMES)
    v1, t1, v2, t2 = r.randint(3, 12) * 5, r.randint(1, 4), r.randint(3, 12) * 5, r.randint(1, 4)
    q = (f"{name} drives at {v1} km/h for {_hours(t1)}, then at {v2} km/h for {_hours(t2)}. How many kilometers does "
         f"{name} drive in total?")
    steps = f"{v1} x {t1} = {v1 * t1} km, then {v2} x {t2} = {v2 * t2} km; in total {v1 * t1 + v2 * t2} km."
    return q, v1 * t1 + v2 * t2, steps


def _m_sharing(r):
    name, (_, items) = r.choice(_NAMES), r.choice(_ITEMS)
    friends, each, keep = r.randint(2, 8), r.randint(2, 12), r.randint(1, 10)
    total = friends * each + keep
    q = (f"{name} has {total} {items}, keeps {keep} and shares the rest equally among {friends} friends. How many "
         f"{items} does each friend get?")
    steps = f"{total} - {keep} = {total - keep} are shared, so each friend gets {total - keep} / {friends} = {each}."
    return q, each, steps


def _m_work(r):
    per_hour, hours, workers = r.randint(4, 30), r.randint(2, 9), r.randint(2, 5)
    total = per_hour * hours * workers
    q = (f"A worker packs {per_hour} boxes per hour. How many hours do {workers} such workers, working together, "
         f"need to pack {total} boxes?")
    steps = (f"Together they pack {workers} x {per_hour} = {workers * per_hour} boxes per hour, so they need "
             f"{total} / {workers * per_hour} = {hours} hours.")
    return q, hours, steps


def _m_discount(r):
    price, pct = r.randint(2, 40) * 20, r.choice([5, 10, 15, 20, 25, 30, 40, 50])
    off = price * pct // 100
    q = f"A jacket costs ${price}. It is on sale for {pct}% off. What is the sale price in dollars?"
    steps = f"The discount is {pct}% of {price} = {off} dollars, so the sale price is {price} - {off} = {price - off}."
    return q, price - off, steps


def _m_savings(r):
    name = r.choice(_NAMES)
    have, weekly, goal = r.randint(0, 50), r.randint(5, 25), r.randint(100, 400)
    need = goal - have
    weeks = -(-need // weekly)
    q = (f"{name} has ${have} and saves ${weekly} every week. After how many weeks will {name} first have at least "
         f"${goal}?")
    steps = (f"{name} needs {goal} - {have} = {need} more dollars. {need} / {weekly} = {need / weekly:.2f}, rounded "
             f"up to whole weeks: {weeks}.")
    return q, weeks, steps


def _m_fence(r):
    length, width, price = r.randint(5, 40), r.randint(3, 30), r.randint(2, 12)
    per = 2 * (length + width)
    q = (f"A rectangular garden is {length} m long and {width} m wide. Fencing costs ${price} per meter. How many "
         f"dollars does it cost to fence the whole garden?")
    steps = f"The perimeter is 2 x ({length} + {width}) = {per} m, so the fence costs {per} x {price} = {per * price}."
    return q, per * price, steps


def _m_temperature(r):
    start, drop, rise = r.randint(-5, 10), r.randint(5, 20), r.randint(1, 8)
    end = start - drop + rise
    q = (f"The temperature at 6 pm was {start} degrees. By midnight it fell by {drop} degrees, then by morning it rose "
         f"by {rise} degrees. What was the morning temperature in degrees?")
    steps = f"{start} - {drop} = {start - drop}, then {start - drop} + {rise} = {end}."
    return q, end, steps


_MATH_TEMPLATES = [_m_shopping, _m_ages, _m_rates, _m_sharing, _m_work, _m_discount, _m_savings, _m_fence,
                   _m_temperature]


def _generate_math(seed: int, n: int) -> list[dict]:
    r = random.Random(seed)
    out = []
    for i in range(n):
        template = _MATH_TEMPLATES[i % len(_MATH_TEMPLATES)]
        q, ans, steps = template(r)
        out.append({"id": f"math-{seed}-{i}", "question": q, "answer": str(ans), "explanation": steps})
    return out


def problems() -> list[dict]:
    """Every row of data/math_problems.jsonl, train first."""
    train = _generate_math(1, 500)
    seen = {e["question"] for e in train}
    test = [e for e in _generate_math(2, 100) if e["question"] not in seen]
    return [{"id": e["id"], "split": split, "question": e["question"], "answer": e["answer"],
             "explanation": e["explanation"]} for split, rows in (("train", train), ("test", test)) for e in rows]


def main():
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "math_problems.jsonl"), "w") as f:
        for row in problems():
            f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
