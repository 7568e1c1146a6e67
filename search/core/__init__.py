"""The search core: candidate types, the plug-in contracts and registries, the loop, campaigns, runs.

- ``types``: ``Individual`` (a candidate in the search), ``Proposal`` (an operator's output),
  ``Job`` (a planned child), ``InvalidCandidate``, ``Stats``, ``RunSummary``;
- ``plugins``: the contracts a kind (``KindPlugin``), an operator (``Operator``) and a strategy
  (``Strategy``) implement, ``Context`` (what operators and strategies see of the engine) and
  ``EngineView`` (what kinds and the helpers below are given); ``registry``: ``register_kind /
  register_operator / register_strategy`` and the lookups (``get_kind``, ``load_plugins``);
- ``engine``: ``Engine`` (the loop, novelty check) and ``run_campaign``; its funnel (``funnel``:
  evaluation at each fidelity, promotion), operator choice (``engine_operators``), LLM gate
  (``engine_llm``) and checkpoints (``checkpoint``: its state after each generation, resume) are
  mixins of their own; ``simplify``: empirical
  simplification of the winners (generic over kinds); ``selection``: the validation stage;
  ``ranking``: the final ranking (pure), the ``[validation]`` / ``[verify]`` settings and a score as
  shown (``fmt_score``, ``fmt_won``);
- ``campaign``: the campaign model (pydantic); ``loading``: ``load_campaign`` / ``parse_campaign``
  (TOML -> a validated campaign, kind and plug-in tables included); ``suggest``: did-you-mean for names;
- ``events``: what a run writes beside its store (``events.jsonl``, ``hall_of_fame.csv``, TensorBoard);
- ``store``: ``RunStore`` (the run's SQLite file) and ``RunView`` (a finished or running run, read-only);
- ``strategies``: the built-in strategies (regularized evolution, elitist, NSGA-II);
- ``bandit``: adaptive operator choice (``[operators.bandit]``: UCB / Thompson shares over the
  operators, their statistics); ``operator_choice``: what each proposal earned and cost;
  ``pipeline``: pipelined generations (``[search] pipeline``: LLM requests overlap training).

Core never imports a kind: the built-in kinds (search.rules, search.prompts) import core and
register themselves; core finds them by module name (``registry.KIND_MODULES``).
"""
from .bandit import BanditConfig, BanditError, OperatorBandit, operator_table, share_points
from .campaign import (
    Budget,
    Campaign,
    CampaignError,
    FunnelConfig,
    LLMOpsConfig,
    OperatorMix,
    SearchConfig,
    SimplifyConfig,
)
from .engine import Engine, run_campaign
from .events import EVENTS_FILE, HALL_OF_FAME_FILE, RunLog, curves_to_tensorboard, read_events
from .loading import load_campaign, parse_campaign
from .plugins import Context, EngineView, KindPlugin, Operator, Strategy
from .ranking import fmt_score, fmt_won
from .registry import (
    KINDS,
    OPERATORS,
    STRATEGIES,
    UnknownKindError,
    get_kind,
    load_plugins,
    register_kind,
    register_operator,
    register_strategy,
    run_kind,
)
from .simplify import simplify_one
from .store import DB_NAME, RunStore, RunView, StoreError, db_path
from .strategies import pareto_front
from .suggest import close_names, did_you_mean
from .types import Individual, InvalidCandidate, Job, Progress, Proposal, RunExistsError, RunSummary, Stats

__all__ = ["simplify_one",
           "Budget", "Campaign", "CampaignError", "FunnelConfig", "LLMOpsConfig", "OperatorMix", "SearchConfig",
           "SimplifyConfig", "Context", "EngineView", "Engine", "run_campaign", "load_campaign", "parse_campaign",
           "KindPlugin", "Operator", "Strategy", "KINDS", "OPERATORS", "STRATEGIES", "get_kind", "load_plugins",
           "register_kind", "register_operator", "register_strategy", "run_kind", "UnknownKindError", "DB_NAME",
           "RunStore", "RunView", "StoreError", "db_path", "Individual", "InvalidCandidate", "Job", "Progress",
           "Proposal", "RunExistsError", "RunSummary", "Stats", "BanditConfig", "BanditError", "OperatorBandit",
           "operator_table", "share_points", "pareto_front", "fmt_score", "fmt_won", "close_names", "did_you_mean",
           "EVENTS_FILE", "HALL_OF_FAME_FILE", "RunLog", "read_events", "curves_to_tensorboard"]
