"""Campaign files -> validated campaigns: the TOML file, the campaign model, the kind's own table,
the ``[llm]`` table, and the operator and strategy names (all checked before a run starts)."""
from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from search.llm import LLMConfig

from . import registry
from .campaign import Campaign, CampaignError


def _fmt_validation(e: ValidationError, where: str) -> str:
    lines = [f"{where}: invalid campaign ({e.error_count()} problem(s)):"]
    for err in e.errors():
        loc = ".".join(str(x) for x in err["loc"]) or "(top level)"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown field (check the spelling; see search/core/campaign.py for the allowed fields)"
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
        raise CampaignError(f"{where}: kind: unknown candidate kind {c.kind!r}; known: "
                            f"{sorted(registry.KINDS)} (a plug-in module registers more)")
    try:
        kind.validate(c)
    except ValidationError as e:
        raise CampaignError(_fmt_validation(e, where)) from None
    except CampaignError as e:
        raise CampaignError(f"{where}: {e}") from None
    except (ValueError, KeyError, TypeError) as e:
        raise CampaignError(f"{where}: {e}") from None
    if c.llm is not None:
        try:  # validated by the LLM package's own model
            LLMConfig.model_validate(c.llm)
        except ValidationError as e:
            msg = _fmt_validation(e, where).replace("\n  ", "\n  llm.")
            raise CampaignError(msg) from None
    for name in list(c.operators.random) + list(c.operators.llm) + list(c.operators.bandit.floors) \
            + list(c.operators.bandit.ceilings):
        if name not in registry.OPERATORS:
            raise CampaignError(f"{where}: operators: unknown operator {name!r}; known: "
                                f"{sorted(registry.OPERATORS)}")
    if c.search.strategy not in registry.STRATEGIES:
        raise CampaignError(f"{where}: search.strategy: unknown strategy {c.search.strategy!r}; known: "
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
