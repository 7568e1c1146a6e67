"""Registries of operators, strategies and candidate kinds, and how their modules are found.

Built-in plug-ins live in subpackages that import ``search.core``, so core finds them by module
name (``BUILTIN_MODULES``, ``KIND_MODULES``) rather than importing them: core never depends on
a kind.
"""
from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from typing import Any

from .campaign import Campaign
from .plugins import KindPlugin, Operator, Strategy

OperatorFactory = Callable[[Campaign], Operator]
StrategyFactory = Callable[[Campaign], Strategy]

OPERATORS: dict[str, OperatorFactory] = {}
STRATEGIES: dict[str, StrategyFactory] = {}
KINDS: dict[str, KindPlugin] = {}
#: Module that registers each built-in kind (imported on first use; an import error propagates).
KIND_MODULES: dict[str, str] = {"rule": "search.rules", "prompt": "search.prompts"}
#: Modules with the built-in operators and strategies.
BUILTIN_MODULES = ("search.core.strategies", "search.rules")
_builtins_loaded = False


def register_operator(name: str, factory: OperatorFactory | None = None):
    """Register an operator factory (usable as a decorator on a class taking ``campaign``)."""
    def deco(f):
        OPERATORS[name] = f
        return f
    return deco(factory) if factory is not None else deco


def register_strategy(name: str, factory: StrategyFactory | None = None):
    def deco(f):
        STRATEGIES[name] = f
        return f
    return deco(factory) if factory is not None else deco


def register_kind(plugin: KindPlugin) -> KindPlugin:
    """Register a kind under ``plugin.name`` (its campaign table is ``[<name>]``, so the name must not
    be a campaign field such as ``budget``)."""
    if not plugin.name or plugin.name in Campaign.model_fields:
        raise ValueError(f"kind name {plugin.name!r} is empty or a campaign field; choose another name")
    KINDS[plugin.name] = plugin
    return plugin


def _ensure_builtins() -> None:
    global _builtins_loaded
    if not _builtins_loaded:
        _builtins_loaded = True
        for m in BUILTIN_MODULES:
            importlib.import_module(m)


def load_plugins(modules: Sequence[str] = ()) -> None:
    """Import the built-ins and the given plug-in modules (they register themselves)."""
    _ensure_builtins()
    for m in modules:
        importlib.import_module(m)


class UnknownKindError(KeyError):
    """No registered kind has this name (the module that registers it was not imported)."""


def run_kind(view: Any) -> KindPlugin:
    """The kind of a stored run (a ``RunView``), importing the plug-in modules its campaign lists first."""
    load_plugins(view.campaign.get("plugins") or ())
    return get_kind(view.kind)


def get_kind(name: str, missing_ok: bool = False) -> KindPlugin | None:
    _ensure_builtins()
    if name not in KINDS and name in KIND_MODULES:
        importlib.import_module(KIND_MODULES[name])
    if name not in KINDS:
        if missing_ok:
            return None
        raise UnknownKindError(f"unknown candidate kind {name!r}; known: {sorted(KINDS)}")
    return KINDS[name]
