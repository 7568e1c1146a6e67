"""The campaign model: one TOML file, validated by pydantic, that says everything about a search.

Every table forbids unknown fields, so a typo is an error naming the field and the file,
never a silently ignored setting. Load with ``search.core.loading.load_campaign`` (``tomllib``), or build a
:class:`Campaign` in code (tests do).

A minimal rule campaign::

    name = "demo"
    seed_rules = ["adamw"]          # library names (dsl.library) or paths to .py rule files
    tasks = ["quadratic"]
    fidelities = ["tiny", "small"]  # the funnel: cheapest first

    [budget]
    evaluations = 60                # evaluation units (see Budget)

Kind tables: a campaign's own settings for its kind go in the table named after the kind
(``kind = "prompt"`` -> ``[prompt]``; a plug-in kind ``"toy"`` -> ``[toy]``). The model keeps it as
a dict (``campaign.table``); the kind plugin registered under that name
(``search.core.register_kind``) parses it with its ``options_model`` and attaches the result
(``campaign.options``). A dump (``model_dump``, what a run stores) writes the table back under
the kind's name. Sub-tables owned by other packages (``[llm]`` -> ``search.llm.LLMConfig``,
``[evaluator]`` -> the evaluator's config) are validated by those models at load time too.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SerializerFunctionWrapHandler,
    field_validator,
    model_serializer,
    model_validator,
)

from .bandit import BanditConfig
from .race import Mode, RaceConfig
from .ranking import ValidationConfig, VerifyConfig


class CampaignError(ValueError):
    """A campaign file that cannot be used; the message names the file and the bad field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Budget(_Strict):
    """When the campaign stops: whichever limit is reached first.

    ``evaluations`` counts *evaluation units*: each finished training evaluation of one
    candidate at one fidelity costs ``fidelity_cost[fidelity]`` units (1 for every fidelity
    unless set), seed rules and funnel promotions included. Results reused from the cache
    (a fingerprint already evaluated) cost nothing. The empirical simplification of winners
    after the search has its own cap (``simplify.max_evaluations``) and is recorded apart.
    """
    evaluations: int = Field(100, ge=1)
    wall_seconds: float | None = Field(None, gt=0)
    llm_calls: int | None = Field(None, ge=0)
    fidelity_cost: dict[str, float] = Field(default_factory=dict)

    @field_validator("fidelity_cost")
    @classmethod
    def _positive(cls, v: dict[str, float]) -> dict[str, float]:
        for k, c in v.items():
            if not c > 0:
                raise ValueError(f"fidelity_cost[{k!r}] must be > 0, got {c}")
        return v


class SearchConfig(_Strict):
    """Population loop settings (see search.core.strategies for what each strategy does)."""
    strategy: str = "regularized"       # a name in search.core.STRATEGIES
    population: int = Field(16, ge=1)   # population size (mu for elitist/nsga2)
    tournament: int = Field(4, ge=1)    # tournament size for parent selection
    batch_size: int = Field(2, ge=1)    # children per generation (evaluated together)
    child_bonus: float = Field(0.1, ge=0)  # ShinkaEvolve-style bonus for parents with few children
    patience: int | None = Field(None, ge=1)  # evaluations without a new best -> restart from best
    max_retries: int = Field(8, ge=0)   # re-mutations of a duplicate child before reusing its result
    selection_fidelity: Literal["highest", "screen"] = "highest"
    objectives: list[Literal["score", "size", "state"]] = Field(
        default_factory=lambda: ["score", "size", "state"])  # nsga2 only
    params: dict[str, Any] = Field(default_factory=dict)  # free settings for plug-in strategies
    # propose generation g+1 (its LLM requests sent in the background) while g trains; not the same
    # run as the sequential loop (parents lag one generation): search.core.pipeline
    pipeline: bool = False


class FunnelConfig(_Strict):
    """Screen at the cheapest fidelity; promote the top fraction to each next fidelity.

    A candidate is promoted from level i to i+1 when its score at level i is at least the
    ``1 - promote_fraction`` quantile of all ok scores seen at level i so far (this batch
    included). Seed rules are evaluated at every level.

    ``[funnel.rungs]`` (kinds with tasks, e.g. rules): tasks that join the search's at a fidelity and
    every one above it, ``small = ["lm_m"]``: screen on the cheap tasks, promote to larger models (the
    Lion paper's funnel). A rung's evaluations cost more: weigh them with ``[budget] fidelity_cost``.
    """
    promote_fraction: float = Field(0.25, gt=0, le=1)
    rungs: dict[str, list[str]] = Field(default_factory=dict)
    # "race": those promoted to the top fidelity then race the incumbent on more seeds ([funnel.race],
    # search.core.race); "quantile": the promotion rule above alone
    mode: Mode = "race"
    race: RaceConfig = Field(default_factory=RaceConfig)


class OperatorMix(_Strict):
    """Which operators make children, and how often.

    ``llm_share`` is the probability that a child comes from an LLM operator (when an LLM is
    configured and its budget not spent); the rest come from the random operators. Within each
    group, operators are drawn with the given relative weights (names registered in
    search.core.OPERATORS; a weight of 0 disables one).

    ``[operators.bandit]`` (search.core.bandit) replaces this fixed mix by adaptive choice
    (``algorithm = "ucb"`` or ``"thompson"``: shares follow each operator's improvement per
    second, within per-operator floors and ceilings); the default ``"fixed"`` is the mix above.
    """
    llm_share: float = Field(0.0, ge=0, le=1)
    random: dict[str, float] = Field(default_factory=dict)  # empty -> the kind's defaults
    llm: dict[str, float] = Field(default_factory=dict)     # empty -> the kind's defaults
    bandit: BanditConfig = Field(default_factory=BanditConfig)

    @model_validator(mode="after")
    def _weights(self) -> "OperatorMix":
        for group in ("random", "llm"):
            for k, w in getattr(self, group).items():
                if w < 0:
                    raise ValueError(f"operators.{group}[{k!r}] must be >= 0, got {w}")
        return self


class LLMOpsConfig(_Strict):
    """How the search uses the LLM (the backend itself is the [llm] table)."""
    grammar: bool = True          # ask for grammar-constrained decoding (grammar="dsl")
    temperature: float = Field(0.8, ge=0)
    max_tokens: int = Field(256, ge=16)  # an AdamW-sized program is ~150 tokens
    top_k: int = Field(3, ge=0)   # top programs shown in the prompt
    repair: bool = True           # one repair request with the DSLError
    hints: bool = True            # each mutation request names one concrete change (search.rules.llm_ops)
    max_consecutive_errors: int = Field(3, ge=1)  # backend errors in a row -> stop using the LLM


class SimplifyConfig(_Strict):
    """Empirical simplification of the winners (the Lion paper's procedure)."""
    enabled: bool = True
    top: int = Field(1, ge=0)                    # how many of the final top rules to simplify
    tolerance: float = Field(0.01, ge=0)         # accepted score drop at the highest fidelity
    max_evaluations: int = Field(30, ge=0)       # cap on evaluations spent simplifying
    digits: list[int] = Field(default_factory=lambda: [1, 2, 3])  # significant digits tried


class BankConfig(_Strict):
    """``[bank]``: train on procedurally sampled tasks (``proxies.sample_tasks``) instead of a fixed list.

    ``families`` (default: every bank family installed) are split, by family and seeded by the
    campaign's ``random_seed``, into search, validation and test families (or give
    ``search_families`` / ``validation_families`` / ``test_families`` yourself). Each generation
    draws ``per_generation`` fresh search tasks (seeded by campaign seed and generation: a resumed
    run redraws the same); the ``validation`` and ``test`` banks are fixed per campaign and recorded
    in the run. Task scores are aggregated with ``aggregate``. Every ``track_every`` generations the
    current best is scored on the validation bank at ``track_fidelity`` (default: the cheapest);
    search fitness rising while validation falls over the last ``overfit_window`` of those points is
    reported as a ``meta_overfitting`` event. Named ``search_tasks`` / ``validation_tasks`` are
    added to the bank's."""
    families: list[str] | None = None
    search_families: list[str] | None = None
    validation_families: list[str] | None = None
    test_families: list[str] | None = None
    per_generation: int = Field(3, ge=1)
    validation: int = Field(4, ge=1)
    test: int = Field(4, ge=0)
    aggregate: Literal["iqm", "mean"] = "iqm"
    track_every: int = Field(5, ge=0)        # 0: no validation tracking
    track_fidelity: str | None = None
    overfit_window: int = Field(4, ge=2)


class LoggingConfig(_Strict):
    """``[logging]``: what a run writes for other tools (search.core.events). ``events.jsonl`` and
    ``hall_of_fame.csv`` are always written; TensorBoard event files when ``tensorboard`` is true (into
    ``tensorboard_dir``, default ``<run dir>/tensorboard``). Changing these never changes a run's results,
    so a resumed run may change them."""
    tensorboard: bool = False
    tensorboard_dir: str | None = None
    hall_of_fame: int = Field(50, ge=1)   # rows of hall_of_fame.csv


class Campaign(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    kind: str = "rule"
    random_seed: int = 0
    seed_rules: list[str] = Field(default_factory=lambda: ["adamw"])
    # -- evaluator (rules): passed to the evaluator's config; None = the evaluator's default --
    # rules: ``search_tasks`` screen and promote, ``validation_tasks`` (disjoint) rank the simplified
    # winners (search.core.selection); None = the disjoint default groups (proxies.TASK_GROUPS).
    # ``tasks`` is the older name of ``search_tasks``: given alone, there is no validation stage.
    tasks: list[str] | None = None
    search_tasks: list[str] | None = None
    validation_tasks: list[str] | None = None
    fidelities: list[str] | None = None
    lrs: list[float] | None = None
    eval_seeds: list[int] | None = None
    executor: str | None = None
    evaluator: dict[str, Any] = Field(default_factory=dict)  # any other evaluator config field
    # -- search --
    budget: Budget = Field(default_factory=Budget)
    search: SearchConfig = Field(default_factory=SearchConfig)
    funnel: FunnelConfig = Field(default_factory=FunnelConfig)
    operators: OperatorMix = Field(default_factory=OperatorMix)
    llm: dict[str, Any] | None = None        # search.llm.LLMConfig fields; None = no LLM
    llm_ops: LLMOpsConfig = Field(default_factory=LLMOpsConfig)
    simplify: SimplifyConfig = Field(default_factory=SimplifyConfig)
    validation: ValidationConfig = Field(default_factory=ValidationConfig)
    verify: VerifyConfig = Field(default_factory=VerifyConfig)   # ``optforge verify`` (reporting only)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)   # events.jsonl, hall of fame, TensorBoard
    bank: BankConfig | None = None           # sampled training tasks (rules; search.rules.tasksets)
    run_dir: str | None = None               # default runs/<name>/
    plugins: list[str] = Field(default_factory=list)  # modules imported first (they register things)
    #: the ``[<kind>]`` table as given (parsed by the kind plugin's ``options_model``)
    table: dict[str, Any] | None = None

    _options: Any = PrivateAttr(default=None)
    _source: str = PrivateAttr(default="")

    @model_validator(mode="before")
    @classmethod
    def _kind_table(cls, data: Any) -> Any:
        """Take the table named after the campaign's kind as ``table`` (any kind, no list of names)."""
        if isinstance(data, dict):
            kind = data.get("kind", "rule")
            if isinstance(kind, str) and kind in data and kind not in cls.model_fields:
                data = dict(data)
                data["table"] = data.pop(kind)
        return data

    @model_serializer(mode="wrap")
    def _dump(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """The kind's table goes back under the kind's name (what the campaign file says)."""
        d = handler(self)
        if isinstance(d, dict) and "table" in d:
            table = d.pop("table")
            if table is not None:
                d[self.kind] = table
        return d

    @property
    def options(self) -> Any:
        """The kind-specific table parsed by the kind plugin (None when it has no model)."""
        return self._options

    def set_options(self, options: Any) -> None:
        """Attach the kind's parsed table (``KindPlugin.validate`` does; code building a campaign may)."""
        self._options = options

    @property
    def source_path(self) -> str:
        """The file the campaign was loaded from ("" when built in code); relative paths resolve from it."""
        return self._source

    def set_source(self, where: str) -> None:
        self._source = where

    def resolved_run_dir(self, base: str | Path = ".") -> Path:
        return Path(base) / (self.run_dir or f"runs/{self.name}")

    def fidelity_cost(self, fidelity: str) -> float:
        return float(self.budget.fidelity_cost.get(fidelity, 1.0))
def with_defaults(stored: dict, defaults: dict) -> dict:
    """A stored campaign dump with the fields it lacks taken from ``defaults`` (nested tables too);
    a stored None that the model no longer has is dropped. Resuming a run started before a field
    existed compares that field as its default."""
    out = dict(defaults)
    for k, v in stored.items():
        if isinstance(v, dict) and isinstance(defaults.get(k), dict):
            out[k] = with_defaults(v, defaults[k])
        elif v is not None or k in defaults:
            out[k] = v
    return out


