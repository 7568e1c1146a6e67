"""The DSL's Lark grammar (search.llm.grammar) against the real parser, through llguidance.

No model is needed: a byte-level tokenizer (one token per byte) lets llguidance walk the
grammar, so the tests check (1) the library's rules are accepted by the grammar built from
their own names, and (2) random strings the grammar allows all pass ``dsl.parse``.
"""
from __future__ import annotations

import random

import llguidance
import numpy as np
import pytest

import dsl
from dsl.library import RULES
from search.llm.grammar import (
    DEFAULT_NAMES,
    dsl_grammar_names,
    dsl_lark_grammar,
    grammar_supports,
    parse_grammar_names,
)

EOS = 256


@pytest.fixture(scope="module")
def bytes_tok():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {c: i for i, c in enumerate(alphabet)}
    vocab["<eos>"] = EOS
    tk = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tk.decoder = decoders.ByteLevel()
    tk.add_special_tokens(["<eos>"])
    return tk, llguidance.LLTokenizer(tk.to_str(), eos_token=EOS)


def matcher(lt, lark: str):
    m = llguidance.LLMatcher(lt, llguidance.LLMatcher.grammar_from_lark(lark), log_level=0)
    assert not m.is_error(), m.get_error()
    return m


def _fits(text: str) -> bool:
    """In the grammar: no shaped state or matrix algebra, at most 5 temporaries (the grammar's 2**K)."""
    prog = dsl.parse(text)
    temps = {s.target for s in prog.body} - set(prog.arg_names)
    return grammar_supports(prog) and len(temps) <= 5


@pytest.mark.parametrize("name", sorted(n for n in RULES if _fits(RULES[n])))
def test_library_rules_are_in_the_grammar_of_their_own_names(bytes_tok, name):
    tk, lt = bytes_tok
    prog = dsl.parse(RULES[name])
    m = matcher(lt, dsl_lark_grammar(dsl_grammar_names(prog)))
    ids = tk.encode(prog.source()).ids
    assert m.consume_tokens(ids), m.get_error()
    assert m.is_accepting()


def test_grammar_refuses_what_the_parser_refuses(bytes_tok):
    tk, lt = bytes_tok
    names = dsl_grammar_names(dsl.parse(RULES["lion"]))
    bad = [
        "def lion(w, g, lr, wd):\n",                                     # signature changed
        "def lion(w, g, m, lr, wd, beta1=0.9, beta2=0.99):\n    m = z\n",  # unknown name
        "def lion(w, g, m, lr, wd, beta1=0.9, beta2=0.99):\n    lr = g\n",  # read-only target
        "def lion(w, g, m, lr, wd, beta1=0.9, beta2=0.99):\n    m = norm(g)\n",  # scalar into a state
        "def lion(w, g, m, lr, wd, beta1=0.9, beta2=0.99):\n    u = orthogonalize(lr)\n",  # matrix of scalar
        "def lion(w, g, m, lr, wd, beta1=0.9, beta2=0.99):\n    w = u\n",  # temp read before assignment
        "def lion(w, g, m, lr, wd, beta1=0.9, beta2=0.99):\n    w = w.sign()\n",  # attribute
        "def lion(w, g, m, lr, wd, beta1=0.9, beta2=0.99):\n    import os\n",
        "def lion(w, g, m, lr, wd, beta1=0.9, beta2=0.99):\n    w = w\n    return w\n",  # wrong return
        "def if(w, g, m, lr, wd, beta1=0.9, beta2=0.99):\n",  # keyword as a name
    ]
    for text in bad:
        m = matcher(lt, dsl_lark_grammar(names))
        assert not m.consume_tokens(tk.encode(text).ids), f"grammar accepted a bad prefix: {text!r}"
        with pytest.raises(dsl.DSLError):  # and the parser agrees (completed minimally where needed)
            dsl.parse(text if "return" in text else text + "    return w, m\n")


def test_random_walks_through_the_grammar_all_parse(bytes_tok):
    """Uniformly random allowed bytes until the grammar ends: every finished string parses."""
    tk, lt = bytes_tok
    rng = random.Random(0)
    finished = 0
    for names in (None, dsl_grammar_names(dsl.parse(RULES["lion"])), dsl_grammar_names(dsl.parse(RULES["adamw"]))):
        m = matcher(lt, dsl_lark_grammar(names, max_statements=4))
        for _ in range(40):
            m.reset()
            out = []
            for _ in range(260):
                mask = np.frombuffer(m.compute_bitmask(), dtype=np.uint32)
                allowed = [t for t in range(EOS + 1) if mask[t // 32] >> (t % 32) & 1]
                t = rng.choice(allowed)
                if t == EOS:
                    break
                assert m.consume_token(t), m.get_error()
                out.append(t)
            else:
                continue
            finished += 1
            text = tk.decode(out)
            dsl.parse(text)  # raises DSLError (and fails the test) if the grammar let a bad program through
    assert finished >= 10


def test_grammar_names_are_validated():
    with pytest.raises(ValueError, match="must include 'g'"):
        parse_grammar_names(["w", "m"])
    with pytest.raises(ValueError, match="kind after ':'"):
        parse_grammar_names(["w", "g", "u:vector"])
    with pytest.raises(ValueError, match="cannot be a hyperparameter"):
        parse_grammar_names(["w", "g", "lr=0.1"])
    with pytest.raises(ValueError, match="before the temporaries"):
        parse_grammar_names(["w", "g", "u:tensor", "m"])
    spec = parse_grammar_names(DEFAULT_NAMES)
    assert spec.states == ["m", "v"] and "beta1" in spec.scalar_inputs


def test_dsl_grammar_names_keeps_signature_and_typed_temporaries():
    names = dsl_grammar_names(dsl.parse(RULES["adam"]))
    assert names[:10] == ["w", "g", "m", "v", "lr", "wd", "step", "beta1=0.9", "beta2=0.999", "eps=1e-08"]
    assert "u:tensor" in names and all(":" in n for n in names[10:])


SHAPED_SCALARS = """\
def spamish(w, g, m, lr, wd, step, is_matrix, k=50):
    m = refresh(k, 0 * m, m)
    m = interp(g / maximum(global_norm(g), 1), m, 0.9)
    u = interp(m, orthogonalize(m) * sqrt(maximum(1, rows(m) / cols(m))), is_matrix)
    w = w - lr * u / maximum(max_of(abs(u)), 1)
    return w, m
"""


def test_refresh_shape_scalars_group_norm_and_roles_are_in_the_grammar(bytes_tok):
    tk, lt = bytes_tok
    prog = dsl.parse(SHAPED_SCALARS)
    assert grammar_supports(prog)
    m = matcher(lt, dsl_lark_grammar(dsl_grammar_names(prog)))
    assert m.consume_tokens(tk.encode(prog.source()).ids), m.get_error()
    assert m.is_accepting()
    # a row/col reduction as a factor of a tensor product
    row = "def f(w, g, lr):\n    w = w - lr * g / row_mean(abs(g)) * -col_sum(g)\n    return w\n"
    m = matcher(lt, dsl_lark_grammar(["w", "g", "lr"]))
    assert m.consume_tokens(tk.encode(row).ids), m.get_error()
    assert m.is_accepting() and dsl.parse(row)
    # shaped state and matrix algebra lie outside it
    assert not grammar_supports(dsl.parse("def f(w, g, r: row):\n    r = row_mean(g)\n    w = w - r * g\n"
                                          "    return w, r\n"))
    assert not grammar_supports(dsl.parse("def f(w, g):\n    w = w - matmul(matmul(g, transpose(g)), g)\n"
                                          "    return w\n"))
