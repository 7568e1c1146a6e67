"""Any OpenAI-compatible chat-completions endpoint (OpenAI, vLLM, Ollama, llama.cpp, LM Studio).

Uses the ``openai`` package's sync client with its own retries turned off: this module
retries with exponential backoff (``backoff_s * 2**attempt``, jittered, capped at
``backoff_max_s``; a ``Retry-After`` header is honoured up to the cap) on rate limits
(429), server errors (5xx, 408, 409), timeouts, connection errors and malformed replies.
Other 4xx answers (bad key, unknown model) are not retried: the error says what to set.
Why not the client's own retries (``max_retries`` of ``openai.OpenAI``): they cover only transport
failures and retryable status codes, while this loop must also retry a 200 whose body is garbage
(no content, an unparseable structured reply), drop structured-output fields at once when a server
refuses them (not counted as a retry), and count every HTTP attempt per request for the accounting;
one loop for all of these keeps a single backoff schedule and a single ``attempts`` count.

Log-probabilities of given completions (``logprobs``) use ``/v1/completions`` with
``echo``, where the server has it (vLLM, OpenAI's completion models, ``optforge llm serve``
with the local model); elsewhere they raise NotImplementedError and callers fall back.

Each sample is one HTTP call (sample ``i`` sends ``seed + i`` when the request has a
seed), sent concurrently on a thread pool of ``concurrency`` workers; many servers ignore
``n``, and one call per sample keeps caching per sample exact. Failures never raise:
they come back in ``ChatResponse.error`` with the number of attempts.

Structured output (``structured``), for requests that ask for a grammar (``grammar="dsl"``
for update-rule proposals, or a Lark text):

* ``"grammar"``: the Lark grammar goes in the request body field named by ``grammar_field``
  (vLLM: ``"guided_grammar"``; llama.cpp built with llguidance: ``"grammar"``, sent with its
  ``%llguidance {}`` header; ``optforge llm serve`` accepts both), so the server decodes
  only valid programs.
* ``"json_schema"``: for ``grammar="dsl"`` requests, ``response_format`` asks for a JSON
  object ``{"program": "<the update rule>"}`` (OpenAI structured outputs, vLLM, llama.cpp,
  Ollama, LM Studio). The program string comes back as the reply text: no prose or code
  fences around it, but a JSON schema cannot express the DSL, so the caller's parse and
  repair loop still checks it.
* ``"auto"`` (default): ``"grammar"`` when ``grammar_field`` is set, else ``"json_schema"``.
* ``"off"``: plain text; the caller's repair loop deals with invalid programs.

A server that refuses the structured-output fields (HTTP 400/422 on a request carrying
them) gets the same request again without them at once, and structured output stays off
for the rest of the process (``structured_refused`` says why). A reply that is not the
expected JSON is passed on as text. A user-set ``response_format`` is sent on every request
and takes precedence over the JSON schema.
"""
from __future__ import annotations

import json
import os
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlparse

from .base import LLM, ChatRequest, ChatResponse, LLMSetupError
from .grammar import request_grammar

OPENAI_URL = "https://api.openai.com/v1"
STRUCTURED = ("auto", "grammar", "json_schema", "off")

#: The JSON schema of an update-rule proposal (``structured="json_schema"``).
PROGRAM_SCHEMA = {
    "type": "object",
    "properties": {"program": {"type": "string", "description": "the complete update rule, from 'def' to "
                                                                  "its return line, in the DSL"}},
    "required": ["program"],
    "additionalProperties": False,
}


def program_response_format() -> dict:
    """``response_format`` for a JSON-schema-constrained update-rule proposal."""
    return {"type": "json_schema", "json_schema": {"name": "update_rule", "strict": True, "schema": PROGRAM_SCHEMA}}


def unwrap_program(text: str) -> str:
    """The ``program`` string of a ``{"program": ...}`` reply; any other text unchanged."""
    body = text.strip()
    if body.startswith("```"):  # some servers fence JSON anyway
        body = body.strip("`").removeprefix("json").strip()
    a, b = body.find("{"), body.rfind("}")
    if a < 0 or b < a:
        return text
    try:
        obj = json.loads(body[a:b + 1])
    except (json.JSONDecodeError, RecursionError):
        return text
    prog = obj.get("program") if isinstance(obj, dict) else None
    return prog if isinstance(prog, str) and prog.strip() else text


def _retry_after(exc) -> float | None:
    resp = getattr(exc, "response", None)
    try:
        v = resp.headers.get("retry-after") if resp is not None else None
        return float(v) if v is not None else None
    except (TypeError, ValueError):
        return None


class OpenAILLM(LLM):
    """Chat completions over HTTP (see the module docstring)."""

    name = "openai"

    def __init__(self, model: str | None = None, base_url: str | None = None, api_key: str | None = None, *,
                 concurrency: int = 4, timeout_s: float = 60.0, max_retries: int = 3, backoff_s: float = 0.5,
                 backoff_max_s: float = 20.0, response_format: dict | None = None,
                 grammar_field: str | None = None, extra_body: dict | None = None, structured: str = "auto"):
        try:   # here, not at module top: `optforge llm serve` imports this module for its schema only,
            import openai  # and the client costs 0.57 s of import (2026-12-01 12:27 UTC, 2-core container, idle)
        except ImportError:
            raise LLMSetupError("the openai backend needs the openai package: pip install openai") from None
        self._openai = openai
        base_url = base_url or os.environ.get("OPENAI_BASE_URL") or OPENAI_URL
        u = urlparse(base_url)
        if u.scheme not in ("http", "https") or not u.netloc:
            raise LLMSetupError(f"llm.base_url {base_url!r} is not an http(s) URL: set llm.base_url or "
                                "OPENAI_BASE_URL, e.g. http://localhost:8000/v1")
        api_key = api_key or os.environ.get("OPENAI_API_KEY")
        if not api_key:
            if u.netloc.endswith("openai.com"):
                raise LLMSetupError("no API key for api.openai.com: set OPENAI_API_KEY (or llm.api_key), or "
                                    "set llm.base_url to a local OpenAI-compatible server")
            api_key = "sk-no-key-needed"  # local servers accept any key
        if not model:
            raise LLMSetupError("llm.model must name the endpoint's model for the openai backend "
                                "(e.g. \"gpt-4o-mini\", or the name a vLLM/Ollama server serves)")
        if structured not in STRUCTURED:
            raise LLMSetupError(f"llm.structured {structured!r} is not one of {', '.join(STRUCTURED)}")
        if structured == "grammar" and not grammar_field:
            raise LLMSetupError("llm.structured = \"grammar\" needs llm.grammar_field, the request body field the "
                                "server reads a Lark grammar from (vLLM: \"guided_grammar\", llama.cpp: \"grammar\")")
        if concurrency < 1 or max_retries < 0 or timeout_s <= 0:
            raise LLMSetupError("llm.concurrency must be >= 1, llm.max_retries >= 0 and llm.timeout_s > 0")
        self.model, self.base_url = model, base_url.rstrip("/")
        self.timeout_s, self.max_retries = float(timeout_s), int(max_retries)
        self.backoff_s, self.backoff_max_s = float(backoff_s), float(backoff_max_s)
        self.response_format, self.grammar_field = response_format, grammar_field
        self.extra_body = dict(extra_body or {})
        self.structured = ("grammar" if grammar_field else "json_schema") if structured == "auto" else structured
        #: Why structured output was turned off (the server refused it), or None.
        self.structured_refused: str | None = None
        self._no_scoring: str | None = None   # why logprobs() is not available, once known
        self.client = openai.OpenAI(api_key=api_key, base_url=self.base_url, timeout=self.timeout_s,
                                    max_retries=0)
        self._pool = ThreadPoolExecutor(max_workers=int(concurrency), thread_name_prefix="optforge-llm")
        self._rng = random.Random(0)
        self._rng_lock = threading.Lock()
        self.attempts = 0        # HTTP attempts made (retries included), for tests and logs

    def grammar_support(self) -> str | None:
        """Lark grammars are forwarded only in a ``grammar_field`` (a JSON-schema grammar would be
        dropped by the endpoint without a word), and only until the endpoint refuses one."""
        if self.structured == "grammar" and self.structured_refused is None:
            return None
        return ("the served openai backend has no grammar_field to forward a grammar in "
                "(set llm.grammar_field, e.g. \"guided_grammar\" for vLLM)")

    def identity(self) -> dict:
        return {"backend": "openai", "base_url": self.base_url, "model": self.model, "structured": self.structured}

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        try:
            self.client.close()
        except Exception:  # noqa: BLE001
            pass

    def check(self) -> None:
        """One tiny request; LLMSetupError with the reason if the endpoint does not answer."""
        r = self.chat([ChatRequest(messages=[{"role": "user", "content": "ping"}], max_tokens=1,
                                   temperature=0.0)])[0]
        if r.error:
            raise LLMSetupError(f"the OpenAI-compatible endpoint does not work: {r.error}")

    # -- one HTTP call, with retries -------------------------------------------------------
    def _backoff(self, attempt: int, exc) -> float:
        with self._rng_lock:
            jitter = 0.75 + 0.5 * self._rng.random()
        delay = min(self.backoff_max_s, self.backoff_s * (2 ** attempt) * jitter)
        ra = _retry_after(exc)
        return min(self.backoff_max_s, ra) if ra is not None else delay

    def _structured_mode(self, rq: ChatRequest) -> str | None:
        """How this request is constrained on the server: "grammar", "json_schema" or None."""
        if rq.grammar is None or rq.grammar == "" or self.structured_refused is not None:
            return None
        if self.structured == "grammar":
            return "grammar"
        is_dsl = rq.grammar.strip().lower() == "dsl"
        if self.structured == "json_schema" and is_dsl and self.response_format is None:
            return "json_schema"
        return None

    def _kwargs(self, rq: ChatRequest, index: int, mode: str | None) -> dict:
        kw: dict = {"model": self.model, "messages": [{"role": m.role, "content": m.content} for m in rq.messages],
                    "temperature": rq.temperature, "max_tokens": rq.max_tokens}
        if rq.top_p < 1.0:
            kw["top_p"] = rq.top_p
        if rq.stop:
            kw["stop"] = list(rq.stop)[:4]  # the API's limit; all are applied after the reply anyway
        if rq.seed is not None:
            kw["seed"] = int(rq.seed) + index
        if self.response_format is not None:
            kw["response_format"] = self.response_format
        elif mode == "json_schema":
            kw["response_format"] = program_response_format()
        body = dict(self.extra_body)
        if mode == "grammar":
            lark = request_grammar(rq.grammar, rq.grammar_names)
            body[self.grammar_field] = ("%llguidance {}\n" + lark) if self.grammar_field == "grammar" else lark
        if body:
            kw["extra_body"] = body
        return kw

    def _one(self, rq: ChatRequest, index: int) -> tuple[str, int, int, str | None]:
        oa = self._openai
        mode = self._structured_mode(rq)
        kw = self._kwargs(rq, index, mode)
        last = ""
        refused: str | None = None
        attempt = 0
        while attempt <= self.max_retries:
            with self._rng_lock:
                self.attempts += 1
            retry_exc = None
            try:
                resp = self.client.chat.completions.create(**kw)
                choice = resp.choices[0]
                text = choice.message.content
                if text is None:
                    raise ValueError("the reply has no message content")
                if mode == "json_schema":
                    text = unwrap_program(text)
                for s in rq.stop or []:
                    if s and s in text:
                        text = text[: text.index(s)]
                usage = getattr(resp, "usage", None)
                pt = int(getattr(usage, "prompt_tokens", 0) or 0)
                ct = int(getattr(usage, "completion_tokens", 0) or 0)
                if usage is None:  # estimate, so token caps still bite
                    pt = sum(len(m.content) for m in rq.messages) // 4
                    ct = len(text) // 4
                if refused is not None:
                    with self._rng_lock:
                        self.structured_refused = refused
                return text, pt, ct, None
            except oa.APITimeoutError as e:
                last, retry_exc = f"timed out after {self.timeout_s:g} s ({e})", e
            except oa.APIConnectionError as e:
                last = (f"cannot reach {self.base_url} ({type(e).__name__}: {e}): check llm.base_url / "
                        "OPENAI_BASE_URL and that the server is running")
                retry_exc = e
            except oa.APIStatusError as e:
                code = e.status_code
                msg = f"HTTP {code} from {self.base_url}: {str(e)[:300]}"
                if mode is not None and code in (400, 422):
                    # perhaps the server does not take the structured-output fields: ask again without
                    # them; if that works, plain text from now on
                    refused = f"{mode} refused with {msg[:200]}"
                    mode = None
                    kw = self._kwargs(rq, index, None)
                    continue  # at once, and not counted as a retry
                if code in (408, 409, 429) or code >= 500:
                    last, retry_exc = msg, e
                elif code in (401, 403):
                    return "", 0, 0, f"{msg} (the endpoint refused the API key: set OPENAI_API_KEY or llm.api_key)"
                elif code == 404:
                    return "", 0, 0, (f"{msg} (check llm.model {self.model!r} and llm.base_url; OpenAI-compatible "
                                      "servers usually serve under /v1)")
                else:
                    return "", 0, 0, msg
            except (oa.APIResponseValidationError, ValueError, TypeError, AttributeError, IndexError) as e:
                last, retry_exc = f"malformed reply from {self.base_url}: {type(e).__name__}: {e}", e
            except Exception as e:  # noqa: BLE001 - anything else is recorded, never raised
                return "", 0, 0, f"request failed: {type(e).__name__}: {e}"
            if attempt < self.max_retries:
                time.sleep(self._backoff(attempt, retry_exc))
            attempt += 1
        return "", 0, 0, f"{last} (gave up after {self.max_retries + 1} attempts)"

    # -- scoring given text ------------------------------------------------------------------
    def _score_one(self, prompt: str, completion: str) -> float:
        """log P(completion | prompt) from ``/v1/completions`` with ``echo``: the sum over the
        tokens that overlap the completion's characters (the first token has none)."""
        oa = self._openai
        text = prompt + completion
        last, attempt = "", 0
        while True:
            with self._rng_lock:
                self.attempts += 1
            try:
                resp = self.client.completions.create(model=self.model, prompt=text, echo=True, logprobs=0,
                                                      max_tokens=0, temperature=0.0)
                lp = resp.choices[0].logprobs
                offs, vals = list(lp.text_offset), list(lp.token_logprobs)
                if len(offs) != len(vals) or not offs:
                    raise ValueError("the reply's logprobs have no tokens")
                total = 0.0
                for k, (a, v) in enumerate(zip(offs, vals)):
                    end = offs[k + 1] if k + 1 < len(offs) else len(text)
                    if end > len(prompt) and a < len(text):
                        if v is None:
                            raise ValueError("no log-probability for the completion's first token (empty prompt?)")
                        total += float(v)
                return total
            except oa.APIStatusError as e:
                if e.status_code in (400, 404, 405, 422, 501):
                    self._no_scoring = (f"{self.base_url} does not score given text (/v1/completions with echo and "
                                        f"logprobs, as vLLM and OpenAI's completion models have): HTTP "
                                        f"{e.status_code}: {str(e)[:200]}")
                    raise NotImplementedError(self._no_scoring) from None
                if e.status_code in (401, 403):
                    raise RuntimeError(f"HTTP {e.status_code} from {self.base_url}: set OPENAI_API_KEY or "
                                       "llm.api_key") from None
                last, exc = f"HTTP {e.status_code} from {self.base_url}: {str(e)[:200]}", e
            except (oa.APITimeoutError, oa.APIConnectionError) as e:
                last, exc = f"{type(e).__name__} from {self.base_url}: {e}", e
            except (oa.APIResponseValidationError, ValueError, TypeError, AttributeError, IndexError) as e:
                last, exc = f"malformed scoring reply from {self.base_url}: {type(e).__name__}: {e}", e
            if attempt >= self.max_retries:
                raise RuntimeError(f"{last} (gave up after {attempt + 1} attempts)")
            time.sleep(self._backoff(attempt, exc))
            attempt += 1

    def logprobs(self, prompts: list[str], completions: list[list[str]]) -> list[list[float]]:
        """log P(completion | prompt) for every pair, one ``/v1/completions`` call (``echo=True,
        logprobs=0, max_tokens=0``) per pair, sent concurrently. Servers without it (most chat-only
        endpoints, OpenAI's chat models) raise NotImplementedError, once and for the rest of the
        process, so callers fall back (prompt optimization then classifies by generation)."""
        if len(prompts) != len(completions):
            raise ValueError(f"logprobs: {len(prompts)} prompts but {len(completions)} completion lists")
        if self._no_scoring:
            raise NotImplementedError(self._no_scoring)
        futures = [[self._pool.submit(self._score_one, p, c) for c in cs] for p, cs in zip(prompts, completions)]
        return [[f.result() for f in row] for row in futures]

    def chat(self, requests: list[ChatRequest]) -> list[ChatResponse]:
        jobs = [(i, k) for i, rq in enumerate(requests) for k in range(rq.n)]
        t0 = [time.perf_counter()] * len(requests)
        futures = {(i, k): self._pool.submit(self._one, requests[i], requests[i].sample_offset + k)
                   for i, k in jobs}
        out = []
        for i, rq in enumerate(requests):
            texts, pt, ct, errs = [], 0, 0, []
            for k in range(rq.n):
                try:
                    text, p, c, err = futures[(i, k)].result()
                except Exception as e:  # noqa: BLE001
                    text, p, c, err = "", 0, 0, f"request failed: {type(e).__name__}: {e}"
                if err:
                    errs.append(err)
                else:
                    texts.append(text)
                pt, ct = pt + p, ct + c
            out.append(ChatResponse(texts=texts, prompt_tokens=pt, completion_tokens=ct,
                                    latency_s=time.perf_counter() - t0[i], error=errs[0] if errs else None))
        return out
