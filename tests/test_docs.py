"""The README's and the docs' code blocks stay in step with the code.

Every ``optforge ...`` line in a shell block parses with the real command-line parser, every ``make``
target exists, every Python block compiles (update rules also parse and check as DSL), every TOML block
loads, and the README's training-loop example runs for real.
"""
from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path

import pytest

import dsl
from search.cli.main import build_parser

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)


def blocks(lang: str) -> list[tuple[str, str]]:
    out = []
    for path in DOCS:
        for m in FENCE.finditer(path.read_text()):
            if m.group(1) == lang:
                out.append((path.name, m.group(2)))
    return out


def shell_commands() -> list[tuple[str, list[str]]]:
    cmds = []
    for name, text in blocks("bash"):
        for line in re.sub(r"\\\n\s*", " ", text).splitlines():   # join continued lines
            line = line.split(" #", 1)[0].strip()
            if line.startswith(("optforge ", "make ")):
                cmds.append((name, shlex.split(line)))
    return cmds


def test_docs_exist_and_readme_is_one_screen():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 110, "the README is the front door: keep it to about one screen"
    for link in re.findall(r"\]\((docs/[\w.-]+\.md)\)", readme):
        assert (ROOT / link).is_file(), f"README links to missing {link}"
    for path in DOCS:
        text = path.read_text()
        assert not re.search(r"\bissue \d+|\bsession\b", text, re.I), f"{path.name} talks about how it was built"
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", text):
            assert (path.parent / target).exists(), f"{path.name} links to missing {target}"


@pytest.mark.parametrize("name,argv", shell_commands(), ids=lambda x: " ".join(x) if isinstance(x, list) else x)
def test_shell_lines_parse(name, argv):
    if argv[0] == "make":
        targets = re.findall(r"^([\w-]+):", (ROOT / "Makefile").read_text(), re.M)
        assert argv[1] in targets, f"{name}: make {argv[1]} is not a Makefile target"
        return
    try:
        build_parser().parse_args(argv[1:])
    except SystemExit as e:
        pytest.fail(f"{name}: '{' '.join(argv)}' does not parse (exit {e.code})")


@pytest.mark.parametrize("name,text", blocks("python"), ids=lambda x: x[:40] if isinstance(x, str) else x)
def test_python_blocks_compile(name, text):
    compile(text, name, "exec")
    if re.match(r"def \w+\(w, g", text.lstrip()):
        dsl.check(dsl.parse(text))


@pytest.mark.parametrize("name,text", blocks("toml"), ids=lambda x: x[:40] if isinstance(x, str) else x)
def test_toml_blocks_load(name, text):
    tomllib.loads(text)


def test_readme_training_loop_runs():
    code = next(t for _, t in blocks("python") if "opt.step()" in t)
    ns: dict = {}
    exec(compile(code, "README.md", "exec"), ns)
    opt = ns["opt"]
    state = next(iter(opt.state.values()))
    assert state, "the optimizer stepped and holds state"
