"""optforge from Python (notebooks, scripts): build a campaign, run it, read a run as DataFrames.

::

    import search.api as of
    run = of.run({"name": "mine", "seed_rules": ["adamw"], "tasks": ["quadratic"],
                  "fidelities": ["small"], "budget": {"evaluations": 20}}, fresh=True)
    run.candidates()          # ranked candidates: score, 95% interval, validation, size, source
    run.evaluations()         # every finished evaluation, in order
    run.operators()           # per-operator statistics
    run.verify()              # the stored `optforge verify` result, one row per rule (empty if none)
    run.export("best_rule.py")

A run is read from its directory (``of.open_run("runs/demo")``), finished or still running: each
call reads the store afresh. Tables are pandas DataFrames; ``run.to_json()`` is the same object
``optforge show RUN --json`` prints. Bad input raises typed errors with a message that says what to
do: ``CampaignError`` (the campaign), ``StoreError`` (the run directory), ``APIError`` (the call).
"""
from __future__ import annotations

import csv
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm.auto import tqdm

from evaluators import WORST_SCORE
from search.cli import (
    CLIError,
    candidate_records,
    evaluation_records,
    export_candidate,
    operator_records,
    run_json,
    show_text,
    verify_records,
)
from search.core import (
    HALL_OF_FAME_FILE,
    Campaign,
    CampaignError,
    Engine,
    Progress,
    RunExistsError,
    RunSummary,
    RunView,
    StoreError,
    db_path,
    load_campaign,
    parse_campaign,
    read_events,
    run_kind,
)

#: the columns of ``Run.verify()``
VERIFY_COLUMNS = ["label", "id", "kind", "rank", "search", "validation", "validation_test", "verified", "verified_won",
                  "verified_n", "ci_low", "ci_high", "p_improvement", "verdict", "holds"]


class APIError(ValueError):
    """A call the API cannot serve (a rank out of range, an output folder that does not exist, ...)."""


def campaign(spec: Campaign | Mapping[str, Any] | str | Path, **changes: Any) -> Campaign:
    """A validated campaign from a dict (the TOML file's content), a TOML file, or a ``Campaign``.

    ``changes`` override top-level fields (``budget={"evaluations": 50}``, ``name="try2"``);
    validation is the campaign file's, with the same messages (``CampaignError``)."""
    if isinstance(spec, Campaign):
        data, where = spec.model_dump(mode="json"), spec.source_path or "<campaign>"
    elif isinstance(spec, Mapping):
        data, where = dict(spec), "<campaign dict>"
    elif isinstance(spec, (str, Path)):
        base = load_campaign(spec)
        if not changes:
            return base
        data, where = base.model_dump(mode="json"), str(spec)
    else:
        raise CampaignError(f"a campaign is a dict, a TOML file path or a Campaign, not {type(spec).__name__}")
    data.update(changes)
    c = parse_campaign(data, where)
    if isinstance(spec, (str, Path)):
        c.set_source(str(spec))   # seed rule files resolve from the file's folder, as with `optforge run`
    return c


def _units(x: float) -> int | float:
    """Budget units as tqdm shows them: whole numbers without ``.0``."""
    return int(x) if float(x).is_integer() else float(x)


class TqdmProgress(Progress):
    """A tqdm bar over the evaluation budget (a notebook widget under Jupyter), best score in the postfix."""

    def __init__(self, **tqdm_kw: Any):
        self.kw = tqdm_kw
        self.bar: Any = None

    def start(self, engine: Any) -> None:
        self.bar = tqdm(total=engine.campaign.budget.evaluations, initial=_units(engine.used),
                        desc=engine.campaign.name, unit="eval", **self.kw)

    def update(self, engine: Any) -> None:
        if self.bar is None:
            return
        self.bar.n = _units(engine.used)
        top = engine.ctx.top(1)
        if top and top[0].score > WORST_SCORE:
            self.bar.set_postfix(best=f"{top[0].score:+.4f}", gen=engine.generation, refresh=False)
        self.bar.refresh()

    def log(self, message: str) -> None:
        if self.bar is not None:
            self.bar.write(message)

    def stop(self, engine: Any) -> None:
        if self.bar is not None:
            self.bar.n = _units(engine.used)
            self.bar.close()
            self.bar = None


def run(spec: Campaign | Mapping[str, Any] | str | Path, run_dir: str | Path | None = None, *,
        resume: bool = False, fresh: bool = False, progress: bool | Progress = True, tensorboard: bool = False,
        **changes: Any) -> "Run":
    """Run a campaign to its end and open the run. As ``optforge run``: an existing run is never
    overwritten silently (``resume=True`` continues it, ``fresh=True`` deletes it first).

    ``progress``: True for a tqdm bar, False for none, or any ``search.core.Progress``.
    ``tensorboard``: also write TensorBoard event files (``<run>/tensorboard``)."""
    c = campaign(spec, **changes)
    if tensorboard:
        c.logging.tensorboard = True
    prog = TqdmProgress() if progress is True else (progress or None)
    try:
        eng = Engine(c, run_dir, resume=resume, fresh=fresh, progress=prog)
    except RunExistsError:
        raise RunExistsError(f"{run_dir or c.resolved_run_dir()} already holds a run of this campaign: pass "
                             "resume=True to continue it (the budget may grow) or fresh=True to delete it and "
                             "start again") from None
    try:
        summary = eng.run()
    finally:
        eng.close()
    r = Run(eng.run_dir)
    r.summary = summary
    return r


def open_run(path: str | Path) -> "Run":
    """An existing run: its directory, its ``run.sqlite``, or a campaign name under ``runs/``."""
    p = Path(path)
    for cand in (p, Path("runs") / p):
        if db_path(cand).is_file():
            return Run(db_path(cand).parent)
    raise StoreError(f"{path}: no run found (expected a run directory with run.sqlite, e.g. runs/demo)")


def _split_ci(rec: dict[str, Any], key: str, prefix: str) -> None:
    ci = rec.pop(key, None)
    rec[f"{prefix}_low"], rec[f"{prefix}_high"] = (ci[0], ci[1]) if ci else (None, None)


class Run:
    """One run directory, read on demand (see the module docstring)."""

    def __init__(self, run_dir: str | Path):
        self.run_dir = Path(run_dir)
        if not db_path(self.run_dir).is_file():
            raise StoreError(f"{self.run_dir}: no run database here (expected run.sqlite)")
        #: the run's summary when this process ran it (``of.run``), else None
        self.summary: RunSummary | None = None

    def __repr__(self) -> str:
        return f"Run({str(self.run_dir)!r})"

    def _view(self) -> RunView:
        return RunView(self.run_dir)

    @property
    def campaign(self) -> dict[str, Any]:
        """The campaign the run was started with (its stored dump)."""
        v = self._view()
        try:
            return v.campaign
        finally:
            v.close()

    def candidates(self, top: int | None = None, *, text: bool = True) -> pd.DataFrame:
        """Ranked candidates (final ranking: validated first): rank, id, score, ci_low/ci_high, validation
        (with its interval), size, fidelity, operator, parents, failure reasons and, with ``text``, the
        simplified source."""
        v = self._view()
        try:
            recs = candidate_records(v, run_kind(v) if text else None, top)
        finally:
            v.close()
        for r in recs:
            r.pop("per_task")
            _split_ci(r, "ci", "ci")
            _split_ci(r, "validation_ci", "validation_ci")
        return pd.DataFrame.from_records(recs)

    def task_scores(self, top: int | None = None) -> pd.DataFrame:
        """Per candidate and task (long format): score, ci_low/ci_high (with several seeds), tuned lr, failure."""
        v = self._view()
        try:
            recs = candidate_records(v, None, top)
        finally:
            v.close()
        rows = []
        for r in recs:
            for t, d in r["per_task"].items():
                row = {"rank": r["rank"], "id": r["id"], "task": t, "score": d["score"], "lr": d["lr"],
                       "failure": d["failure"], "ci": d["ci"]}
                _split_ci(row, "ci", "ci")
                rows.append(row)
        return pd.DataFrame.from_records(rows, columns=["rank", "id", "task", "score", "lr", "failure", "ci_low",
                                                        "ci_high"])

    def evaluations(self) -> pd.DataFrame:
        """Every finished evaluation in arrival order: seq, candidate, phase, fidelity, score, status, cost,
        seconds, time (Unix)."""
        v = self._view()
        try:
            return pd.DataFrame.from_records(evaluation_records(v))
        finally:
            v.close()

    def operators(self) -> pd.DataFrame:
        """Per operator: proposals, valid, invalid, duplicate, trained_ok, failed, improved, best, mean_reward,
        share (the counts add up: proposals = valid + invalid + duplicate)."""
        v = self._view()
        try:
            return pd.DataFrame.from_records(operator_records(v))
        finally:
            v.close()

    def verify(self) -> pd.DataFrame:
        """The stored verification (``optforge verify``), one row per rule: search, validation and verified
        scores, the interval, P(better), the verdict; empty when the run was not verified."""
        v = self._view()
        try:
            recs = verify_records(v)
        finally:
            v.close()
        for r in recs:
            r.pop("tasks")
            _split_ci(r, "ci", "ci")
        return pd.DataFrame.from_records(recs, columns=VERIFY_COLUMNS)

    def verify_tasks(self) -> pd.DataFrame:
        """The verification per rule and task (long format): group, score, ci_low/ci_high, noise floor."""
        v = self._view()
        try:
            recs = verify_records(v)
        finally:
            v.close()
        rows = []
        for r in recs:
            for t, d in r["tasks"].items():
                row = {"label": r["label"], "id": r["id"], "task": t, **d}
                _split_ci(row, "ci", "ci")
                rows.append(row)
        return pd.DataFrame.from_records(rows, columns=["label", "id", "task", "group", "score", "ci_low", "ci_high",
                                                        "noise", "reason"])

    def events(self) -> pd.DataFrame:
        """``events.jsonl`` as a table (one row per line; nested fields stay dicts)."""
        return pd.DataFrame.from_records(read_events(self.run_dir))

    def hall_of_fame(self) -> pd.DataFrame:
        """``hall_of_fame.csv``: the best candidates as the run last wrote them (empty before the first)."""
        p = self.run_dir / HALL_OF_FAME_FILE
        if not p.is_file():
            return pd.DataFrame(columns=["rank", "id", "score", "interval", "size", "fidelity", "validation",
                                         "source"])
        with open(p, newline="", encoding="utf-8") as f:
            return pd.DataFrame.from_records(list(csv.DictReader(f)))

    def to_json(self, top: int | None = None) -> dict[str, Any]:
        """Summary, candidates with intervals, verification and operator statistics (``show --json``)."""
        v = self._view()
        try:
            return run_json(v, run_kind(v), top)
        finally:
            v.close()

    def show(self, top: int = 5) -> str:
        """The text ``optforge show`` prints."""
        return show_text(self.run_dir, top)

    def export(self, path: str | Path, rank: int = 1, class_name: str | None = None) -> Path:
        """Write the candidate at ``rank`` (rules: a standalone torch optimizer module); warnings (an
        unchanged seed, a losing candidate, ...) are in ``self.last_export_warnings``."""
        try:
            ex = export_candidate(self.run_dir, rank, path, class_name, flag="path")
        except CLIError as e:
            raise APIError(str(e)) from None
        self.last_export_warnings = ex.warnings
        return ex.path


__all__ = ["APIError", "CampaignError", "StoreError", "Run", "TqdmProgress", "VERIFY_COLUMNS", "campaign", "open_run",
           "run"]
