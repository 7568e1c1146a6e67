"""Campaign files -> validated campaigns: the TOML file, the campaign model, the kind's own table,
the ``[llm]`` table, and the operator and strategy names (all checked before a run starts)."""
from __future__ import annotations

import tomllib
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from evaluators import RuleEvalConfig
from search.llm import LLMConfig

from . import registry
from .campaign import Campaign, CampaignError
from .suggest import close_names, did_you_mean


def _model_at(root: type[BaseModel], path: tuple) -> type[BaseModel] | None:
    """The pydantic model that holds the field at ``path`` (its table), or None (a free dict)."""
    model: Any = root
    for part in path:
        field = model.model_fields.get(part) if isinstance(part, str) else None
        if field is None:
            return None
        ann = field.annotation
        cands = [ann, *typing.get_args(ann)]
        model = next((a for a in cands if isinstance(a, type) and issubclass(a, BaseModel)), None)
        if model is None:
            return None
    return model


def _unknown_key(root: type[BaseModel] | None, loc: tuple, prefix: tuple = ()) -> str:
    """An unknown key's message: the table's allowed keys and the nearest one (or the sub-table that
    has a key of that name, e.g. ``population`` belongs in ``[search]``)."""
    table = _model_at(root, loc[:-1]) if root is not None else None
    if table is None:
        return "unknown field (check the spelling)"
    allowed = sorted(k for k in table.model_fields if not (table is Campaign and k == "table"))
    word = str(loc[-1])
    hint = did_you_mean(word, allowed)
    if not hint:
        subs = {f"[{k}] {f}": f for k in allowed if (m := _model_at(table, (k,))) is not None for f in m.model_fields}
        near = close_names(word, subs.values())
        if near:
            hint = f" (did you mean {next(k for k, f in subs.items() if f == near[0])}?)"
    path = prefix + tuple(loc[:-1])
    where = "at the top level" if not path else "in [" + ".".join(str(x) for x in path) + "]"
    return f"unknown field{hint}; allowed {where}: {', '.join(allowed)}"


#: models a kind validates a campaign table with (by the error's model name): the table they read
NESTED_TABLES: dict[str, tuple[type[BaseModel], tuple]] = {"RuleEvalConfig": (RuleEvalConfig, ("evaluator",))}


def _fmt_validation(e: ValidationError, where: str, root: type[BaseModel] = Campaign, prefix: tuple = ()) -> str:
    lines = [f"{where}: invalid campaign ({e.error_count()} problem(s)):"]
    table_root = root if e.title == root.__name__ else None   # another model's error (e.g. the evaluator's)
    if table_root is None and e.title in NESTED_TABLES:
        table_root, prefix = NESTED_TABLES[e.title]
    for err in e.errors():
        loc = ".".join(str(x) for x in err["loc"]) or "(top level)"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = _unknown_key(table_root, tuple(err["loc"]), prefix)
        elif err["type"] == "missing":
            msg = "required field is missing"
        lines.append(f"  {loc}: {msg}")
    return "\n".join(lines)


def parse_campaign(data: dict[str, Any], where: str = "<campaign>") -> Campaign:
    """Validate a campaign dict (the TOML's content) and the kind-specific and plugin tables."""
    kind_name = data.get("kind", "rule")
    for other in sorted(set(registry.KINDS) | set(registry.KIND_MODULES)):
        if other != kind_name and isinstance(data.get(other), dict):
            raise CampaignError(f"{where}: [{other}] table given in a {kind_name!r} campaign: set "
                                f"kind = \"{other}\" to use it, or remove the table")
    try:
        c = Campaign.model_validate(data)
    except ValidationError as e:
        raise CampaignError(_fmt_validation(e, where)) from None
    c.set_source(where)
    try:
        registry.load_plugins(c.plugins)
    except ImportError as e:
        raise CampaignError(f"{where}: plugins: cannot import {e.name or e}: {e}") from None
    kind = registry.get_kind(c.kind, missing_ok=True)
    if kind is None:
        raise CampaignError(f"{where}: kind: unknown candidate kind {c.kind!r}"
                            f"{did_you_mean(c.kind, registry.KINDS)}; known: {sorted(registry.KINDS)} "
                            "(a plug-in module registers more)")
    try:
        kind.validate(c)
    except ValidationError as e:
        root = kind.options_model if isinstance(kind.options_model, type) else Campaign
        raise CampaignError(_fmt_validation(e, where, root, () if root is Campaign else (c.kind,))) from None
    except CampaignError as e:
        raise CampaignError(f"{where}: {e}") from None
    except (ValueError, KeyError, TypeError) as e:
        raise CampaignError(f"{where}: {e}") from None
    if c.llm is not None:
        try:  # validated by the LLM package's own model
            LLMConfig.model_validate(c.llm)
        except ValidationError as e:
            msg = _fmt_validation(e, where, LLMConfig, ("llm",)).replace("\n  ", "\n  llm.")
            raise CampaignError(msg) from None
    for name in list(c.operators.random) + list(c.operators.llm) + list(c.operators.bandit.floors) \
            + list(c.operators.bandit.ceilings):
        if name not in registry.OPERATORS:
            raise CampaignError(f"{where}: operators: unknown operator {name!r}"
                                f"{did_you_mean(name, registry.OPERATORS)}; known: {sorted(registry.OPERATORS)}")
    if c.search.strategy not in registry.STRATEGIES:
        raise CampaignError(f"{where}: search.strategy: unknown strategy {c.search.strategy!r}"
                            f"{did_you_mean(c.search.strategy, registry.STRATEGIES)}; known: "
                            f"{sorted(registry.STRATEGIES)}")
    return c


def load_campaign(path: str | Path) -> Campaign:
    """Read and validate a campaign TOML file; errors name the file and the field."""
    p = Path(path)
    if not p.is_file():
        raise CampaignError(f"{p}: campaign file not found")
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise CampaignError(f"{p}: not valid TOML: {e}") from None
    except UnicodeDecodeError as e:
        raise CampaignError(f"{p}: not UTF-8 text: {e}") from None
    return parse_campaign(data, str(p))
