"""The run store grows linearly with the run: a checkpoint replaces the one before and the operator
bandit's history is appended row by row (not re-written whole each generation); a resumed run
still sees the whole history. Real engine, real SQLite, the toy kind (tests/toy_kind.py)."""
from __future__ import annotations

import sqlite3
from pathlib import Path

from search.core import Campaign, Engine, RunStore
from search.core.registry import load_plugins


def _campaign(name: str) -> Campaign:
    load_plugins(["toy_kind"])
    c = Campaign.model_validate({
        "name": name, "kind": "toy", "plugins": ["toy_kind"], "toy": {"target": "searching", "start": "aaaaaaaaa"},
        "budget": {"evaluations": 100000}, "search": {"population": 8, "batch_size": 2},
        "operators": {"bandit": {"algorithm": "ucb"}}, "simplify": {"enabled": False}})
    return c


def _db_bytes(db: Path) -> int:
    """The database's size with its WAL folded in (what the file settles to)."""
    con = sqlite3.connect(db)
    try:
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        page, count, free = (con.execute(f"PRAGMA {p}").fetchone()[0]
                             for p in ("page_size", "page_count", "freelist_count"))
    finally:
        con.close()
    return page * (count - free)


def test_store_size_per_generation_does_not_grow(tmp_path):
    e = Engine(_campaign("growth"), tmp_path / "run")
    db = tmp_path / "run" / "run.sqlite"
    sizes = {}
    try:
        e._seed()
        e.save_checkpoint()
        for g in range(1, 201):
            e.step()
            if g in (50, 100, 200):
                sizes[g] = _db_bytes(db)
        hist_len = len(e.bandit.history)
    finally:
        e.close()
    first, second = (sizes[100] - sizes[50]) / 50, (sizes[200] - sizes[100]) / 100
    # linear: the last 100 generations cost per generation what generations 50-100 did (page slack aside);
    # a quadratic store (a ~7 KB RNG state and the whole history per row) grows by > 10 KB per generation
    assert second <= 1.15 * first + 64, (first, second)
    assert second < 3000, second
    st = RunStore(db, readonly=True)
    try:
        assert st.count("checkpoints") == 1
        assert st.count("checkpoint_history") == hist_len == 200
        ck = st.last_checkpoint()
    finally:
        st.close()
    assert ck["generation"] == 200 and len(ck["state"]["operators"]["history"]) == 200
    assert [h[0] for h in ck["state"]["operators"]["history"]] == list(range(1, 201))


def test_a_resumed_run_gets_the_whole_history_and_ends_like_an_uninterrupted_one(tmp_path):
    def run(path: Path, gens: list[int], resume: bool = False) -> tuple[list, str]:
        e = Engine(_campaign("resume"), path, resume=resume)
        try:
            if not e.seeded:
                e._seed()
                e.save_checkpoint()
            for _ in range(gens[0]):
                e.step()
            return [list(h) for h in e.bandit.history], e.ctx.top(1)[0].text
        finally:
            e.close()

    whole = run(tmp_path / "a", [30])
    run(tmp_path / "b", [12])
    assert run(tmp_path / "b", [18], resume=True) == whole
