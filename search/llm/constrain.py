"""Per-row decoding controls for ``transformers`` ``generate``: grammar masks, seeded sampling, stops.

Three small pieces, each a standard transformers hook, so one ``generate()`` call can
serve a batch of unrelated requests:

* :class:`GrammarLogitsProcessor` — a thin adapter over **llguidance**: each row may have
  its own ``LLMatcher`` (a compiled Lark grammar); before every step the matchers consume
  the token just generated and llguidance fills a token bitmask (in parallel over rows);
  forbidden tokens get ``-inf``. llguidance does the parsing and the token-trie walk; this
  class only moves tokens in and the mask out.
* :class:`RowSampler` — per-row temperature / top-p sampling with a per-row
  ``torch.Generator`` seeded from the request's seed and sample index, so a sample does
  not depend on which other requests share its batch (up to float rounding of batched
  matmuls). It emits a one-hot score row, so ``generate`` runs in greedy mode and simply
  takes the chosen token.
* :class:`RowStopper` — per-row ``max_tokens`` and stop strings (a ``StoppingCriteria``
  returning one flag per row; finished rows are padded by ``generate``).

The bitmask is unpacked with plain torch ops rather than ``llguidance.torch`` because that
module compiles its kernel with ``torch.compile`` (about 30 s on first use on CPU).
"""
from __future__ import annotations

import threading
from collections.abc import Sequence

import llguidance
import llguidance.hf
import llguidance.numpy as llnp
import numpy as np
import torch
from transformers import LogitsProcessor, StoppingCriteria

#: Top-p sampling sorts only this many most likely tokens when they already reach p.
NUCLEUS_TOPK = 256

_EXECUTOR = None
_EXEC_LOCK = threading.Lock()


def _executor():
    """One llguidance thread-pool executor per process (computes masks of many rows at once)."""
    global _EXECUTOR
    with _EXEC_LOCK:
        if _EXECUTOR is None:
            _EXECUTOR = llguidance.LLExecutor()
        return _EXECUTOR


def ll_tokenizer(hf_tokenizer, n_vocab: int):
    """The llguidance view of a fast Hugging Face tokenizer (about 1 s: cache the result)."""
    return llguidance.hf.from_tokenizer(hf_tokenizer, n_vocab=n_vocab)


def compile_grammar(ll_tok, lark: str):
    """A fresh ``LLMatcher`` for ``lark``; raises ValueError with llguidance's message if the
    grammar is invalid."""
    m = llguidance.LLMatcher(ll_tok, llguidance.LLMatcher.grammar_from_lark(lark), log_level=0)
    if m.is_error():
        raise ValueError(f"invalid grammar: {m.get_error()}")
    return m


def apply_bitmask(scores: torch.Tensor, bitmask: torch.Tensor, rows: Sequence[int]) -> None:
    """Set ``scores[r, t] = -inf`` where bit ``t`` of ``bitmask[r]`` is 0, for ``r`` in rows.

    The mask packs 32 tokens per int32 (token t is bit t % 32 of word t // 32); vocabulary
    entries beyond the mask (padding rows of the LM head) are forbidden too.
    """
    if not rows:
        return
    idx = torch.as_tensor(list(rows), device=scores.device)
    words = bitmask[list(rows)].to(scores.device)
    shifts = torch.arange(32, device=scores.device, dtype=torch.int32)
    bits = ((words.unsqueeze(-1) >> shifts) & 1).reshape(len(rows), -1).bool()
    vocab = scores.shape[1]
    if bits.shape[1] < vocab:
        bits = torch.cat([bits, bits.new_zeros(len(rows), vocab - bits.shape[1])], dim=1)
    sub = scores[idx]
    sub.masked_fill_(~bits[:, :vocab], float("-inf"))
    scores[idx] = sub


#: A row whose token budget is within this many tokens (plus its return line) of running out
#: ends its program at the next statement boundary: the return line is forced there.
LANDING_MARGIN = 48
#: ... and within this many, a statement is ended (a newline token) as soon as the grammar allows.
LANDING_CLOSE = 16


class GrammarLogitsProcessor(LogitsProcessor):
    """Constrain each row to its own grammar (``None``: unconstrained row).

    **Landing.** The grammar keeps every prefix valid but cannot see the token budget, so a
    long reply would be cut mid-program. A row given ``landings`` (the tokens of its return
    line) and ``max_tokens`` forces that line at the first statement boundary once fewer than
    ``len(landing) + LANDING_MARGIN`` tokens are left: the program ends early but parses. Each
    forced token is checked against the grammar's mask; if the grammar disagrees, forcing stops.
    With fewer than ``len(landing) + LANDING_CLOSE`` left, the row takes a token that starts
    with a newline (``newline_ids``) whenever the grammar allows one, to reach a boundary, and
    otherwise a closing parenthesis where allowed, and otherwise a one-token operand (``paren_ids``:
    the close and atom token ids): a statement cannot end inside open calls, and a greedy reply
    may nest them deeply.
    This makes cut-off programs rarer, not impossible (a statement the grammar cannot end yet).
    """

    def __init__(self, matchers: Sequence[object | None], eos_ids: Sequence[int], vocab_size: int,
                 landings: Sequence[Sequence[int] | None] | None = None, max_tokens: Sequence[int] | None = None,
                 newline_ids: torch.Tensor | None = None,
                 paren_ids: tuple[torch.Tensor, torch.Tensor] | None = None):
        self.newline_ids = newline_ids
        self.close_ids, self.atom_ids = paren_ids if paren_ids is not None else (None, None)
        self.landings = list(landings) if landings is not None else [None] * len(matchers)
        self.max_tokens = list(max_tokens) if max_tokens is not None else [None] * len(matchers)
        self.forcing: list[int | None] = [None] * len(matchers)   # index into the landing being forced
        self.landed = [False] * len(matchers)
        self.matchers = list(matchers)
        self.eos = set(int(e) for e in eos_ids)
        self.done = [m is None for m in self.matchers]
        self.errors: list[str | None] = [None] * len(self.matchers)
        self.prompt_len: int | None = None
        self.bitmask = np.full((len(self.matchers), (vocab_size + 31) // 32), -1, dtype=np.int32)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self.prompt_len is None:
            self.prompt_len = input_ids.shape[1]
        else:
            last = input_ids[:, -1].tolist()
            for r, m in enumerate(self.matchers):
                if self.done[r]:
                    continue
                if last[r] in self.eos:
                    self.done[r] = True
                elif not m.consume_token(last[r]):
                    self.errors[r] = m.get_error() or "the grammar refused a token"
                    self.done[r] = True
        active = [r for r in range(len(self.matchers)) if not self.done[r]]
        if not active:
            return scores
        llnp.fill_next_token_bitmask_par(_executor(), [(self.matchers[r], r) for r in active], self.bitmask)
        for r in active:
            if self.matchers[r].is_error():
                self.errors[r] = self.matchers[r].get_error()
                self.done[r] = True
        active = [r for r in active if not self.done[r]]
        apply_bitmask(scores, torch.from_numpy(self.bitmask), active)
        n_new = input_ids.shape[1] - self.prompt_len
        for r in active:
            land, budget = self.landings[r], self.max_tokens[r]
            if not land or budget is None:
                continue
            k = self.forcing[r]
            left = budget - n_new
            if k is None and left <= len(land) + LANDING_MARGIN and self._allowed(r, land[0]):
                k = 0
                self.landed[r] = True
            elif k is None and left <= len(land) + LANDING_CLOSE and self.newline_ids is not None:
                # nearly out of tokens mid-statement: end the statement as soon as the grammar allows
                ok = self._finite(r, self.newline_ids, scores)
                if not len(ok) and self.close_ids is not None:
                    ok = self._finite(r, self.close_ids, scores)
                    if not len(ok):   # an operand is due: one token of it, not a new call
                        ok = self._finite(r, self.atom_ids, scores)
                if len(ok):
                    keep = scores[r, ok].clone()
                    scores[r].fill_(float("-inf"))
                    scores[r, ok] = keep
            if k is not None:
                if k < len(land) and self._allowed(r, land[k]):
                    keep = scores[r, land[k]].clone()
                    scores[r].fill_(float("-inf"))
                    scores[r, land[k]] = keep if torch.isfinite(keep) else 0.0
                    self.forcing[r] = k + 1
                else:
                    self.forcing[r] = None if k < len(land) else k   # disagreement, or done
        return scores

    @staticmethod
    def _finite(r: int, ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        """The ``ids`` the grammar allows row ``r`` now (finite score)."""
        ok = ids[ids < scores.shape[1]]
        return ok[torch.isfinite(scores[r, ok])]

    def _allowed(self, r: int, token: int) -> bool:
        word = int(self.bitmask[r, token // 32])
        return bool((word >> (token % 32)) & 1)


def draw_token(weights: torch.Tensor, generator: torch.Generator) -> int:
    """Index drawn with probability proportional to ``weights`` (>= 0, not all 0): one uniform
    number from ``generator`` and the inverse of the cumulative sum. Same result as
    ``torch.multinomial(weights, 1)`` in distribution, several times faster for a whole
    vocabulary (no per-call checks and normalisation)."""
    c = torch.cumsum(weights.double(), dim=0)
    u = torch.rand((), generator=generator, dtype=torch.float64, device=weights.device) * c[-1]
    i = int(torch.searchsorted(c, u.reshape(1), right=True))
    return min(i, weights.numel() - 1)


class RowSampler(LogitsProcessor):
    """Choose each row's next token: argmax at temperature 0, else seeded top-p sampling.

    Returns scores that are ``-inf`` except at the chosen token, so greedy ``generate``
    keeps exactly that choice.
    """

    def __init__(self, temperatures: Sequence[float], top_ps: Sequence[float], seeds: Sequence[int],
                 device: torch.device, fallback_token: int):
        self.temperatures = [float(t) for t in temperatures]
        self.top_ps = [float(p) for p in top_ps]
        self.generators = []
        for s in seeds:
            g = torch.Generator(device=device)
            g.manual_seed(int(s) & 0x7FFF_FFFF_FFFF_FFFF)
            self.generators.append(g)
        self.fallback = int(fallback_token)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        scores = scores.float()
        chosen = []
        for r in range(scores.shape[0]):
            row = scores[r]
            if not torch.isfinite(row).any():
                chosen.append(self.fallback)
                continue
            t = self.temperatures[r]
            if t <= 0:
                chosen.append(int(torch.argmax(row)))
                continue
            probs = torch.softmax(row / t, dim=-1)
            p = self.top_ps[r]
            if p < 1.0:
                # the nucleus nearly always lies in the top few hundred tokens: sort those only
                # (exact: the full sort runs when they do not reach p)
                sp, si = torch.topk(probs, min(NUCLEUS_TOPK, probs.numel()))
                if float(sp.sum()) < p and sp.numel() < probs.numel():
                    sp, si = torch.sort(probs, descending=True)
                keep = torch.cumsum(sp, dim=-1) - sp < p  # smallest prefix reaching p (always >= 1)
                chosen.append(int(si[keep][draw_token(sp[keep], self.generators[r])]))
            else:
                chosen.append(draw_token(probs, self.generators[r]))
        out = torch.full_like(scores, float("-inf"))
        out[torch.arange(scores.shape[0], device=scores.device),
            torch.as_tensor(chosen, device=scores.device)] = 0.0
        return out


class RowStopper(StoppingCriteria):
    """Finish a row at its own ``max_tokens`` or when its text contains a stop string."""

    def __init__(self, tokenizer, prompt_len: int, max_tokens: Sequence[int],
                 stops: Sequence[Sequence[str] | None], eos_ids: Sequence[int]):
        self.tok = tokenizer
        self.prompt_len = prompt_len
        self.max_tokens = list(max_tokens)
        self.stops = [list(s or []) for s in stops]
        self.eos = set(int(e) for e in eos_ids)
        self.done = [False] * len(self.max_tokens)

    def __call__(self, input_ids: torch.LongTensor, scores, **kwargs) -> torch.BoolTensor:
        n_new = input_ids.shape[1] - self.prompt_len
        last = input_ids[:, -1].tolist()
        for r in range(len(self.done)):
            if self.done[r]:
                continue
            if last[r] in self.eos or n_new >= self.max_tokens[r]:
                self.done[r] = True
            elif self.stops[r]:
                # a stop string ends within the last few tokens: decode a short tail only
                tail = self.tok.decode(input_ids[r, max(self.prompt_len, input_ids.shape[1] - 16):],
                                       skip_special_tokens=True)
                if any(s in tail for s in self.stops[r]):
                    self.done[r] = True
        return torch.tensor(self.done, dtype=torch.bool, device=input_ids.device)
