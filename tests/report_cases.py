"""A seconds-long real campaign for the report tests: SGD-momentum on the quadratic at two
fidelities, two seeds, a UCB operator bandit (LLM mutation floored at 30%), and a scripted LLM
whose replies are in turn a better rule (Adagrad-style), no code at all, and a rule that diverges.
So the run has a winner, invalid proposals and training failures, each with its reason stored."""
from __future__ import annotations

from pathlib import Path

from search.core import Engine, parse_campaign
from search.llm import ScriptedLLM


class Replies:
    """The n-th reply is good, garbage or diverging in turn (new text every time: no duplicates)."""

    def __init__(self) -> None:
        self.n = 0

    def __call__(self, req) -> str:
        self.n += 1
        k, n = self.n % 3, self.n
        if k == 1:
            return (f"```python\ndef r(w, g, s, lr, eps={n}e-12):\n    s = s + g * g\n"
                    "    w = w - lr * g / (sqrt(s) + eps)\n    return w, s\n```")
        if k == 2:
            return "I would rather not write code today."
        return f"```python\ndef r(w, g, lr):\n    w = w + lr * g * {1000 + n}.0\n    return w\n```"


def report_campaign(name: str = "report", budget: int = 16):
    return parse_campaign({
        "name": name, "tasks": ["quadratic"], "fidelities": ["tiny", "small"], "executor": "inprocess",
        "eval_seeds": [0, 1], "lrs": [0.003, 0.03, 0.3], "seed_rules": ["sgd_momentum"], "random_seed": 3,
        "budget": {"evaluations": budget}, "search": {"population": 5, "tournament": 2, "batch_size": 4},
        "operators": {"llm_share": 0.5, "bandit": {"algorithm": "ucb", "cost": "units", "share_of": "children",
                                                   "floors": {"llm_mutate": 0.3}}},
        "llm": {}, "llm_ops": {"repair": False}, "simplify": {"max_evaluations": 3}}, f"<test {name}>")


def run_report_campaign(run_dir: Path, budget: int = 16) -> Path:
    """Run the campaign into ``run_dir``; returns it."""
    e = Engine(report_campaign(budget=budget), run_dir, llm=ScriptedLLM(Replies()))
    try:
        e.run()
    finally:
        e.close()
    return run_dir
