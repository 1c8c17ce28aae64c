"""Writes data/science_mc-train.jsonl and data/science_mc-test.jsonl: elementary-science multiple-choice questions
for `--task qa` (deterministic).

    python data/make_science_mc.py

Each row is {"question", "choices" (4), "answer" (the right choice's text), "explanation"}. The questions come from
small fact tables (animal classes, planets, conductors, states of matter, energy sources, SI units, organs, plant
parts, diets, chemical symbols); the three wrong choices are drawn from the other rows of the same table. Items are
shuffled once and split 80 / 20 into train and test, so the test set asks about facts the training set never
names as the answer.
"""
import json
import os
import random

# (question, {answer: explanation-or-None}, distractor pool): one item per answer
GROUPS = {
    "animal class": [
        ("Which of these animals is a mammal?", ["whale", "dolphin", "bat", "horse", "elephant", "rabbit", "cow"],
         "Mammals are warm-blooded, have hair and feed their young milk."),
        ("Which of these animals is a bird?", ["penguin", "ostrich", "eagle", "owl", "parrot", "sparrow"],
         "Birds have feathers and lay eggs with hard shells."),
        ("Which of these animals is a fish?", ["shark", "salmon", "tuna", "trout", "goldfish", "cod"],
         "Fish live in water and breathe with gills all their lives."),
        ("Which of these animals is a reptile?", ["snake", "lizard", "crocodile", "turtle", "iguana"],
         "Reptiles are cold-blooded and have dry, scaly skin."),
        ("Which of these animals is an amphibian?", ["frog", "toad", "salamander", "newt"],
         "Amphibians start life in water with gills and later breathe air."),
        ("Which of these animals is an insect?", ["ant", "bee", "butterfly", "beetle", "grasshopper", "mosquito"],
         "Insects have six legs and three body parts."),
    ],
    "diet": [
        ("Which of these animals eats only plants?", ["cow", "deer", "rabbit", "giraffe", "koala", "sheep"],
         "Herbivores eat only plants."),
        ("Which of these animals eats mainly other animals?", ["lion", "wolf", "tiger", "eagle", "shark", "owl"],
         "Carnivores eat mainly other animals."),
    ],
    "sky": [
        ("Which of these is a planet?", ["Mars", "Venus", "Jupiter", "Saturn", "Mercury", "Neptune", "Uranus"],
         "Eight planets orbit the Sun; stars, moons and comets are not planets."),
        ("Which of these is a star?", ["the Sun", "Sirius", "Polaris", "Betelgeuse", "Vega"],
         "A star is a ball of hot gas that makes its own light."),
        ("Which of these is a moon?", ["Titan", "Europa", "Ganymede", "Phobos", "Io"],
         "A moon orbits a planet."),
    ],
    "material": [
        ("Which of these materials conducts electricity well?", ["copper", "silver", "aluminium", "iron", "gold"],
         "Metals conduct electricity well."),
        ("Which of these materials is a good electrical insulator?", ["rubber", "glass", "wood", "plastic", "cotton"],
         "Insulators such as rubber, glass, wood and plastic do not let current flow easily."),
    ],
    "state": [
        ("Which of these is a gas at room temperature?", ["oxygen", "nitrogen", "helium", "neon", "hydrogen"],
         "Oxygen, nitrogen, helium, neon and hydrogen boil far below room temperature."),
        ("Which of these is a liquid at room temperature?", ["water", "mercury", "ethanol", "olive oil"],
         "These melt below and boil above room temperature."),
        ("Which of these is a solid at room temperature?", ["salt", "sand", "sugar", "granite", "diamond"],
         "These melt far above room temperature."),
    ],
    "energy": [
        ("Which of these is a renewable energy source?", ["solar power", "wind power", "hydroelectric power",
                                                          "geothermal power", "tidal power"],
         "Renewable sources are replenished naturally and do not run out."),
        ("Which of these is a fossil fuel?", ["coal", "crude oil", "natural gas", "peat"],
         "Fossil fuels formed from ancient plants and animals over millions of years."),
    ],
}
# (question pattern, {key: answer}): distractors are the other answers of the table
TABLES = {
    "What is the SI unit of {}?": {"force": "newton", "energy": "joule", "power": "watt", "pressure": "pascal",
                                   "frequency": "hertz", "electric current": "ampere", "mass": "kilogram",
                                   "electric charge": "coulomb", "voltage": "volt", "electrical resistance": "ohm",
                                   "temperature": "kelvin", "length": "metre"},
    "Which organ {}?": {"pumps blood around the body": "heart", "takes oxygen from the air": "lungs",
                        "filters blood to make urine": "kidneys", "controls the body and thinks": "brain",
                        "breaks down food with acid": "stomach", "makes bile and stores sugar": "liver",
                        "absorbs most nutrients from food": "small intestine"},
    "Which part of a plant {}?": {"makes food by photosynthesis": "leaf", "takes in water from the soil": "root",
                                  "makes seeds": "flower", "carries water up to the leaves": "stem",
                                  "protects and spreads the seeds": "fruit"},
    "What is the chemical symbol of {}?": {"oxygen": "O", "hydrogen": "H", "iron": "Fe", "sodium": "Na",
                                           "gold": "Au", "silver": "Ag", "carbon": "C", "nitrogen": "N",
                                           "potassium": "K", "copper": "Cu", "calcium": "Ca", "helium": "He",
                                           "chlorine": "Cl", "lead": "Pb"},
}


def items(rng: random.Random) -> list[dict]:
    out = []
    for rows in GROUPS.values():
        for question, answers, why in rows:
            others = [a for q, ans, _ in rows if q != question for a in ans]
            for answer in answers:
                choices = rng.sample(others, 3) + [answer]
                rng.shuffle(choices)
                out.append({"question": question, "choices": choices, "answer": answer,
                            "explanation": f"{answer[0].upper() + answer[1:]}: {why}"})
    for pattern, table in TABLES.items():
        for key, answer in table.items():
            choices = rng.sample([a for a in table.values() if a != answer], 3) + [answer]
            rng.shuffle(choices)
            out.append({"question": pattern.format(key), "choices": choices, "answer": answer,
                        "explanation": f"The answer is {answer}."})
    return out


def main():
    rng = random.Random(0)
    rows = items(rng)
    rng.shuffle(rows)
    n_test = len(rows) // 5
    here = os.path.dirname(os.path.abspath(__file__))
    for split, chosen in (("test", rows[:n_test]), ("train", rows[n_test:])):
        with open(os.path.join(here, f"science_mc-{split}.jsonl"), "w") as f:
            for row in chosen:
                f.write(json.dumps(row) + "\n")
    print(f"{len(rows) - n_test} train, {n_test} test")


if __name__ == "__main__":
    main()
