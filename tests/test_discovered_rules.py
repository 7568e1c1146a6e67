"""The rules optforge's own campaigns found (dsl.discovered): shipped with provenance, listed, exported; rules
that did not hold on re-verification are retired with their source, reason and estimate."""

import pytest
import torch

import dsl
from dsl.discovered import DISCOVERED, PROVENANCE, RETIRED
from dsl_cases import load_module
from search.cli import main
from search.rules import RuleKind

NAMES = list(DISCOVERED)


def test_shipped_discovered_rules_carry_their_provenance():
    assert NAMES or RETIRED, "dsl/discovered.py ships discovered rules, or the record of retired ones"
    for name in NAMES:
        src = DISCOVERED[name]
        assert f"def {name}(" in src
        for word in ("examples/discovery", "seed", "validation", "verified"):
            assert word in src.lower(), f"{name}: the docstring names its {word}"
        p = PROVENANCE[name]
        assert {"campaign", "search_seed", "validation", "verified", "verified_won", "transfer_tasks"} <= set(p)
        assert name not in dsl.list_rules()            # the library's list stays the hand-written rules
        prog = dsl.get_rule(name)                      # ... but the name resolves
        assert RuleKind().normalize(prog.source()) == prog.source()   # a valid search candidate as shipped


def test_rule_list_discovered_puts_the_name_first(capsys):
    assert main(["rule", "list", "--discovered"]) == 0
    lines = [ln for ln in capsys.readouterr().out.strip().splitlines() if not ln.startswith("no discovered")]
    assert [ln.split()[0] for ln in lines] == NAMES + list(RETIRED)
    assert all("verified" in ln for ln in lines)
    assert all("RETIRED" in ln for ln in lines[len(NAMES):])


@pytest.mark.parametrize("name", list(RETIRED))
def test_a_retired_rule_keeps_its_record_and_still_resolves_for_eval(name, capsys):
    r = RETIRED[name]
    assert name not in DISCOVERED and name not in dsl.list_discovered()
    assert f"def {name}(" in r["source"] and r["reason"] and r["retired"]
    assert r["estimate"]["verdict"] != "holds"                       # why it was retired
    assert {"campaign", "verified", "transfer_tasks"} <= set(r["provenance"])
    assert RuleKind().normalize(dsl.parse(r["source"]).source())     # still a valid rule
    assert main(["rule", "check", name]) == 0                        # resolvable, with a note saying why
    assert "retired" in capsys.readouterr().err


@pytest.mark.parametrize("name", NAMES + list(RETIRED))
def test_rule_export_name_writes_a_module_that_trains(name, tmp_path, capsys):
    out = tmp_path / "opt.py"
    assert main(["rule", "export", name, "-o", str(out)]) == 0
    text = out.read_text()
    if name in DISCOVERED:
        assert "examples/discovery" in text            # provenance travels with the code
    mod = load_module(out)
    cls = getattr(mod, dsl.class_name(name))
    assert issubclass(cls, torch.optim.Optimizer)
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.randn(8, 4))
    x = torch.randn(32, 8)
    opt = cls([w], lr=(PROVENANCE.get(name) or RETIRED[name]["provenance"]).get("example_lr", 1e-2))
    losses = []
    for _ in range(30):
        opt.zero_grad()
        loss = (x @ w).pow(2).mean()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
