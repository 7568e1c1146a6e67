"""The plug-in contracts: candidate kinds, operators and strategies.

A new **candidate kind**: subclass ``KindPlugin`` and ``register_kind(MyKind())``. It says how
to validate its campaign table (``options_model`` parses the ``[<kind>]`` table), build its
``Evaluator`` (evaluators.Evaluator, whose ``key()`` is the novelty/cache key), produce seed
texts, normalize (validate + canonicalize) a proposal, describe it (meta for objectives and
display), simplify winners, export, and what ``optforge show`` / ``report`` add for its runs.
Every hook the engine and the CLI call is declared on ``KindPlugin`` with a default; a kind
overrides what differs. The module that registers a built-in kind is found by
``registry.KIND_MODULES`` (``"prompt" -> "search.prompts"``); any other kind's module is listed
in the campaign's ``plugins = ["my.module"]`` (a run records it, so show / export / report
import it again).

A new **operator**: subclass ``Operator`` (``name``, ``arity`` = parents per child,
``uses_llm``, ``kinds``: the kinds it applies to, empty for any) and implement
``propose(ctx, parent_groups) -> list[Proposal]`` (one proposal per parent group, in order; a
failed one has ``text=None`` and a ``reason``). Register
a factory ``register_operator("name", lambda campaign: MyOp(...))``; campaigns then name it in
``[operators] random = {...}`` or ``llm = {...}`` with a weight. LLM operators call
``ctx.llm_chat(requests)``, which counts calls against the budget, records each call in the
store and returns ``None`` when the LLM is unavailable (budget spent, backend down).

A new **strategy**: subclass ``Strategy``, implement ``plan(ctx, n) -> list[Job]`` (parent
selection + operator choice; ``ctx.choose_operator()`` draws from the campaign's mix) and
``survive(ctx, population, children) -> list[Individual]``; keep any state in
``self.state`` (a JSON-able dict, checkpointed). Register with
``register_strategy("name", lambda campaign: MyStrategy(campaign))`` and select it with
``[search] strategy = "name"`` (free settings in ``[search] params``).

Everything an operator or strategy needs is on ``Context``: the campaign, the kind plugin,
the seeded ``rng`` (use only this one: it is checkpointed, which makes runs reproducible and
resumable), the population, the history of evaluated individuals, ``fitness(ind)``,
``top(k)``, ``llm_chat``, ``event``.

``Context`` lives here because the contracts and it name each other; so does ``EngineView``, the
part of the engine that ``KindPlugin.finalize`` and the core's helper modules (simplify,
selection, pipeline, operator_choice) are given. With both here, no module of ``search.core``
imports the engine module (the package ``__init__`` aside): its imports form no circle.
"""
from __future__ import annotations

import abc
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from evaluators.base import EvalResult, Evaluator
from evaluators.llm import LLM

from .bandit import OperatorBandit
from .campaign import Campaign
from .store import RunStore
from .types import Individual, Job, Proposal


class Operator(abc.ABC):
    """Makes children from parents. Must use ``ctx.rng`` for randomness (reproducibility)."""
    name: str = ""
    arity: int = 1
    uses_llm: bool = False
    #: the candidate kinds it makes children for (documentation for campaign authors; empty: any)
    kinds: tuple[str, ...] = ()

    @abc.abstractmethod
    def propose(self, ctx: Context, parent_groups: list[list[Individual]]) -> list[Proposal]:
        """One Proposal per parent group, in order."""


class Strategy(abc.ABC):
    """Parent selection, operator choice and survival. ``state`` is checkpointed."""
    name: str = ""

    def __init__(self, campaign: Campaign):
        self.campaign = campaign
        self.state: dict[str, Any] = {}

    @abc.abstractmethod
    def plan(self, ctx: Context, n: int) -> list[Job]:
        """Up to ``n`` jobs for the next generation."""

    @abc.abstractmethod
    def survive(self, ctx: Context, population: list[Individual],
                children: list[Individual]) -> list[Individual]:
        """The next population (evaluated children are given in creation order)."""

    def restart(self, ctx: Context, best: Individual) -> list[Individual]:
        """Population after a stall: the best alone (children refill it)."""
        return [best]


class KindPlugin(abc.ABC):
    """Everything that differs between candidate kinds (rules, prompts, a plug-in's own)."""
    #: the registered name: ``kind = "<name>"`` in a campaign, its table is ``[<name>]``
    name: str = ""
    #: pydantic model for the campaign's ``[<name>]`` table, or None (then the table must be absent)
    options_model: Any = None
    #: default operator mixes when the campaign's [operators] tables are empty
    default_random_ops: dict[str, float] = {}
    default_llm_ops: dict[str, float] = {}
    #: what ``optforge show`` and the report call the score ("score vs tuned AdamW" for rules)
    score_label: str = "score"
    #: how the live view highlights a candidate's text (a pygments lexer name: "python", "text")
    syntax: str = "text"
    #: whether ``[funnel.rungs]`` (tasks added per fidelity) means something for this kind
    supports_rungs: bool = False

    def validate(self, campaign: Campaign) -> None:
        """Check the campaign for this kind; parse its ``[<name>]`` table into ``campaign.options``."""
        if campaign.funnel.rungs and not self.supports_rungs:
            raise ValueError(f"[funnel.rungs]: the {self.name!r} kind has no tasks to add per fidelity; "
                             "remove the table")
        if self.options_model is not None:
            campaign.set_options(self.options_model.model_validate(campaign.table or {}))
        elif campaign.table:
            raise ValueError(f"[{self.name}] table given but kind {self.name!r} takes no options")

    @abc.abstractmethod
    def make_evaluator(self, campaign: Campaign, run_dir: Path) -> Evaluator:
        ...

    @abc.abstractmethod
    def seed_texts(self, campaign: Campaign) -> list[tuple[str, str]]:
        """(label, text) of the initial candidates."""

    @abc.abstractmethod
    def normalize(self, text: str) -> str:
        """Validate and canonicalize; raise InvalidCandidate(reason) when unusable."""

    def describe(self, text: str) -> dict[str, Any]:
        """Facts about a (canonical) text for objectives and display, e.g. size."""
        return {"size": len(text)}

    def objectives(self, ind: Individual, names: Sequence[str]) -> tuple[float, ...]:
        """Values for multi-objective selection, in ``names`` order (weights in strategies)."""
        out = []
        for n in names:
            out.append(ind.score if n == "score" else float(ind.meta.get(n, 0)))
        return tuple(out)

    def simplify_exact(self, text: str) -> str:
        """A cheaper equivalent form (same function); default: unchanged."""
        return text

    def ablations(self, text: str, digits: Sequence[int]) -> list[tuple[str, str]]:
        """(description, text) simplifications to try empirically; default none."""
        return []

    def export(self, text: str, out: Path, *, name: str, info: dict[str, Any]) -> None:
        """Write the candidate as a usable artifact (rules: a standalone optimizer module)."""
        out.write_text(text)

    def display(self, text: str) -> str:
        """The text the live view shows for a candidate."""
        return text

    def show_lines(self, view: Any) -> list[str]:
        """Lines ``optforge show`` adds after the generic summary (``view``: a ``RunView``); default none."""
        return []

    def report_sections(self, view: Any) -> list[str]:
        """HTML sections ``optforge report`` adds after the generic ones; default none."""
        return []

    def export_info(self, view: Any, candidate: dict[str, Any], fidelity: str) -> dict[str, Any]:
        """Extra header entries ``optforge export`` writes for a candidate (a ``RunView`` row scored at
        ``fidelity``); default none."""
        return {}

    def selected_id(self, view: Any) -> int | None:
        """The candidate a finished run settled on when it is not simply the top-ranked one
        (``optforge export --rank 1`` exports it); default: None, the ranking decides."""
        return None

    def finalize(self, engine: EngineView) -> Any:
        """After the search (budget spent): default = empirical simplification of the winners
        (``[simplify]``); prompt campaigns score their top prompts on the test split instead."""
        out = None
        if engine.campaign.simplify.enabled and engine.campaign.simplify.top > 0:
            out = engine.simplify_winners()
        engine.validate_winners()   # after simplification: the simplified programs are validated
        return out

    def begin_generation(self, engine: EngineView) -> None:  # noqa: B027 - a no-op by default
        """Called as each generation starts (generation 0: before the seeds are evaluated), e.g. to
        change what the evaluator trains on (rules with ``[bank]``: fresh sampled tasks); default none."""

    def end_generation(self, engine: EngineView) -> None:  # noqa: B027 - a no-op by default
        """Called after each generation's survivors are chosen, before its checkpoint; default none."""

    def block_evaluator(self, evaluator: Evaluator, block: int) -> Evaluator | None:
        """An evaluator like ``evaluator`` (the search's) on seed block ``block`` >= 1: the same protocol
        on as many other training seeds (``[funnel] mode = "race"``, search.core.race); None: this
        kind cannot (racing is then refused)."""
        return None

    def noise_floors(self, evaluator: Evaluator, fidelity: str, tasks: Sequence[str],
                     replicates: int) -> dict[str, float]:
        """Each task's noise floor under ``evaluator``'s protocol (its baseline against itself on
        ``replicates`` pairs of disjoint seed sets), for the validation stage's verdict; {}: this kind
        measures none (the verdict then asks each task's own interval). May raise ``ValueError``
        (e.g. ``evaluators.NoiseError``) when the baseline fails."""
        return {}

    def make_validation_evaluator(self, campaign: Campaign, run_dir: Path,
                                  search_evaluator: Evaluator | None = None) -> Evaluator | None:
        """The evaluator of the funnel's validation stage (search.core.selection); None: no stage.
        ``search_evaluator``: the search's, whose workers (process pool) the stage should reuse."""
        return None


class EngineView(Protocol):
    """The engine as the plug-ins and the core's helper modules see it (``search.core.Engine``
    implements it). Annotating with this instead of ``Engine`` keeps ``search.core`` free of import
    circles: the engine imports its helpers, none of them imports the engine."""

    campaign: Campaign
    kind: KindPlugin
    ctx: Context
    strategy: Strategy
    rng: random.Random                        # the run's one seeded RNG (checkpointed)
    store: RunStore
    evaluator: Evaluator
    validator: Evaluator | None               # the validation stage's evaluator (None: no stage)
    fidelities: tuple[str, ...]
    generation: int
    population: list[Individual]
    individuals: dict[int, Individual]        # everything evaluated, by id
    known: dict[str, dict[str, EvalResult]]   # evaluator key -> fidelity -> result
    replay: dict[tuple[str, str], tuple[EvalResult, float, int]]
    op_state: dict[str, Any]                  # operators' free state (checkpointed)
    bandit: OperatorBandit
    eval_charge: dict[int, list[float]]       # id -> [training seconds, units] this generation
    capture: list | None                      # pipelined: LLM requests collected instead of sent

    @property
    def budget_left(self) -> float: ...

    @property
    def llm(self) -> LLM | None: ...

    def event(self, kind: str, message: str, **data: Any) -> None: ...

    def get_operator(self, name: str) -> Operator: ...

    def operator_mix(self, group: str) -> dict[str, float]: ...

    def choose_operator(self, arity: int | None = None) -> str: ...

    def choose_for(self, name: str) -> str: ...

    def bandit_llm_ok(self) -> bool: ...

    def llm_available(self) -> bool: ...

    def llm_chat(self, requests: list, purpose: str = "") -> list | None: ...

    def score_variant(self, text: str, key: str, parent: Individual, fidelity: str, step: str) -> Individual:
        """Score a variant of ``parent`` (simplification): recorded, cached, no search units."""
        ...

    def simplify_winners(self) -> list[dict]: ...

    def validate_winners(self) -> list[dict[str, Any]]: ...


class Context:
    """The engine's state as seen by operators and strategies."""

    def __init__(self, engine: EngineView):
        self._e = engine

    # read-only views
    @property
    def campaign(self) -> Campaign:
        return self._e.campaign

    @property
    def kind(self) -> KindPlugin:
        return self._e.kind

    @property
    def rng(self) -> random.Random:
        return self._e.rng

    def use_stream(self, name: str) -> None:
        """Draw from RNG stream ``name`` (an operator's name, or "retry") from now on. A no-op here: the
        engine's one RNG serves every operator; a pipelined generation's context (search.core.pipeline)
        gives each its own."""

    @property
    def population(self) -> list[Individual]:
        return self._e.population

    @property
    def history(self) -> dict[int, Individual]:
        """Every individual with at least one result, by id."""
        return self._e.individuals

    @property
    def fidelities(self) -> tuple[str, ...]:
        return self._e.fidelities

    @property
    def generation(self) -> int:
        return self._e.generation

    @property
    def evaluator(self) -> Evaluator:
        return self._e.evaluator

    @property
    def state(self) -> dict[str, Any]:
        """Free JSON-able state for operators (checkpointed)."""
        return self._e.op_state

    def fitness(self, ind: Individual) -> float:
        """Selection fitness: score at the highest fidelity reached, or at the screen level."""
        if self.campaign.search.selection_fidelity == "screen":
            return ind.screen_score
        return ind.score

    def top(self, k: int, pool: Sequence[Individual] | None = None) -> list[Individual]:
        """The k best (final ranking) among ``pool`` (default: everything evaluated)."""
        items = [i for i in (pool if pool is not None else self.history.values())
                 if i.level >= 0 and i.operator != "simplify"]
        return sorted(items, key=lambda i: (i.rank_key(), -i.id), reverse=True)[:k]

    def choose_operator(self, arity: int | None = None) -> str:
        return self._e.choose_operator(arity)

    def choose_for(self, name: str) -> str:
        """The operator for a slot planned for ``name``: ``name`` itself, or with an operator bandit
        (``[operators.bandit]``) its draw among ``name`` and the random operators."""
        return self._e.choose_for(name)

    def operator(self, name: str) -> Operator:
        return self._e.get_operator(name)

    def llm_available(self) -> bool:
        return self._e.llm_available()

    def llm_chat(self, requests: list, purpose: str = "") -> list | None:
        """Send chat requests through the campaign's LLM; None when LLM use is over."""
        return self._e.llm_chat(requests, purpose)

    def event(self, kind: str, message: str, **data: Any) -> None:
        self._e.event(kind, message, **data)
