"""Prompt text for the operators: EvoPrompt GA and DE, OPRO, rewrite meta-prompts, word edits, reply parsing.

Every LLM operator builds chat requests for a *proposer* model (configured apart
from the task model) and turns each reply into at most one new prompt through
:func:`parse_proposal`. A tiny proposer often breaks format, so parsing is
defensive (a ``<prompt>`` tag, then a code fence, then the first line that is not
chatter) and rejects empty, placeholder, duplicate and overlong prompts with a
recorded reason; the caller then falls back to :func:`word_edit`, a small
deterministic edit (given the rng) from a vocabulary of instruction words.

The algorithms (the math, following the papers):

* EvoPrompt GA (Guo et al. 2024): parents drawn by roulette wheel,
  P(i) = s_i / sum_j s_j (scores shifted to be positive); one LLM call crosses the
  two parents over and mutates the result; survivors = the best N of parents and
  children.
* EvoPrompt DE: for each member x_i, with a, b two other members and x_best the
  best: one LLM call (1) finds the parts where a and b differ, (2) mutates those
  parts, (3) combines them with x_best, (4) crosses the result over with x_i;
  the child replaces x_i only if it scores at least as well.
* OPRO (Yang et al. 2024): a meta-prompt with the task description, a few
  training examples and the best previous prompts sorted ascending by score (the
  best last, nearest the request); the LLM proposes new prompts; everything
  scored joins the trajectory.
* Rewrite: "rewrite this prompt so that it scores higher" on a parent drawn by
  tournament, survivors = the best N (a baseline that uses no second parent or
  score history).

Selection and survival run on the engine's population loop: they are the strategies
``evoprompt_ga``, ``evoprompt_de``, ``opro`` and ``prompt_rewrite`` in
search.prompts.strategies (operators: search.prompts.operators); this module holds the request
builders, the parsing, the word-level edits and the selection primitives (roulette, tournament)
they use.
"""
from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass

from search.llm import ChatRequest, Message

# ----------------------------------------------------------------------------- parsing

_TAG = re.compile(r"<\s*prompt\s*>(.*?)(?:<\s*/\s*prompt\s*>|$)", re.IGNORECASE | re.DOTALL)
_ANY_TAG = re.compile(r"<\s*/?\s*prompt\s*>", re.IGNORECASE)
_FENCE = re.compile(r"```[A-Za-z0-9_-]*[ \t]*\n?(.*?)(?:```|$)", re.DOTALL)
_LABEL = re.compile(r"^\s*(?:(?:final|new|improved|better|rewritten|revised|mutated|combined|generated)\s+)?"
                    r"(?:prompt|instruction)(?:\s*\d+)?\s*[:\-]\s*", re.IGNORECASE)
_BULLET = re.compile(r"^\s*(?:[-*\u2022]|\d+[.)]|step\s*\d+\s*[:.)])\s+", re.IGNORECASE)
_CHATTER = re.compile(r"^(?:sure|certainly|okay|ok|of course|absolutely|great|here(?:'s| is| are)|i(?:'d| would|"
                      r"'ll| will| can| have)|as an ai|let me|the (?:new|final|improved) prompt is\s*:?$)\b",
                      re.IGNORECASE)
_PLACEHOLDER = {"...", "\u2026", "prompt", "new prompt", "final prompt", "your prompt", "instruction",
                "<prompt>", "text", "none", "n/a"}
_ECHO = re.compile(r"\b(?:cross(?:ed)?[ -]?over|mutate|prompt [123]|basic prompt|</?prompt>)", re.IGNORECASE)
_WS = re.compile(r"\s+")


def clean_prompt(text: str) -> str:
    """Strip tags, a leading label ("Final prompt:"), bullets, quotes and emphasis; collapse whitespace."""
    t = _ANY_TAG.sub(" ", text)
    t = _WS.sub(" ", t).strip()
    for _ in range(2):
        t = _BULLET.sub("", t)
        t = _LABEL.sub("", t).strip()
        t = t.strip("\"'`*_ \u201c\u201d\u2018\u2019").strip()
    return t


@dataclass
class Proposal:
    """One parsed proposer reply: ``text`` is None when it was rejected (``reason`` says why)."""
    text: str | None
    reason: str = ""
    source: str = "none"      # tag | fence | line | edit | none
    raw: str = ""
    candidate: str = ""       # the extracted text, also when it was rejected (for the record)

    @property
    def ok(self) -> bool:
        return self.text is not None


def extract_prompt(raw: str) -> tuple[str, str]:
    """(candidate text, where it came from): the first non-empty ``<prompt>`` block, else the first
    non-empty code fence, else the first non-empty line that is not chatter ("Sure, here is ...:")."""
    for m in _TAG.finditer(raw):
        t = clean_prompt(m.group(1))
        if t:
            return t, "tag"
    for m in _FENCE.finditer(raw):
        t = clean_prompt(m.group(1))
        if t:
            return t, "fence"
    for line in raw.splitlines():
        s = line.strip()
        if not s or _CHATTER.match(s) or (s.endswith(":") and len(s.split()) <= 12):
            continue
        t = clean_prompt(s)
        if t:
            return t, "line"
    return "", "none"


def normalize_key(text: str) -> str:
    """The form used for duplicate checks: whitespace collapsed, case folded, final period dropped."""
    return _WS.sub(" ", text).strip().lower().rstrip(".!")


def parse_proposal(raw: str, *, seen: set[str] | None = None, max_chars: int = 800) -> Proposal:
    """Parse a proposer reply into a prompt, or a rejection with its reason.

    ``seen`` holds ``normalize_key`` of every prompt already in the run (duplicates are refused);
    the accepted prompt's key is *not* added (the caller does that once it keeps it).
    """
    if not raw or not raw.strip():
        return Proposal(None, "empty reply", "none", raw or "")
    text, source = extract_prompt(raw)
    if not text:
        return Proposal(None, "no prompt found (only chatter or markup)", source, raw)
    if text.lower().strip(" .:") in _PLACEHOLDER or not re.search(r"[A-Za-z]", text):
        return Proposal(None, f"placeholder, not a prompt: {text[:40]!r}", source, raw, text)
    if _ECHO.search(text):
        return Proposal(None, f"echoes the operator's instructions: {text[:60]!r}", source, raw, text)
    if len(text) > max_chars:
        return Proposal(None, f"too long: {len(text)} characters (limit {max_chars})", source, raw, text)
    if seen is not None and normalize_key(text) in seen:
        return Proposal(None, "duplicate of a prompt already in the run", source, raw, text)
    return Proposal(text, "", source, raw, text)


# ------------------------------------------------------------------- word-level edits

#: Instruction words and short phrases the fallback edits draw from.
INSTRUCTION_VOCAB: tuple[str, ...] = (
    "Answer", "only", "the", "final", "result", "answer", "briefly", "exactly", "one", "word", "number",
    "letter", "Output", "Write", "Give", "Return", "just", "single", "correct", "carefully", "each",
    "input", "simply", "Compute", "Reply", "with", "Answer with only the result.", "Be brief.",
    "Output just the answer.", "Think about the input.", "Use one word.",
)
EDIT_OPS: tuple[str, ...] = ("insert", "drop", "swap", "replace")


def word_edit(prompt: str, rng: random.Random, vocab: Sequence[str] = INSTRUCTION_VOCAB) -> tuple[str, str]:
    """One word-level edit of ``prompt``: (new text, a description). Deterministic given ``rng``.

    insert a vocabulary item at a random position; drop a word; swap two adjacent words;
    replace a word with a vocabulary item. Ops that need more words fall back to insert.
    """
    words = prompt.split()
    op = rng.choice(EDIT_OPS)
    if op in ("drop", "swap") and len(words) < 2:
        op = "insert"
    if op == "replace" and not words:
        op = "insert"
    if op == "insert":
        w = rng.choice(list(vocab))
        i = rng.randint(0, len(words))
        words = words[:i] + w.split() + words[i:]
        desc = f"insert {w!r} at {i}"
    elif op == "drop":
        i = rng.randrange(len(words))
        desc = f"drop {words[i]!r}"
        words = words[:i] + words[i + 1:]
    elif op == "swap":
        i = rng.randrange(len(words) - 1)
        words[i], words[i + 1] = words[i + 1], words[i]
        desc = f"swap words {i} and {i + 1}"
    else:
        i = rng.randrange(len(words))
        w = rng.choice(list(vocab))
        desc = f"replace {words[i]!r} with {w!r}"
        words = words[:i] + w.split() + words[i + 1:]
    return " ".join(words), desc


def fallback_edit(prompt: str, rng: random.Random, seen: set[str] | None = None, tries: int = 12,
                  max_chars: int = 800) -> Proposal:
    """A novel word-level edit of ``prompt`` (up to ``tries`` attempts), as a Proposal of source "edit"."""
    last = "no novel edit found"
    for _ in range(tries):
        text, desc = word_edit(prompt, rng)
        p = parse_proposal(text, seen=seen, max_chars=max_chars)
        if p.ok:
            p.source, p.raw = "edit", desc
            return p
        last = p.reason
    return Proposal(None, f"word edit failed: {last}", "edit", "")


# ----------------------------------------------------------------------- selection

def roulette(scores: Sequence[float], rng: random.Random, k: int = 2) -> list[int]:
    """Draw ``k`` distinct indices with P(i) proportional to score (shifted so all are positive).

    Scores are shifted by their minimum and a small floor is added so a zero-score population
    still draws uniformly.
    """
    if k > len(scores):
        raise ValueError(f"cannot draw {k} distinct parents from {len(scores)}")
    lo = min(scores)
    span = (max(scores) - lo) or 1.0
    weights = [(s - lo) + 0.05 * span for s in scores]
    chosen: list[int] = []
    pool = list(range(len(scores)))
    for _ in range(k):
        w = [weights[i] for i in pool]
        i = rng.choices(pool, weights=w, k=1)[0]
        chosen.append(i)
        pool.remove(i)
    return chosen


def tournament(scores: Sequence[float], rng: random.Random, size: int = 2) -> int:
    """Index of the best of ``size`` members drawn uniformly (ties: the first drawn)."""
    idx = rng.sample(range(len(scores)), min(size, len(scores)))
    return max(idx, key=lambda i: scores[i])


# ------------------------------------------------------------------ request builders

SYSTEM = "You improve instructions (prompts) for a language model. Reply with the new prompt inside <prompt></prompt>."


def _req(user: str, rng: random.Random, temperature: float, max_tokens: int, purpose: str) -> ChatRequest:
    return ChatRequest(messages=[Message(role="system", content=SYSTEM), Message(role="user", content=user)],
                       temperature=temperature, max_tokens=max_tokens, seed=rng.randrange(2 ** 31),
                       stop=["</prompt>"], purpose=purpose)


def ga_request(p1: str, p2: str, rng: random.Random, *, temperature: float = 0.8,
               max_tokens: int = 96) -> ChatRequest:
    """EvoPrompt GA: cross two parents over, then mutate the offspring; answer in a tag."""
    user = ("Follow these steps to write a better prompt.\n"
            "1. Cross over the two prompts below: combine parts of both into one new prompt.\n"
            "2. Mutate the new prompt: change a few of its words.\n"
            "Write only the final prompt, between <prompt> and </prompt>.\n\n"
            f"Prompt 1: {p1}\nPrompt 2: {p2}")
    return _req(user, rng, temperature, max_tokens, "prompt-ga")


def de_request(current: str, best: str, a: str, b: str, rng: random.Random, *, temperature: float = 0.8,
               max_tokens: int = 128) -> ChatRequest:
    """EvoPrompt DE: mutate the parts where a and b differ, combine with best, cross over with current."""
    user = ("Follow these steps to write a better prompt.\n"
            "1. Find the words that differ between Prompt 1 and Prompt 2.\n"
            "2. Change those different words into new ones.\n"
            "3. Put the changed words into Prompt 3.\n"
            "4. Cross over the result with the Basic Prompt.\n"
            "Write only the final prompt, between <prompt> and </prompt>.\n\n"
            f"Prompt 1: {a}\nPrompt 2: {b}\nPrompt 3: {best}\nBasic Prompt: {current}")
    return _req(user, rng, temperature, max_tokens, "prompt-de")


def opro_request(description: str, examples: Sequence[tuple[str, str]], trajectory: Sequence[tuple[str, float]],
                 rng: random.Random, *, temperature: float = 1.0, max_tokens: int = 96) -> ChatRequest:
    """OPRO meta-prompt: task description, examples, previous prompts ascending by score (0-100)."""
    lines = ["Your task is to write an instruction for this task: " + description, "",
             "Here are some input/output examples of the task:"]
    lines += [f"Input: {x}\nOutput: {y}" for x, y in examples]
    lines += ["", "Here are previous instructions with their scores (higher is better), worst first:"]
    lines += [f"Instruction: {p}\nScore: {round(100 * s)}" for p, s in trajectory]
    lines += ["", "Write a new instruction that is different from the ones above and gets a higher score. "
              "Write it between <prompt> and </prompt>."]
    return _req("\n".join(lines), rng, temperature, max_tokens, "prompt-opro")


def rewrite_request(prompt: str, score: float, rng: random.Random, *, temperature: float = 0.8,
                    max_tokens: int = 96) -> ChatRequest:
    """The baseline: rewrite one prompt so that it scores higher."""
    user = (f"This prompt scored {round(100 * score)} out of 100:\n{prompt}\n\n"
            "Rewrite it so that it scores higher. Write only the new prompt, between <prompt> and </prompt>.")
    return _req(user, rng, temperature, max_tokens, "prompt-rewrite")


def paraphrase_request(prompt: str, rng: random.Random, *, temperature: float = 1.0,
                       max_tokens: int = 96) -> ChatRequest:
    """For the initial population (as EvoPrompt does): a paraphrase of the initial prompt."""
    user = ("Write a different version of this instruction that keeps its meaning.\n"
            f"Instruction: {prompt}\n\nWrite only the new instruction, between <prompt> and </prompt>.")
    return _req(user, rng, temperature, max_tokens, "prompt-init")
