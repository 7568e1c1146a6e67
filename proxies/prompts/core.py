"""Prompt tasks in the instruction-induction format, answer normalization and metrics.

A task model sees exactly::

    Instruction: <prompt>

    Input: <input>
    Output:

and its reply is scored against the target after normalization (as in the
instruction-induction benchmark of Honovich et al.): the first non-empty line,
lower case, punctuation turned into spaces, whitespace collapsed. Per-example
scores are kept, not only the mean, so a report can show which inputs a prompt
gets right.
"""
from __future__ import annotations

import hashlib
import re
import string
from dataclasses import dataclass, field
from typing import Literal

#: How a reply is compared with the target.
#:   exact      - the reply's first line, stripped, equals the target exactly;
#:   normalized - equal after ``normalize`` (the default);
#:   contains   - the normalized target occurs in the normalized reply as whole words;
#:   label      - classification scored by label log-probabilities (argmax over ``labels``).
Metric = Literal["exact", "normalized", "contains", "label"]
METRICS: tuple[str, ...] = ("exact", "normalized", "contains", "label")

_PUNCT = re.compile("[" + re.escape(string.punctuation) + "\u2018\u2019\u201c\u201d\u2013\u2014]")
_WS = re.compile(r"\s+")


def first_line(text: str) -> str:
    """The first non-empty line of ``text``, stripped ("" if there is none)."""
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    return ""


def normalize(text: str) -> str:
    """First non-empty line, lower case, punctuation -> space, whitespace collapsed, stripped.

    Punctuation becomes a space rather than vanishing so that ``twenty-one`` and
    ``twenty one`` (or ``c, a, t`` and ``c a t``) normalize alike.
    """
    line = first_line(text).lower()
    return _WS.sub(" ", _PUNCT.sub(" ", line)).strip()


def match(prediction: str, targets: tuple[str, ...] | list[str], metric: str = "normalized") -> float:
    """1.0 if ``prediction`` matches any of ``targets`` under ``metric``, else 0.0."""
    if metric == "exact":
        p = first_line(prediction)
        return float(any(p == t.strip() for t in targets))
    if metric in ("normalized", "label"):
        p = normalize(prediction)
        return float(any(p == normalize(t) for t in targets))
    if metric == "contains":
        p = f" {normalize(prediction)} "
        return float(any(normalize(t) and f" {normalize(t)} " in p for t in targets))
    raise ValueError(f"unknown metric {metric!r}: use one of {', '.join(METRICS)}")


def format_query(prompt: str, input_text: str) -> str:
    """The instruction-induction query the task model sees."""
    return f"Instruction: {prompt.strip()}\n\nInput: {input_text}\nOutput:"


@dataclass(frozen=True)
class Example:
    """One input/output pair; ``alts`` are further accepted outputs."""
    input: str
    output: str
    alts: tuple[str, ...] = ()

    @property
    def targets(self) -> tuple[str, ...]:
        return (self.output, *self.alts)


@dataclass
class PromptTask:
    """A prompt-optimization task: data splits, the metric, a description and a plain initial prompt.

    ``labels`` (metric "label") are the class words whose log-probabilities after
    the query decide the prediction.
    """
    name: str
    description: str
    initial_prompt: str
    train: list[Example]
    dev: list[Example]
    test: list[Example]
    metric: str = "normalized"
    labels: tuple[str, ...] = ()
    max_tokens: int = 12
    seed: int = 0
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise ValueError(f"task {self.name!r}: unknown metric {self.metric!r}; use one of {', '.join(METRICS)}")
        if self.metric == "label" and len(self.labels) < 2:
            raise ValueError(f"task {self.name!r}: metric 'label' needs at least two labels")
        if not self.dev or not self.test:
            raise ValueError(f"task {self.name!r}: dev and test splits must not be empty")

    def split(self, name: str) -> list[Example]:
        if name not in ("train", "dev", "test"):
            raise ValueError(f"unknown split {name!r}: use train, dev or test")
        return getattr(self, name)

    def score(self, prediction: str, example: Example) -> float:
        return match(prediction, example.targets, "normalized" if self.metric == "label" else self.metric)

    def fingerprint(self) -> str:
        """A short hash of everything that changes a score (data, metric, labels)."""
        h = hashlib.sha256()
        h.update(f"{self.name}|{self.metric}|{self.labels}|{self.max_tokens}".encode())
        for split in (self.train, self.dev, self.test):
            for ex in split:
                h.update(f"{ex.input}\x00{ex.output}\x00{ex.alts}\x01".encode())
            h.update(b"\x02")
        return h.hexdigest()[:16]

    def summary(self) -> str:
        return (f"{self.name}: {self.description} (metric {self.metric}; "
                f"{len(self.train)}/{len(self.dev)}/{len(self.test)} train/dev/test)")
