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
  server without that support does.

Structured output: a Lark grammar in the body field ``guided_grammar`` (vLLM) or
``grammar`` (llama.cpp; its ``%llguidance`` header line is dropped), or a
``response_format`` of type ``json_schema`` / ``json_object`` (turned into the Lark
grammar ``start: %json {schema}``), becomes the request's ``grammar``: a backend that
constrains decoding (the local one) then only writes text that fits it.

Every request body received is kept in ``server.bodies``, its Authorization header in
``server.auth``, and ``server.max_in_flight`` is the most chat requests handled at once (tests
check what was sent, with which key, how concurrently).
"""
from __future__ import annotations

import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from pydantic import ValidationError

from .base import LLM, ChatRequest


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
        body = self._read_json()
        if body is None:
            return
        srv = self.server
        with srv.lock:
            srv.bodies.append(body)
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

    def _completions(self) -> None:
        """``/v1/completions`` for scoring only: ``echo=true, max_tokens=0, logprobs>=0`` returns
        every prompt token's log-probability (the openai backend's ``logprobs``)."""
        body = self._read_json()
        if body is None:
            return
        srv = self.server
        with srv.lock:
            srv.bodies.append(body)
        prompts = body.get("prompt")
        prompts = [prompts] if isinstance(prompts, str) else prompts
        scorer = getattr(srv.llm, "token_logprobs", None)
        if scorer is None:
            self._error(404, "this server's backend cannot score text (/v1/completions needs a local model)")
            return
        if not (body.get("echo") and body.get("max_tokens") == 0 and body.get("logprobs") is not None
                and isinstance(prompts, list) and all(isinstance(p, str) for p in prompts)):
            self._error(400, "this server answers /v1/completions for scoring only: prompt (a string or a list), "
                             "echo=true, max_tokens=0, logprobs=0")
            return
        try:
            with srv.llm_lock:
                scored = scorer(prompts)
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
        if grammar is not None and not srv.structured:
            self._error(400, "this server does not support structured output (response_format json_schema, "
                             "guided_grammar, grammar)")
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
        with srv.llm_lock:
            resp = srv.llm.chat([rq])[0]
        if resp.error:
            self._error(500, resp.error)
            return
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
        return "start: %json " + json.dumps(schema)
    return None


class OpenAICompatServer(ThreadingHTTPServer):
    """``OpenAICompatServer(llm, port=0)``; ``.url`` is the base URL (ends in /v1)."""

    daemon_threads = True

    def __init__(self, llm: LLM, host: str = "127.0.0.1", port: int = 0, *, model_name: str = "optforge",
                 fail_first: int = 0, fail_status: int = 500, garbage_first: int = 0, delay_s: float = 0.0,
                 structured: bool = True, verbose: bool = False):
        super().__init__((host, port), _Handler)
        self.llm, self.model_name, self.verbose = llm, model_name, verbose
        self.fail_first, self.fail_status, self.garbage_first = fail_first, fail_status, garbage_first
        self.delay_s, self.structured = delay_s, structured
        self.bodies: list[dict] = []
        self.auth: list[str | None] = []
        self.chat_count = 0
        self.in_flight = self.max_in_flight = 0
        self.lock = threading.Lock()
        self.llm_lock = threading.Lock()   # one generation at a time (a local model is not re-entrant)
        self._thread: threading.Thread | None = None

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
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> "OpenAICompatServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
