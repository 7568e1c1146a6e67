"""``optforge rule check|simplify|export|list``: the DSL's analysis and export from the shell.

``FILE`` is a path to a rule's source, or the name of a library rule (``lion``).
A bad program prints the ``DSLError`` (with line and column) and exits 1.
"""
from __future__ import annotations

import argparse
import ast
import os
import sys

import dsl
from dsl.discovered import DISCOVERED, PROVENANCE, RETIRED, provenance_line, retired_line
from dsl.export import export_python
from dsl.library import RULES
from search.core import did_you_mean

from .errors import CLIError


def _load(spec: str) -> tuple[dsl.Program, str]:
    """(program, where it came from); a file path wins over a library name."""
    if os.path.exists(spec):
        try:
            with open(spec, encoding="utf-8") as f:
                text = f.read()
        except (OSError, UnicodeDecodeError) as e:
            raise CLIError(f"cannot read {spec}: {e}") from None
        origin = spec
    elif spec in RULES:
        text, origin = RULES[spec], f"library rule {spec!r}"
    elif spec in DISCOVERED:
        text, origin = DISCOVERED[spec], f"discovered rule {spec!r}"
    elif spec in RETIRED:
        print(f"note: {spec} is retired: {RETIRED[spec]['reason']}", file=sys.stderr)
        text, origin = RETIRED[spec]["source"], f"retired rule {spec!r}"
    else:
        found = f"; discovered: {', '.join(DISCOVERED)}" if DISCOVERED else ""
        raise CLIError(f"{spec}: no such file, and not a library rule{did_you_mean(spec, [*RULES, *DISCOVERED])} "
                       f"(library rules: {', '.join(RULES)}{found})")
    try:
        return dsl.parse(text), origin
    except dsl.DSLError as e:
        raise CLIError(f"{origin}: {e}") from None


def cmd_check(args: argparse.Namespace) -> int:
    prog, origin = _load(args.file)
    report = dsl.check(prog)
    print(f"# {origin}")
    print(report.summary())
    simple = dsl.simplify(prog)
    if simple != prog:
        print(f"simplify: size {prog.size()} -> {simple.size()}, statements {len(prog.body)} -> "
              f"{len(simple.body)}, state tensors {len(prog.state_names)} -> {len(simple.state_names)} "
              "(run 'optforge rule simplify' to see it)")
    print(f"fingerprint: {dsl.fingerprint(prog)}")
    return 1 if args.strict and not report.clean else 0


def cmd_simplify(args: argparse.Namespace) -> int:
    prog, _ = _load(args.file)
    sys.stdout.write(dsl.simplify(prog).source())
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    prog, origin = _load(args.file)
    if args.simplify:
        prog = dsl.simplify(prog)
    class_name = args.class_name or dsl.class_name(prog.name)
    if not class_name.isidentifier():
        raise CLIError(f"--class-name {class_name!r} is not a valid Python class name")
    text = export_python(prog, class_name)
    if args.file in DISCOVERED and not os.path.exists(args.file):   # keep the provenance with the code
        text = "".join(f"# {ln}\n" if ln else "#\n" for ln in _docstring(DISCOVERED[args.file])) + text
    if args.output in (None, "-"):
        sys.stdout.write(text)
        return 0
    try:
        with open(args.output, "w", encoding="utf-8") as f:
            f.write(text)
    except OSError as e:
        raise CLIError(f"cannot write {args.output}: {e}") from None
    print(f"wrote {args.output}: class {class_name} from {origin} (fingerprint {dsl.fingerprint(prog)})")
    return 0


def _docstring(source: str) -> list[str]:
    """The provenance docstring of a discovered rule's source, as lines."""
    fn = ast.parse(source).body[0]
    return (ast.get_docstring(fn) or "").splitlines()


def cmd_list(args: argparse.Namespace) -> int:
    if args.discovered:
        if not DISCOVERED:
            print("no discovered rules shipped (dsl/discovered.py)" + (", retired:" if RETIRED else ""))
        for name in DISCOVERED:
            print(provenance_line(name) if name in PROVENANCE else name)
        for name in RETIRED:
            print(retired_line(name))
        return 0
    for name in dsl.list_rules():
        p = dsl.get_rule(name)
        hyper = ", ".join(f"{k}={v:g}" for k, v in p.hyperparams.items()) or "-"
        print(f"{name:14s} states: {', '.join(p.state_names) or '-':10s} hyperparameters: {hyper}")
    return 0


def register(subparsers) -> None:
    rule = subparsers.add_parser("rule", help="check, simplify, export or list update rules (the DSL)")
    sub = rule.add_subparsers(dest="rule_cmd", required=True)

    p = sub.add_parser("check", help="kinds, dead code, unused inputs, warnings and fingerprint of a rule")
    p.add_argument("file", metavar="FILE", help="rule source file, or a library rule name (e.g. lion)")
    p.add_argument("--strict", action="store_true", help="exit 1 when anything is reported")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("simplify", help="print the simplified rule (same update, smaller program)")
    p.add_argument("file", metavar="FILE", help="rule source file, or a library rule name")
    p.set_defaults(func=cmd_simplify)

    p = sub.add_parser("export", help="write a standalone torch optimizer module for a rule")
    p.add_argument("file", metavar="FILE", help="rule source file, or a library rule name")
    p.add_argument("-o", "--output", help="output .py file (default: standard output)")
    p.add_argument("--class-name", help="optimizer class name (default: from the rule's name)")
    p.add_argument("--simplify", action="store_true", help="simplify the rule before exporting")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("list", help="list the library's known rules")
    p.add_argument("--discovered", action="store_true", help="list the rules optforge's own campaigns found "
                   "(name first, then provenance and verified score)")
    p.set_defaults(func=cmd_list)
