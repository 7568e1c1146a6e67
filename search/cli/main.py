"""The ``optforge`` command: the parser and the entry point. Each verb group lives in its own module
with ``register(subparsers)``; adding a verb means adding a module and listing it in ``VERB_MODULES``."""
from __future__ import annotations

import argparse
import sys
from importlib import metadata

from . import check, llm, noise, results, rule, run, verify
from . import eval as eval_verb
from .errors import EXIT_USER_ERROR, CLIError

#: The verb groups, in the order ``optforge --help`` lists them.
VERB_MODULES = (rule, eval_verb, noise, llm, check, run, results, verify)


def _version() -> str:
    """The installed distribution's version (the source tree's when run uninstalled)."""
    try:
        return metadata.version("optforge")
    except metadata.PackageNotFoundError:
        return "unknown (not installed; pip install -e .)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="optforge", description="Discover optimizers and prompts with "
                                     "evolution and LLMs.")
    parser.add_argument("--version", action="version", version=f"optforge {_version()}")
    sub = parser.add_subparsers(dest="verb", required=True)
    for mod in VERB_MODULES:
        mod.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except CLIError as e:
        print(f"optforge {args.verb}: {e}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
