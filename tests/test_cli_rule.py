"""``optforge rule ...`` through search.cli.main, output captured."""
import pytest

import dsl
from search.cli import main

RAW = """def raw(w, g, m, v, lr):
    \"\"\"a raw search winner\"\"\"
    v = g * 2
    m = interp(g, m, 0.9)
    w = w - lr * (m + v)
    v = tanh(m)
    return w, m, v
"""


@pytest.fixture
def raw_file(tmp_path):
    f = tmp_path / "raw.py"
    f.write_text(RAW)
    return f


def test_check_reports_dead_code_and_fingerprint(raw_file, capsys):
    assert main(["rule", "check", str(raw_file)]) == 0
    out = capsys.readouterr().out
    assert "line 6: v = tanh(m)" in out and "next step" in out
    assert "unused inputs: v" in out
    assert "state tensors 2 -> 1" in out
    assert f"fingerprint: {dsl.fingerprint(RAW)}" in out
    assert main(["rule", "check", "--strict", str(raw_file)]) == 1


def test_check_library_rule_by_name(capsys):
    assert main(["rule", "check", "--strict", "adamw"]) == 0
    out = capsys.readouterr().out
    assert "library rule 'adamw'" in out and "dead code: none" in out and "u: tensor" in out


def test_bad_program_exits_1_with_the_dsl_error(tmp_path, capsys):
    f = tmp_path / "bad.py"
    f.write_text("def f(w, g):\n    import os\n    return w\n")
    assert main(["rule", "check", str(f)]) == 1
    err = capsys.readouterr().err
    assert "line 2" in err and "Import statements are not allowed" in err


def test_missing_file_names_the_library(capsys):
    assert main(["rule", "simplify", "no_such_rule"]) == 1
    assert "library rules: sgd" in capsys.readouterr().err


def test_simplify_prints_parseable_simplified_source(raw_file, capsys):
    assert main(["rule", "simplify", str(raw_file)]) == 0
    out = capsys.readouterr().out
    assert dsl.parse(out) == dsl.simplify(dsl.parse(RAW))
    assert out.startswith("def raw(w, g, m, lr):")


def test_list(capsys):
    assert main(["rule", "list"]) == 0
    out = capsys.readouterr().out
    assert [line.split()[0] for line in out.splitlines()] == dsl.list_rules()


def test_export_writes_a_module(tmp_path, capsys):
    out = tmp_path / "lion_opt.py"
    assert main(["rule", "export", "lion", "-o", str(out), "--class-name", "MyLion"]) == 0
    text = out.read_text()
    assert "class MyLion" in text
    compile(text, str(out), "exec")  # valid Python
    assert "wrote" in capsys.readouterr().out
    assert main(["rule", "export", "lion", "--class-name", "not valid"]) == 1
