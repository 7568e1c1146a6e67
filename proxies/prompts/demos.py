"""Few-shot prompt candidates: an instruction plus an ordered set of demonstrations.

A candidate is an instruction and a tuple of indices into the task's **train** split (never
dev or test), in the order the task model sees them. Its canonical text, what the engine
stores, hashes for novelty and caches by, is one line::

    Add an s to the word. [demos: 3, 7, 1]

(no trailer: a zero-shot prompt, so every plain prompt text stays valid). Indices, not the
pairs, are encoded: the text stays short, and the evaluator's cache key already hashes the
task's data, so equal texts mean equal demonstrations. :func:`decode_prompt` accepts the
trailer after any whitespace, so the text survives whitespace collapsing unchanged.

Where the task model sees the demonstrations (``placement``):

* ``"chat"``: each demonstration is an earlier user turn (the instruction-induction query of
  its input, exactly as for the real input) answered by an assistant turn (its output); the
  real query is the last user turn. This is how DSPy's chat adapter shows demonstrations.
* ``"instruction"``: one user message::

      Instruction: <instruction>

      Examples:
      Input: <demo input>
      Output: <demo output>
      (one blank line between examples)

      Input: <input>
      Output:

The edits (:func:`edit_demos`, :func:`crossover_demos`, :func:`sample_demos`) need no LLM and
are deterministic given the ``random.Random`` they are passed.
"""
from __future__ import annotations

import random
import re
from collections.abc import Sequence

from .core import Example, format_query

PLACEMENTS: tuple[str, ...] = ("chat", "instruction")
#: The no-LLM demonstration edits :func:`edit_demos` draws from.
DEMO_EDITS: tuple[str, ...] = ("add", "drop", "replace", "reorder")

_TRAILER = re.compile(r"\s*\[demos:\s*([0-9][0-9,\s]*)?\]\s*$")


def encode_prompt(instruction: str, demos: Sequence[int] = ()) -> str:
    """The canonical one-line text of instruction + demonstration indices (see the module doc)."""
    instr = " ".join(instruction.split())
    if not demos:
        return instr
    return f"{instr} [demos: {', '.join(str(int(i)) for i in demos)}]"


def decode_prompt(text: str) -> tuple[str, tuple[int, ...]]:
    """(instruction, demonstration indices) of a candidate text; ``()`` for a plain prompt."""
    m = _TRAILER.search(text)
    if m is None:
        return " ".join(text.split()), ()
    idx = tuple(int(x) for x in re.findall(r"\d+", m.group(1) or ""))
    return " ".join(text[:m.start()].split()), idx


def instruction_of(text: str) -> str:
    """The instruction part of a candidate text."""
    return decode_prompt(text)[0]


def with_instruction(text: str, instruction: str) -> str:
    """``text``'s demonstrations under a new instruction (what the LLM operators return)."""
    return encode_prompt(instruction, decode_prompt(text)[1])


def check_demos(demos: Sequence[int], n_train: int) -> str | None:
    """Why these indices are not a valid demonstration set for a train split of ``n_train``, or None."""
    if len(set(demos)) != len(demos):
        return f"demonstrations repeat a train example: {list(demos)}"
    bad = [i for i in demos if not 0 <= i < n_train]
    if bad:
        return (f"demonstration index {bad[0]} is outside the train split ({n_train} examples): "
                "demonstrations come from the train split only")
    return None


def render_messages(instruction: str, demos: Sequence[Example], input_text: str,
                    placement: str = "chat") -> list[tuple[str, str]]:
    """The (role, content) turns the task model sees for one input (system message not included)."""
    if placement == "chat":
        turns: list[tuple[str, str]] = []
        for ex in demos:
            turns += [("user", format_query(instruction, ex.input)), ("assistant", ex.output)]
        return turns + [("user", format_query(instruction, input_text))]
    if placement == "instruction":
        if not demos:
            return [("user", format_query(instruction, input_text))]
        shown = "\n\n".join(f"Input: {ex.input}\nOutput: {ex.output}" for ex in demos)
        return [("user", f"Instruction: {instruction.strip()}\n\nExamples:\n{shown}\n\n"
                         f"Input: {input_text}\nOutput:")]
    raise ValueError(f"demonstration placement {placement!r}: use one of {', '.join(PLACEMENTS)}")


# ------------------------------------------------------------------------------- edits

def sample_demos(n_train: int, k: int, rng: random.Random) -> tuple[int, ...]:
    """``k`` distinct train indices in random order (fewer when the split is smaller)."""
    return tuple(rng.sample(range(n_train), min(k, n_train)))


def edit_demos(demos: Sequence[int], n_train: int, rng: random.Random, *, op: str | None = None,
               max_demos: int = 8) -> tuple[tuple[int, ...], str]:
    """One edit of a demonstration set: (new indices, a description).

    add (an unused train example at a random position), drop (one), replace (one by an unused
    train example), reorder (swap two positions). An edit that cannot apply (nothing to drop,
    no unused example, the set full) falls back to one that can; with no possible edit the
    set comes back unchanged with the description "none".
    """
    d = list(demos)
    used = set(d)
    unused = [i for i in range(n_train) if i not in used]
    possible = [o for o in DEMO_EDITS if (o == "add" and unused and len(d) < max_demos)
                or (o == "drop" and d) or (o == "replace" and d and unused) or (o == "reorder" and len(d) >= 2)]
    if not possible:
        return tuple(d), "none"
    if op is None or op not in possible:
        if op is not None and op not in DEMO_EDITS:
            raise ValueError(f"unknown demonstration edit {op!r}: use one of {', '.join(DEMO_EDITS)}")
        op = rng.choice(possible)
    if op == "add":
        x, pos = rng.choice(unused), rng.randint(0, len(d))
        d.insert(pos, x)
        return tuple(d), f"add demo {x} at {pos}"
    if op == "drop":
        pos = rng.randrange(len(d))
        x = d.pop(pos)
        return tuple(d), f"drop demo {x}"
    if op == "replace":
        pos, x = rng.randrange(len(d)), rng.choice(unused)
        old, d[pos] = d[pos], x
        return tuple(d), f"replace demo {old} with {x}"
    i, j = rng.sample(range(len(d)), 2)
    d[i], d[j] = d[j], d[i]
    return tuple(d), f"swap demos at {i} and {j}"


def crossover_demos(a: Sequence[int], b: Sequence[int], rng: random.Random, *,
                    max_demos: int = 8) -> tuple[tuple[int, ...], str]:
    """One-point crossover of two demonstration sets: a prefix of ``a``, then ``b``'s examples
    after a cut point that ``a``'s prefix does not already hold (no repeats), at most
    ``max_demos``."""
    i, j = rng.randint(0, len(a)), rng.randint(0, len(b))
    head = list(a[:i])
    child = head + [x for x in b[j:] if x not in head]
    return tuple(child[:max_demos]), f"cross {i} of a with b from {j}"
