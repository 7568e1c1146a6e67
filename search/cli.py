"""The ``optforge`` command. Each verb lives in its own module with ``register(subparsers)``."""
from __future__ import annotations

import argparse
import importlib
import sys

#: Modules that add verbs; a module that is missing is skipped (so the CLI grows with the project).
VERB_MODULES = ["search.cli_rule", "search.cli_eval", "search.cli_llm", "search.cli_run"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="optforge", description="Discover optimizers and prompts with "
                                     "evolution and LLMs.")
    sub = parser.add_subparsers(dest="verb", required=True)
    for name in VERB_MODULES:
        try:
            mod = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name == name:
                continue
            raise
        mod.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
