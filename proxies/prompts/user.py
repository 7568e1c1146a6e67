"""A user's own prompt task from a JSONL file of input/output pairs."""
from __future__ import annotations

import json
import random
from pathlib import Path

from .core import Example, PromptTask

_SPLITS = ("train", "dev", "test")


def load_jsonl_task(path: str | Path, *, metric: str = "normalized", name: str | None = None,
                    description: str = "", initial_prompt: str = "Answer the input.", seed: int = 0,
                    fractions: tuple[float, float, float] = (0.2, 0.4, 0.4), max_tokens: int = 32) -> PromptTask:
    """Read ``{"input": ..., "output": ...}`` lines (optional ``"split"``: train/dev/test, optional
    ``"alts"``: more accepted outputs). Lines without a split are shuffled with ``seed`` and cut by
    ``fractions``. ``metric`` is one of exact / normalized / contains.

    Raises ``ValueError`` naming the file and line for anything malformed.
    """
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"prompt task file {str(p)!r} not found: give a JSONL file with one "
                         '{"input": ..., "output": ...} object per line')
    if metric not in ("exact", "normalized", "contains"):
        raise ValueError(f"metric {metric!r} is not available for a JSONL task: use exact, normalized or contains")
    fixed: dict[str, list[Example]] = {s: [] for s in _SPLITS}
    loose: list[Example] = []
    for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{p}:{i}: not valid JSON ({e.msg}); each line must be one JSON object") from None
        if not isinstance(row, dict) or "input" not in row or "output" not in row:
            raise ValueError(f"{p}:{i}: each line needs an object with 'input' and 'output' keys")
        alts = row.get("alts", [])
        if not isinstance(alts, list):
            raise ValueError(f"{p}:{i}: 'alts' must be a list of strings")
        ex = Example(str(row["input"]), str(row["output"]), tuple(str(a) for a in alts))
        split = row.get("split")
        if split is None:
            loose.append(ex)
        elif split in _SPLITS:
            fixed[split].append(ex)
        else:
            raise ValueError(f"{p}:{i}: split {split!r} is not one of train, dev, test")
    random.Random(seed).shuffle(loose)
    n = len(loose)
    a = int(round(n * fractions[0]))
    b = a + int(round(n * fractions[1]))
    fixed["train"] += loose[:a]
    fixed["dev"] += loose[a:b]
    fixed["test"] += loose[b:]
    if not fixed["dev"] or not fixed["test"]:
        raise ValueError(f"{p}: needs examples for both dev and test (found {len(fixed['dev'])} dev, "
                         f"{len(fixed['test'])} test); add lines or mark some with \"split\"")
    return PromptTask(name=name or p.stem, description=description or f"the task of {p.name}",
                      initial_prompt=initial_prompt, train=fixed["train"], dev=fixed["dev"], test=fixed["test"],
                      metric=metric, max_tokens=max_tokens, seed=seed, meta={"file": str(p)})
