"""Did-you-mean for names a user types: rule names, task names, campaign keys, operators.

``difflib.get_close_matches`` ranks the known names by ``SequenceMatcher.ratio`` (2 * matches /
total length); a cutoff of 0.6 keeps one- or two-letter typos and drops unrelated names.
"""
from __future__ import annotations

import difflib
from collections.abc import Iterable


def close_names(word: str, known: Iterable[str], n: int = 1, cutoff: float = 0.6) -> list[str]:
    """The ``n`` known names closest to ``word`` (none below ``cutoff``), case-insensitively."""
    known = [str(k) for k in known]
    lower = {k.lower(): k for k in known}
    hits = difflib.get_close_matches(str(word).lower(), list(lower), n=n, cutoff=cutoff)
    return [lower[h] for h in hits]


def did_you_mean(word: str, known: Iterable[str]) -> str:
    """``" (did you mean 'x'?)"`` for the nearest known name, or ``""`` when nothing is close."""
    hits = close_names(word, known)
    return f" (did you mean {hits[0]!r}?)" if hits else ""


__all__ = ["close_names", "did_you_mean"]
