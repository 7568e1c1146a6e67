"""``optforge llm ping|serve``: check an LLM set-up before a long campaign, or serve one over HTTP.

``optforge llm ping`` sends one request and prints the reply, the latency and tokens/s
(exit status 1 with the reason when the backend cannot start or the request fails).
``optforge llm serve`` exposes a backend (by default the embedded model) as an
OpenAI-compatible ``/v1/chat/completions`` endpoint.
"""
from __future__ import annotations

import argparse
import time
import tomllib

import dsl
from dsl.library import RULES
from search.llm import ChatRequest, LLMConfig, LLMSetupError, Message, dsl_grammar_names, make_backend
from search.llm.server import OpenAICompatServer

from .errors import CLIError

DEFAULT_PROMPT = "In one sentence: what does an optimizer do when training a neural network?"


def _campaign_table(path: str, table: str) -> dict:
    """The ``[table]`` of a campaign TOML file (``llm`` by default); ValueError if absent."""
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as e:
        raise ValueError(f"cannot read the campaign file {path!r}: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"campaign file {path!r} is not valid TOML: {e}") from None
    t: object = data
    for part in table.split("."):  # "prompt.task_model": a table inside a table
        t = t.get(part) if isinstance(t, dict) else None
    if not isinstance(t, dict):
        raise ValueError(f"campaign file {path!r} has no [{table}] table")
    return dict(t)


def _config(args: argparse.Namespace):
    fields = _campaign_table(args.campaign, args.table) if getattr(args, "campaign", None) else {}
    if args.backend is not None or "backend" not in fields:
        if args.backend is not None and fields.get("backend") not in (None, args.backend):
            fields = {}  # another backend than the file's: its settings do not apply
        fields["backend"] = args.backend or "local"
    for name in ("model", "base_url", "api_key", "device", "replies"):
        v = getattr(args, name, None)
        if v is not None:
            fields[name] = v
    if fields["backend"] == "scripted" and "replies" not in fields:
        fields["replies"] = ["pong"]
    if getattr(args, "timeout", None) is not None:
        fields["timeout_s"] = args.timeout
    if getattr(args, "retries", None) is not None:
        fields["max_retries"] = args.retries
    fields.pop("cache", None)  # ping and serve always ask the backend itself
    return LLMConfig.model_validate(fields)


def _backend_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backend", choices=["local", "openai", "scripted"], default=None,
                   help="which backend (default: the campaign file's, else local, the embedded "
                        "SmolLM2-135M-Instruct)")
    p.add_argument("--campaign", help="take the settings from this campaign file's [llm] table (flags override)")
    p.add_argument("--table", default="llm",
                   help="with --campaign: which table (default llm; a prompt campaign's task model: "
                        "prompt.task_model)")
    p.add_argument("--model", help="local: a GGUF file or model folder; openai: the model name")
    p.add_argument("--base-url", dest="base_url", help="openai: the endpoint (default: $OPENAI_BASE_URL)")
    p.add_argument("--api-key", dest="api_key", help="openai: the key (default: $OPENAI_API_KEY)")
    p.add_argument("--device", help="local: auto, cpu or cuda")
    p.add_argument("--replies", help="scripted: a .json/.jsonl file of replies")
    p.add_argument("--timeout", type=float, help="openai: seconds per request")
    p.add_argument("--retries", type=int, help="openai: retries after a failed request (default 3)")


def cmd_ping(args: argparse.Namespace) -> int:
    try:
        cfg = _config(args)
        backend = make_backend(cfg)
    except (LLMSetupError, ValueError) as e:
        raise CLIError(str(e)) from None
    args.backend = cfg.backend
    print(f"backend: {' '.join(f'{k}={v}' for k, v in backend.identity().items())}")
    if cfg.backend == "local":
        t0 = time.perf_counter()
        try:
            lm = backend.warmup()  # type: ignore[attr-defined]
        except LLMSetupError as e:
            raise CLIError(str(e)) from None
        print(f"model loaded in {time.perf_counter() - t0:.1f} s (from {lm.source}, device {lm.device})")
    if args.max_tokens is None:
        args.max_tokens = 200 if args.grammar else 48   # a whole program needs ~100-150 tokens
    names = None
    if args.grammar and args.prompt is None:   # a real mutation request, as the search sends
        parent = dsl.parse(RULES["sgd_momentum"])
        args.prompt = ("Here is an optimizer update rule:\n" + parent.source()
                       + "Write a variant of this update rule. Reply with only the function.")
        names = dsl_grammar_names(parent)
    rq = ChatRequest(messages=[Message(role="user", content=args.prompt or DEFAULT_PROMPT)],
                     temperature=args.temperature, max_tokens=args.max_tokens, seed=0,
                     grammar="dsl" if args.grammar else None, grammar_names=names, purpose="ping")
    t0 = time.perf_counter()
    r = backend.chat([rq])[0]
    wall = time.perf_counter() - t0
    backend.close()
    if r.error:
        raise CLIError(r.error)
    print("reply:", r.text)
    tps = r.completion_tokens / wall if wall > 0 else float("inf")
    cut = f" (cut at --max-tokens {args.max_tokens})" if r.completion_tokens >= args.max_tokens else ""
    print(f"latency {wall:.2f} s, {r.prompt_tokens} prompt + {r.completion_tokens} completion tokens, "
          f"{tps:.1f} tokens/s{cut}")
    if args.grammar:
        try:
            dsl.parse(r.text)
            print("the reply parses as a DSL program")
        except dsl.DSLError as e:
            print(f"the reply does not parse: {e}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    if args.latency_s < 0:
        raise CLIError(f"--latency-s must be >= 0 seconds, got {args.latency_s}")
    try:
        cfg = _config(args)
        args.backend = cfg.backend
        backend = make_backend(cfg)
        if hasattr(backend, "warmup"):
            backend.warmup()
        srv = OpenAICompatServer(backend, args.host, args.port, model_name=args.name, verbose=True,
                                 delay_s=args.latency_s)
    except (LLMSetupError, ValueError, OSError) as e:
        raise CLIError(str(e)) from None
    print(f"serving {args.backend} on {srv.url} (POST /chat/completions, model name {args.name!r}); Ctrl-C stops",
          flush=True)
    try:
        srv.serve_forever()
    finally:
        srv.server_close()
        backend.close()
    return 0


def register(subparsers) -> None:
    llm = subparsers.add_parser("llm", help="check the LLM set-up (ping) or serve a backend over HTTP")
    sub = llm.add_subparsers(dest="llm_cmd", required=True)
    p = sub.add_parser("ping", help="send one request; print the reply, latency and tokens/s")
    _backend_args(p)
    p.add_argument("--prompt", default=None,
                   help="the user message (default: a one-sentence question; with --grammar: mutate SGD-momentum)")
    p.add_argument("--max-tokens", dest="max_tokens", type=int, default=None,
                   help="completion tokens (default 48; 200 with --grammar)")
    p.add_argument("--temperature", type=float, default=0.0)
    p.add_argument("--grammar", action="store_true", help="constrain the reply to the DSL grammar (local)")
    p.set_defaults(func=cmd_ping)
    p = sub.add_parser("serve", help="serve a backend as an OpenAI-compatible endpoint")
    _backend_args(p)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--name", default="optforge", help="the model name the server reports")
    p.add_argument("--latency-s", dest="latency_s", type=float, default=0.0,
                   help="seconds every chat request waits before it is answered (a slow remote endpoint, for "
                        "benchmarks such as bench/llm_overlap.py)")
    p.set_defaults(func=cmd_serve)
