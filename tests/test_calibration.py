"""Calibration of the verdicts (evaluators.stats + evaluators.noise) with the real evaluator on tiny tasks:
AdamW under another fingerprint does not "hold", SGD without momentum never holds, and Adam's real gain
over SGD on an ill-conditioned problem is detected."""
from __future__ import annotations

import textwrap

import pytest

import dsl
from evaluators import Candidate, RuleEvalConfig, RuleEvaluator, describe, estimate_results, noise_floors

# A deterministic quadratic with curvatures 1 .. 1e-4 (condition number 1e4): SGD's tuned lr is capped by
# the largest curvature and barely moves the flat directions in the budget; Adam rescales per coordinate.
ILL = '''
import torch
from proxies import StackedTask

LAM = torch.logspace(0, -4, 16)

class IllConditioned(StackedTask):
    name = "ill_conditioned"
    steps = {"tiny": 150, "small": 300, "full": 600}

    def init(self, seed):
        g = torch.Generator().manual_seed(1000 + seed)
        return {"x": torch.randn(16, generator=g)}

    def loss(self, p, ctx, t):
        return 0.5 * (LAM * (p["x"] - 1.0) ** 2).sum(-1)

    def evaluate(self, p, ctx, split="val"):
        return {f"{split}_loss": 0.5 * (LAM * (p["x"] - 1.0) ** 2).sum(-1)}

def ill_conditioned():
    return IllConditioned()
'''

#: AdamW with epsilon moved: the same optimizer at these scales, its own fingerprint (so it is trained)
ADAMW_TWIN = dsl.get_rule("adamw").source().replace("eps=1e-08", "eps=2e-08")


@pytest.fixture
def ill_spec(tmp_path, monkeypatch):
    (tmp_path / "optforge_ill_task.py").write_text(textwrap.dedent(ILL))
    monkeypatch.syspath_prepend(str(tmp_path))
    return "optforge_ill_task:ill_conditioned"


def _verdicts(tasks, rules, baseline="adamw", seeds=(0, 1, 2)):
    cfg = RuleEvalConfig(tasks=list(tasks), seeds=list(seeds), baseline=baseline, executor="inprocess",
                         lr_grid={"points": 5})
    with RuleEvaluator(cfg) as ev:
        floors = {t: f.floor for t, f in noise_floors(ev, "tiny", replicates=2).items()}
        results = ev.evaluate([Candidate(text=r) for r in rules], "tiny")
    assert all(r.ok for r in results), [r.reason for r in results]
    return [estimate_results(r.tasks, floors, clip=cfg.clip) for r in results]


def test_adamw_under_another_fingerprint_does_not_hold_and_sgd_never_does():
    assert dsl.fingerprint(ADAMW_TWIN) != dsl.fingerprint(dsl.get_rule("adamw"))
    twin, sgd = _verdicts(["quadratic", "digits_logreg"], [ADAMW_TWIN, dsl.get_rule("sgd").source()])
    assert twin.verdict == "indistinguishable", describe(twin)
    assert abs(twin.score) < 1e-3 and twin.ci[0] <= 0 + 1e-6
    assert sgd.verdict != "holds", describe(sgd)
    assert sgd.score < 0


def test_adam_beats_sgd_on_an_ill_conditioned_problem(ill_spec):
    adam, twin = _verdicts([ill_spec], [dsl.get_rule("adam").source(), dsl.get_rule("sgd").source()],
                           baseline="sgd")
    assert adam.verdict == "holds", describe(adam, "tuned SGD")
    assert adam.score > 0.5 and adam.tasks[ill_spec].beyond_noise
    assert twin.verdict == "indistinguishable" and twin.score == 0.0      # SGD against itself
    (sgd,) = _verdicts([ill_spec], [dsl.get_rule("sgd").source()])
    assert sgd.verdict == "worse", describe(sgd)
