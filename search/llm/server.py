"""A small OpenAI-compatible HTTP server in front of any backend (``optforge llm serve``).

``POST /v1/chat/completions``, ``GET /v1/models`` and, for scoring given text with a local
model, ``POST /v1/completions`` (``echo``, ``logprobs``, ``max_tokens=0``), on the standard library's
``ThreadingHTTPServer``. It lets other tools (or other machines) use the embedded
model, and it is what the tests of the ``openai`` backend talk to: a real HTTP server on
localhost, with fault injection for the retry tests:

* ``fail_first=k, fail_status=500|429|...``: the first k chat requests get that status
  (429 answers carry ``Retry-After: 0``);
* ``garbage_first=k``: the first k chat requests get a 200 with a body that is not JSON;
* ``delay_s``: every chat request waits that long first (for timeout tests);
* ``structured=False``: refuse (HTTP 400) requests that carry structured-output fields, as a
  server without that support does (``None``, the default: refuse only when the backend
  cannot enforce them).

Structured output: a Lark grammar in the body field ``guided_grammar`` (vLLM) or
``grammar`` (llama.cpp; its ``%llguidance`` header line is dropped), or a
``response_format`` of type ``json_schema`` / ``json_object`` (turned into the Lark
grammar ``start: %json {schema}``), becomes the request's ``grammar``: a backend that
constrains decoding (the local one, with llguidance) then only writes text that fits it.
optforge's own update-rule schema (``{"program": string}``, named ``update_rule``, what the
openai backend sends for DSL proposals) is decoded with the DSL grammar instead, and the
program comes back wrapped in that JSON object: a JSON schema alone would let the model put
any string in ``program``. Whether a backend can enforce grammars is ``LLM.grammar_support()``;
a structured request to a server whose backend cannot is refused with HTTP 400 saying why
(the openai backend then asks again without it and relies on its repair loop), never
answered with unconstrained text. ``structured=True`` / ``False`` overrides the check.

Concurrent chat requests are batched: whatever arrives within ``batch_window_s`` of the
first (up to ``max_batch``) goes to the backend as one ``chat()`` call, so a local model
generates them together (several times the tokens/s of one at a time). ``chat_count`` counts
every chat request received, the number a benchmark reports as task-model calls.

Every request body received is kept in ``server.bodies``, its Authorization header in
``server.auth``, and ``server.max_in_flight`` is the most chat requests handled at once (tests
check what was sent, with which key, how concurrently).
"""
from __future__ import annotations

import json
import queue
import threading
import time
import uuid
from concurrent.futures import Future
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from pydantic import ValidationError

from .base import LLM, ChatRequest, ChatResponse
from .openai_backend import PROGRAM_SCHEMA


class _Handler(BaseHTTPRequestHandler):
    server: "OpenAICompatServer"
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # quiet unless asked
        if self.server.verbose:
            super().log_message(fmt, *args)

    def _send(self, code: int, payload, headers: dict | None = None, raw: bytes | None = None) -> None:
        body = raw if raw is not None else json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def _error(self, code: int, message: str, headers: dict | None = None) -> None:
        self._send(code, {"error": {"message": message, "type": "server_error" if code >= 500 else
                                    "invalid_request_error", "code": code}}, headers)

    def _read_json(self) -> dict | None:
        """The request body as JSON; None after answering 400 when it is not JSON."""
        n = int(self.headers.get("Content-Length") or 0)
        try:
            return json.loads((self.rfile.read(n) if n else b"") or b"{}")
        except json.JSONDecodeError as e:
            self._error(400, f"request body is not JSON: {e}")
            return None

    def do_GET(self):  # noqa: N802
        if self.path.rstrip("/") in ("/v1/models", "/models"):
            self._send(200, {"object": "list", "data": [{"id": self.server.model_name, "object": "model",
                                                         "owned_by": "optforge"}]})
        else:
            self._error(404, f"no route {self.path}")

    def do_POST(self):  # noqa: N802
        if self.path.rstrip("/") in ("/v1/completions", "/completions"):
            self._completions()
            return
        if self.path.rstrip("/") not in ("/v1/chat/completions", "/chat/completions"):
            self._error(404, f"no route {self.path}: use /v1/chat/completions")
            return
        body = self._read_recorded()
        if body is None:
            return
        srv = self.server
        with srv.lock:
            srv.auth.append(self.headers.get("Authorization"))
            k = srv.chat_count
            srv.chat_count += 1
            srv.in_flight += 1
            srv.max_in_flight = max(srv.max_in_flight, srv.in_flight)
        try:
            self._chat(body, k)
        finally:
            with srv.lock:
                srv.in_flight -= 1

    def _read_recorded(self) -> dict | None:
        """The request's JSON body, recorded in ``server.bodies`` (tests read what was sent); None
        when the body was bad (the error reply is already sent)."""
        body = self._read_json()
        if body is not None:
            with self.server.lock:
                self.server.bodies.append(body)
        return body

    def _completions(self) -> None:
        """``/v1/completions`` for scoring only: ``echo=true, max_tokens=0, logprobs>=0`` returns
        every prompt token's log-probability (the openai backend's ``logprobs``)."""
        body = self._read_recorded()
        if body is None:
            return
        srv = self.server
        prompts = body.get("prompt")
        prompts = [prompts] if isinstance(prompts, str) else prompts
        if not srv.llm.scores_tokens():
            self._error(404, "this server's backend cannot score text (/v1/completions needs a local model)")
            return
        if not (body.get("echo") and body.get("max_tokens") == 0 and body.get("logprobs") is not None
                and isinstance(prompts, list) and all(isinstance(p, str) for p in prompts)):
            self._error(400, "this server answers /v1/completions for scoring only: prompt (a string or a list), "
                             "echo=true, max_tokens=0, logprobs=0")
            return
        try:
            with srv.llm_lock:
                scored = srv.llm.token_logprobs(prompts)
        except Exception as e:  # noqa: BLE001
            self._error(400, f"scoring failed: {type(e).__name__}: {e}")
            return
        n_tok = sum(len(t[0]) for t in scored)
        self._send(200, {
            "id": "cmpl-" + uuid.uuid4().hex[:16], "object": "text_completion", "created": int(time.time()),
            "model": body.get("model") or srv.model_name,
            "choices": [{"index": i, "text": p, "finish_reason": "length",
                         "logprobs": {"tokens": toks, "token_logprobs": lps, "text_offset": offs, "top_logprobs": None}}
                        for i, (p, (toks, lps, offs)) in enumerate(zip(prompts, scored))],
            "usage": {"prompt_tokens": n_tok, "completion_tokens": 0, "total_tokens": n_tok}})

    def _chat(self, body: dict, k: int) -> None:
        srv = self.server
        if srv.delay_s:
            time.sleep(srv.delay_s)
        if k < srv.fail_first:
            self._error(srv.fail_status, f"injected failure {k + 1}/{srv.fail_first}",
                        {"Retry-After": "0"} if srv.fail_status == 429 else None)
            return
        if k < srv.fail_first + srv.garbage_first:
            self._send(200, None, raw=b"<html>this is not json</html>")
            return
        try:
            grammar = _structured(body)
        except ValueError as e:
            self._error(400, str(e))
            return
        if grammar is not None and srv.structured is not True:
            why = (srv.llm.grammar_support() if srv.structured is None
                   else "this server is set not to support it")
            if why is not None:
                self._error(400, f"structured output cannot be enforced: {why}. Send the request without "
                                 "response_format / guided_grammar / grammar, or serve a backend that constrains "
                                 "decoding (the local model)")
                return
        try:
            rq = ChatRequest(messages=body.get("messages") or [], temperature=float(body.get("temperature", 0.7)),
                             max_tokens=int(body.get("max_tokens") or body.get("max_completion_tokens") or 256),
                             stop=([body["stop"]] if isinstance(body.get("stop"), str) else body.get("stop")),
                             seed=body.get("seed"), n=int(body.get("n") or 1),
                             top_p=float(body.get("top_p", 1.0)), grammar=grammar, purpose="serve")
        except (ValidationError, TypeError, ValueError) as e:
            self._error(400, f"bad chat request: {e}")
            return
        resp = srv.generate(rq)
        if resp.error:
            self._error(400 if grammar is not None and resp.error.startswith(_GRAMMAR_ERRORS) else 500, resp.error)
            return
        if grammar == "dsl" and _is_program_schema(body.get("response_format")):
            resp.texts = [json.dumps({"program": t}) for t in resp.texts]
        self._send(200, {
            "id": "chatcmpl-" + uuid.uuid4().hex[:16], "object": "chat.completion", "created": int(time.time()),
            "model": body.get("model") or srv.model_name,
            "choices": [{"index": i, "message": {"role": "assistant", "content": t}, "finish_reason": "stop"}
                        for i, t in enumerate(resp.texts)],
            "usage": {"prompt_tokens": resp.prompt_tokens, "completion_tokens": resp.completion_tokens,
                      "total_tokens": resp.prompt_tokens + resp.completion_tokens}})


def _structured(body: dict) -> str | None:
    """The Lark grammar a request body asks for (see the module docstring), or None."""
    for field in ("guided_grammar", "grammar"):
        g = body.get(field)
        if isinstance(g, str) and g.strip():
            lines = g.splitlines(keepends=True)
            if lines and lines[0].startswith("%llguidance"):
                g = "".join(lines[1:])
            return g
    rf = body.get("response_format")
    if rf is None:
        return None
    if not isinstance(rf, dict) or rf.get("type") not in ("text", "json_object", "json_schema"):
        raise ValueError(f"response_format {rf!r}: type must be text, json_object or json_schema")
    if rf["type"] == "json_object":
        return 'start: %json {"type": "object"}'
    if rf["type"] == "json_schema":
        schema = (rf.get("json_schema") or {}).get("schema")
        if not isinstance(schema, dict):
            raise ValueError("response_format json_schema needs json_schema.schema (an object)")
        if _is_program_schema(rf):
            return "dsl"
        return "start: %json " + json.dumps(schema)
    return None


#: How the local backend's error for a grammar llguidance cannot compile begins (a client error: 400).
_GRAMMAR_ERRORS = ("ValueError: invalid grammar",)


def _is_program_schema(rf) -> bool:
    """Is ``response_format`` optforge's update-rule schema (decoded with the DSL grammar)?"""
    if not isinstance(rf, dict) or rf.get("type") != "json_schema":
        return False
    js = rf.get("json_schema") or {}
    return js.get("schema") == PROGRAM_SCHEMA or (js.get("name") == "update_rule" and isinstance(
        js.get("schema"), dict) and set(js["schema"].get("properties") or {}) == {"program"})


class _Batcher:
    """One worker thread: requests arriving within ``window_s`` of the first go to ``llm.chat``
    together (at most ``max_batch``); a local model is not re-entrant, so one call at a time."""

    def __init__(self, llm: LLM, lock: threading.Lock, window_s: float, max_batch: int):
        self.llm, self.lock, self.window_s, self.max_batch = llm, lock, window_s, max(1, max_batch)
        self.q: queue.Queue = queue.Queue()
        self.batches: list[int] = []       # sizes of the batches sent (tests and benchmarks)
        self._thread = threading.Thread(target=self._run, name="optforge-llm-batcher", daemon=True)
        self._thread.start()

    def submit(self, rq: ChatRequest) -> ChatResponse:
        fut: Future = Future()
        self.q.put((rq, fut))
        return fut.result()

    def _run(self) -> None:
        while True:
            item = self.q.get()
            if item is None:
                return
            items = [item]
            deadline = time.monotonic() + self.window_s
            while len(items) < self.max_batch:
                left = deadline - time.monotonic()
                try:
                    nxt = self.q.get(timeout=max(0.0, left)) if left > 0 else self.q.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    self.q.put(None)
                    break
                items.append(nxt)
            self.batches.append(len(items))
            try:
                with self.lock:
                    resps = self.llm.chat([rq for rq, _ in items])
                if len(resps) != len(items):
                    raise RuntimeError(f"backend returned {len(resps)} replies for {len(items)} requests")
            except Exception as e:  # noqa: BLE001 - answered as a server error, the server keeps running
                resps = [ChatResponse(error=f"backend raised {type(e).__name__}: {e}") for _ in items]
            for (_, fut), r in zip(items, resps):
                fut.set_result(r)

    def stop(self) -> None:
        self.q.put(None)


class OpenAICompatServer(ThreadingHTTPServer):
    """``OpenAICompatServer(llm, port=0)``; ``.url`` is the base URL (ends in /v1).

    Two servers in front of one backend (say, one per role, to count each role's calls) pass
    the same ``llm_lock``."""

    daemon_threads = True

    def __init__(self, llm: LLM, host: str = "127.0.0.1", port: int = 0, *, model_name: str = "optforge",
                 fail_first: int = 0, fail_status: int = 500, garbage_first: int = 0, delay_s: float = 0.0,
                 structured: bool | None = None, verbose: bool = False, batch_window_s: float = 0.02,
                 max_batch: int = 16, llm_lock: threading.Lock | None = None):
        super().__init__((host, port), _Handler)
        self.llm, self.model_name, self.verbose = llm, model_name, verbose
        self.fail_first, self.fail_status, self.garbage_first = fail_first, fail_status, garbage_first
        self.delay_s, self.structured = delay_s, structured
        self.bodies: list[dict] = []
        self.auth: list[str | None] = []
        self.chat_count = 0
        self.in_flight = self.max_in_flight = 0
        self.lock = threading.Lock()
        # One generation at a time (a local model is not re-entrant); servers in front of one model share it.
        self.llm_lock = llm_lock or threading.Lock()
        self.batcher = _Batcher(llm, self.llm_lock, batch_window_s, max_batch)
        self._thread: threading.Thread | None = None

    def generate(self, rq: ChatRequest) -> ChatResponse:
        """One chat request through the batcher (batched with concurrent ones)."""
        return self.batcher.submit(rq)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/v1"

    def start(self) -> "OpenAICompatServer":
        """Serve on a background thread (for tests and notebooks); returns self."""
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="optforge-llm-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        self.batcher.stop()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> "OpenAICompatServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
