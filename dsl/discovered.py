"""Update rules found by optforge's own discovery campaigns, shipped like library rules.

Each entry was *chosen by its validation score* (tasks the search never trained on) and then
verified once, on the test splits with unseen training seeds, on task families that neither the
search nor the validation used; its docstring gives the provenance (campaign file, search seed,
budget, machine, the scores) and ``PROVENANCE`` the same facts for listings. A verified score was
never used to choose a rule (that would make it a selection score). Scores are the project's
convention: mean over tasks of the clipped log(tuned AdamW loss / tuned rule loss); 0 = AdamW tuned
on the same lr x wd grid, higher is better.

``optforge rule list --discovered`` lists them; ``optforge rule export NAME -o file.py`` exports one;
``dsl.get_rule(NAME)`` parses one (the library's names come first).

A shipped rule must *hold* under the verdict of docs/statistics.md (an interval above 0 on unseen tasks
and most of them won beyond their noise floor). One that does not on re-verification moves to
``RETIRED`` with its source, the date, the reason and the estimate; ``optforge eval NAME`` still scores
it and ``optforge rule list --discovered`` says why it was retired.
"""
from __future__ import annotations

from typing import Any

#: name -> DSL source (its docstring holds the provenance)
DISCOVERED: dict[str, str] = {}

#: name -> provenance facts: campaign, search_seed, validation, verified, verified_won, transfer_tasks, ...
PROVENANCE: dict[str, dict[str, Any]] = {}

#: name -> {"source", "retired" (date), "reason", "estimate" (the evaluators.stats JSON of the re-verification
#: that retired it), "provenance" (its PROVENANCE entry when shipped)}: rules once shipped above whose verdict
#: did not hold under the interval-and-noise-floor protocol (docs/statistics.md). Kept so that their names
#: still resolve for ``optforge eval`` and ``optforge rule list --discovered`` says why they were retired.
RETIRED: dict[str, dict[str, Any]] = {
    "clipped_rms_momentum": {
        # A momentum of a clipped buffer mixed with the layer-wise RMS-normalized gradient, plus the raw
        # gradient: buf <- 0.91 * (0.9 clip(buf, +-0.357) + 0.1 * 2g / rms(g)) + 0.999 g.
        "source": """
def clipped_rms_momentum(w, g, buf, lr, momentum=0.9114):
    \"\"\"Found by `optforge run examples/discovery_sgdm.toml` (search seed 0, started from sgd_momentum;
    544 budget units, 3561 s on the 2-core CPU container at load average 3-9, 2026-12-01 10:07-11:06 UTC),
    candidate #269 (exact simplification; no weight decay term).
    Chosen by its validation score: +0.255 (3/3 won: wine_deep +0.500, digits_ae +0.108, cancer_bce +0.157).
    Search score +0.115 on digits_mlp, diabetes_reg, embed_memo (val split, training seeds 0, 1).
    Verified once, after the choice (test splits, unseen training seeds 2, 3, small fidelity; lr x wd tuned
    for this rule and AdamW alike): transfer +0.184 (4/4 won: digits_cnn +0.212, text_rnn +0.018,
    char_lm +0.008, seq_reverse +0.500 clipped - both solve it, val loss ~0 vs 1e-4);
    validation tasks on their test splits -0.255 (wine_deep -0.500, digits_ae +0.235, cancer_bce -0.500).
    \"\"\"
    d = g - 0.001 * g
    t2 = interp(clip(buf, 0.357), (g + g) / (rms(d) + 1.52e-08), 0.1)
    buf = momentum * t2 + d
    w = w - lr * buf
    return w, buf
""",
        "retired": "2026-12-06",
        "reason": ("re-verified under the interval-and-noise-floor verdict (campaign-default protocol, small "
                   "fidelity, test splits, fresh training seeds 20-23, AdamW paired on the same seeds; noise "
                   "floors from AdamW vs AdamW on disjoint seeds): indistinguishable from tuned AdamW, +0.156 "
                   "[-0.009, +0.378] (95% CI, mean over its 4 transfer tasks x 4 seeds, P(better) 0.93). Only "
                   "seq_reverse (+0.500 clipped: both reach ~0 loss; floor 0.153) is won beyond noise; "
                   "digits_cnn +0.134 is below its floor 0.257, char_lm +0.005 below 0.016, and text_rnn is lost "
                   "on every seed (-0.014, floor 0.003). With rosenbrock as a fifth unseen task: +0.063 "
                   "[-0.192, +0.305]. The shipped +0.184 (4/4 won) rested on 2 seeds and 1-2% margins."),
        "estimate": {'score': 0.1564,
                     'ci': [-0.0094, 0.3775],
                     'p_improvement': 0.925,
                     'verdict': 'indistinguishable',
                     'aggregate': 'mean',
                     'level': 0.95,
                     'n_tasks': 4,
                     'n_seeds': 4,
                     'tasks': {'digits_cnn': {'score': 0.1344,
                                              'ci': [-0.0639, 0.3327],
                                              'noise': 0.2573,
                                              'n_seeds': 4,
                                              'beyond_noise': False},
                               'text_rnn': {'score': -0.0142,
                                            'ci': [-0.0179, -0.0102],
                                            'noise': 0.0034,
                                            'n_seeds': 4,
                                            'beyond_noise': False},
                               'char_lm': {'score': 0.0052,
                                           'ci': [-0.0025, 0.0108],
                                           'noise': 0.0164,
                                           'n_seeds': 4,
                                           'beyond_noise': False},
                               'seq_reverse': {'score': 0.5,
                                               'ci': [0.5, 0.5],
                                               'noise': 0.1526,
                                               'n_seeds': 4,
                                               'beyond_noise': True}}},
        "provenance": {
            "campaign": "examples/discovery_sgdm.toml", "search_seed": 0, "candidate": 269, "search": 0.1152,
            "validation": 0.2552, "validation_won": 3, "validation_test": -0.2549, "verified": 0.1845,
            "verified_won": 4, "transfer_tasks": ["digits_cnn", "text_rnn", "char_lm", "seq_reverse"],
            "measured": "2026-12-01, 2-core CPU container, torch 2.13 CPU", "example_lr": 0.01},
    },
}


def list_discovered() -> list[str]:
    """Names of the discovered rules, in a stable order."""
    return list(DISCOVERED)


def retired_line(name: str) -> str:
    """One line for a retired rule: the name, RETIRED, when and why."""
    r = RETIRED[name]
    return f"{name}  RETIRED {r['retired']}: {r['reason']}"


def provenance_line(name: str) -> str:
    """One line: the name first, then where it came from and how it verified."""
    p = PROVENANCE[name]
    return (f"{name}  verified {p['verified']:+.3f} on {p['verified_won']}/{len(p['transfer_tasks'])} unseen "
            f"families ({', '.join(p['transfer_tasks'])}); validation {p['validation']:+.3f}; "
            f"{p['campaign']} seed {p['search_seed']}")


__all__ = ["DISCOVERED", "PROVENANCE", "RETIRED", "list_discovered", "provenance_line", "retired_line"]
