"""A third candidate kind, registered from outside the project: lower-case words scored by how many
letters they share, position by position, with a target word (``[toy] target``).

Used by test_kind_plugin.py to check that a kind plugs in through ``plugins = ["toy_kind"]``
alone: its own table model, evaluator, operator, show lines and export.
"""
from __future__ import annotations

import hashlib
import random
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from evaluators import Candidate, EvalResult, Evaluator, Status, TaskResult
from search import (
    Context,
    Individual,
    InvalidCandidate,
    KindPlugin,
    Operator,
    Proposal,
    register_kind,
    register_operator,
)

LETTERS = "abcdefghijklmnopqrstuvwxyz"


class ToyOptions(BaseModel):
    """The ``[toy]`` table."""
    model_config = ConfigDict(extra="forbid")
    target: str = "search"
    start: str = "aaaaaa"


class ToyEvaluator(Evaluator):
    kind = "toy"
    fidelities = ("coarse", "fine")

    def __init__(self, target: str):
        self.target = target
        self.calls = 0

    def key(self, candidate: Candidate) -> str:
        return hashlib.sha1(candidate.text.encode()).hexdigest()[:16]

    def evaluate(self, candidates: list[Candidate], fidelity: str, on_result=None) -> list[EvalResult]:
        out = []
        for i, c in enumerate(candidates):
            self.calls += 1
            hits = sum(a == b for a, b in zip(c.text, self.target))
            off = 0.0 if fidelity == "fine" else 0.01 * abs(len(c.text) - len(self.target))  # coarse: length too
            score = hits / len(self.target) - off
            r = EvalResult(key=self.key(c), fidelity=fidelity, score=score, status=Status.ok,
                           tasks={"match": TaskResult(task="match", metric=float(hits), metric_name="letters",
                                                      higher_is_better=True, score=score)})
            if on_result is not None:
                on_result(i, r)
            out.append(r)
        return out


class ToyKind(KindPlugin):
    name = "toy"
    options_model = ToyOptions
    default_random_ops = {"toy_letter": 1.0}
    score_label = "letters in place"

    def make_evaluator(self, campaign, run_dir: Path) -> ToyEvaluator:
        return ToyEvaluator(campaign.options.target)

    def seed_texts(self, campaign) -> list[tuple[str, str]]:
        return [("start", campaign.options.start)]

    def normalize(self, text: str) -> str:
        t = text.strip()
        if not t or any(ch not in LETTERS for ch in t):
            raise InvalidCandidate(f"{t!r}: lower-case letters only")
        return t

    def show_lines(self, view: Any) -> list[str]:
        return [f"toy target {view.campaign['toy']['target']!r}"]

    def export_info(self, view: Any, candidate: dict[str, Any], fidelity: str) -> dict[str, Any]:
        return {"letters": candidate["results"][fidelity].tasks["match"].metric}


@register_operator("toy_letter")
class LetterOperator(Operator):
    """Replace one letter by a random one (the engine's seeded rng)."""
    name, arity, kinds = "toy_letter", 1, ("toy",)

    def __init__(self, campaign):
        self.campaign = campaign

    def propose(self, ctx: Context, parent_groups: list[list[Individual]]) -> list[Proposal]:
        out = []
        rng: random.Random = ctx.rng
        for (parent,) in parent_groups:
            t = list(parent.text)
            t[rng.randrange(len(t))] = rng.choice(LETTERS)
            out.append(Proposal("".join(t), self.name, (parent.id,)))
        return out


register_kind(ToyKind())
