"""Instruction-induction tasks the project generates itself, with fixed seeds.

Each generator draws a pool of distinct examples from a seeded ``random.Random``,
shuffles it and cuts disjoint train/dev/test splits (by input; antonym pairs are
used in one direction only so no split sees the reverse of another's pair).
Initial prompts are deliberately plain and under-specified: they name the topic
but not the exact answer format, which leaves room for the optimizers.
"""
from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from . import words as W
from .core import Example, PromptTask

#: Default split sizes (the antonym and plural pools are smaller; they are cut proportionally).
DEFAULT_SIZES = {"train": 20, "dev": 40, "test": 60}


@dataclass(frozen=True)
class _Spec:
    description: str
    initial_prompt: str
    pool: Callable[[random.Random], list[Example]]
    metric: str = "normalized"
    labels: tuple[str, ...] = ()
    max_tokens: int = 12


def _pairs(rng: random.Random, lo: int, hi: int, n: int, ordered: bool = False) -> list[tuple[int, int]]:
    seen: set[tuple[int, int]] = set()
    while len(seen) < n:
        a, b = rng.randint(lo, hi), rng.randint(lo, hi)
        if ordered and a < b:
            a, b = b, a
        if a != b:
            seen.add((a, b))
    return sorted(seen)


def _sum(rng: random.Random) -> list[Example]:
    return [Example(f"{a} {b}", str(a + b)) for a, b in _pairs(rng, 1, 99, 300)]


def _difference(rng: random.Random) -> list[Example]:
    return [Example(f"{a} {b}", str(a - b)) for a, b in _pairs(rng, 1, 99, 300, ordered=True)]


def _larger(rng: random.Random) -> list[Example]:
    return [Example(f"{a} {b}", str(max(a, b))) for a, b in _pairs(rng, 1, 999, 300)]


def _first_letter(rng: random.Random) -> list[Example]:
    return [Example(w, w[0]) for w in W.WORDS]


def _letters(rng: random.Random) -> list[Example]:
    return [Example(w, " ".join(w)) for w in W.WORDS]


def _number_words(rng: random.Random) -> list[Example]:
    nums = rng.sample(range(0, 1000), 400)
    out = []
    for n in nums:
        words = W.number_words(n)
        alts = (words.replace(" hundred ", " hundred and "),) if n >= 100 and n % 100 else ()
        out.append(Example(str(n), words, alts))
    return out


def _plural(rng: random.Random) -> list[Example]:
    return [Example(s, p) for s, p in W.PLURALS]


def _sorting(rng: random.Random) -> list[Example]:
    seen: set[tuple[str, ...]] = set()
    while len(seen) < 300:
        seen.add(tuple(rng.sample(W.WORDS, rng.randint(3, 4))))
    return [Example(" ".join(ws), " ".join(sorted(ws))) for ws in sorted(seen)]


def _antonyms(rng: random.Random) -> list[Example]:
    return [Example(a, b) for a, b in W.ANTONYMS]


def _sentiment(rng: random.Random) -> list[Example]:
    """Half plain statements, a third negated ("was not great" is negative), so word spotting is not enough."""
    seen: dict[str, str] = {}
    while len(seen) < 300:
        label = rng.choice(("positive", "negative"))
        negated = rng.random() < 0.35
        word_pos = (label == "positive") != negated
        adj = rng.choice(W.SENTIMENT_POSITIVE if word_pos else W.SENTIMENT_NEGATIVE)
        subj = rng.choice(W.SENTIMENT_SUBJECTS)
        tpl = rng.choice(W.SENTIMENT_NEGATED if negated else W.SENTIMENT_TEMPLATES)
        text = tpl.format(subj=subj, subj_l=subj[0].lower() + subj[1:], adj=adj)
        seen.setdefault(text, label)
    return [Example(t, lab) for t, lab in sorted(seen.items())]


SPECS: dict[str, _Spec] = {
    "sum": _Spec("Add the two numbers in the input; the output is their sum.",
                 "Look at the numbers.", _sum, max_tokens=8),
    "difference": _Spec("Subtract the second number from the first; the output is the difference.",
                        "Compare the numbers.", _difference, max_tokens=8),
    "larger": _Spec("Output the larger of the two numbers in the input.",
                    "Pick a number.", _larger, max_tokens=8),
    "first_letter": _Spec("Output the first letter of the input word.",
                          "Look at the word.", _first_letter, max_tokens=6),
    "letters": _Spec("Spell the input word: output its letters separated by spaces.",
                     "Write the word differently.", _letters, max_tokens=24),
    "number_words": _Spec("Write the input number (0-999) in English words.",
                          "Convert the number.", _number_words, max_tokens=16),
    "plural": _Spec("Output the plural form of the input noun.",
                    "Change the word.", _plural, max_tokens=8),
    "word_sorting": _Spec("Sort the input words in alphabetical order; output them separated by spaces.",
                          "Put the words in order.", _sorting, max_tokens=24),
    "antonyms": _Spec("Output a word with the opposite meaning of the input word.",
                      "Give a related word.", _antonyms, max_tokens=6),
    "sentiment": _Spec("Classify the sentiment of the input sentence as positive or negative.",
                       "Read the sentence.", _sentiment, metric="label", labels=("positive", "negative"),
                       max_tokens=4),
}


def generate_task(name: str, seed: int = 0, sizes: dict[str, int] | None = None) -> PromptTask:
    """Build task ``name`` with splits drawn by ``random.Random(seed)``; deterministic in (name, seed, sizes)."""
    if name not in SPECS:
        raise KeyError(f"unknown prompt task {name!r}; known: {', '.join(sorted(SPECS))}")
    spec = SPECS[name]
    want = {**DEFAULT_SIZES, **(sizes or {})}
    for k, v in want.items():
        if k not in DEFAULT_SIZES or int(v) < (0 if k == "train" else 1):
            raise ValueError(f"bad split size {k}={v}: sizes are train>=0, dev>=1, test>=1")
    rng = random.Random(f"{name}:{seed}")
    pool = spec.pool(rng)
    rng.shuffle(pool)
    total = sum(want.values())
    if total > len(pool):  # cut proportionally; dev and test keep at least one example each
        scale = len(pool) / total
        want = {k: int(v * scale) for k, v in want.items()}
        want["test"] = len(pool) - want["train"] - want["dev"]
    a, b = want["train"], want["train"] + want["dev"]
    return PromptTask(name=name, description=spec.description, initial_prompt=spec.initial_prompt,
                      train=pool[:a], dev=pool[a:b], test=pool[b:b + want["test"]], metric=spec.metric,
                      labels=spec.labels, max_tokens=spec.max_tokens, seed=seed)
