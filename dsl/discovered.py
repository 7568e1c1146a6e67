"""Update rules found by optforge's own discovery campaigns (issue 11), shipped like library rules.

Each entry was *chosen by its validation score* (tasks the search never trained on) and then
verified once, on the test splits with unseen training seeds, on task families that neither the
search nor the validation used; its docstring gives the provenance (campaign file, search seed,
budget, machine, the scores) and ``PROVENANCE`` the same facts for listings. A verified score was
never used to choose a rule (that would make it a selection score). Scores are the project's
convention: mean over tasks of the clipped log(tuned AdamW loss / tuned rule loss); 0 = AdamW tuned
on the same lr x wd grid, higher is better.

``optforge rule list --discovered`` lists them; ``optforge rule export NAME -o file.py`` exports one;
``dsl.get_rule(NAME)`` parses one (the library's names come first).
"""
from __future__ import annotations

from typing import Any

#: name -> DSL source (its docstring holds the provenance)
DISCOVERED: dict[str, str] = {}

#: name -> provenance facts: campaign, search_seed, validation, verified, verified_won, transfer_tasks, ...
PROVENANCE: dict[str, dict[str, Any]] = {}


def list_discovered() -> list[str]:
    """Names of the discovered rules, in a stable order."""
    return list(DISCOVERED)


def provenance_line(name: str) -> str:
    """One line: the name first, then where it came from and how it verified."""
    p = PROVENANCE[name]
    return (f"{name}  verified {p['verified']:+.3f} on {p['verified_won']}/{len(p['transfer_tasks'])} unseen "
            f"families ({', '.join(p['transfer_tasks'])}); validation {p['validation']:+.3f}; "
            f"{p['campaign']} seed {p['search_seed']}")


__all__ = ["DISCOVERED", "PROVENANCE", "list_discovered", "provenance_line"]
