"""The HTML report's content, read from a real run (report_cases: real training, scripted LLM):
one operator table whose counts add up to the store's, every failure with its reason, intervals
and the verdict in evaluators.describe wording (and "-" for runs verified before them), and
plotly.js inline or as a file next to the page. tests/test_report_browser.py opens the page."""
from __future__ import annotations

import html
import re

import pytest

from evaluators import describe, estimate
from report_cases import run_report_campaign
from search.cli import main
from search.core import RunStore, RunView
from search.report import build_html, failures, operator_rows, write_report
from search.report.figures import hover_code
from search.rules.verify import verify_run


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return run_report_campaign(tmp_path_factory.mktemp("report") / "run")


@pytest.fixture
def view(run):
    v = RunView(run)
    yield v
    v.close()


def _proposed(view: RunView) -> list[dict]:
    return [c for c in view.all if c["operator"] not in ("seed", "simplify") and c["state"] != "simplify"]


def test_the_operator_table_adds_up_to_the_store(view):
    rows, state = operator_rows(view)
    assert state is not None and state["algorithm"] == "ucb"
    for r in rows:
        assert r.proposals == r.valid + r.invalid + r.duplicate
        assert r.valid == r.trained_ok + r.failed + r.not_evaluated
        assert r.improved <= r.trained_ok
    stored = _proposed(view)
    assert sum(r.invalid for r in rows) == sum(c["state"] == "invalid" for c in stored) > 0
    assert sum(r.duplicate_stored for r in rows) == sum(c["state"] == "duplicate" for c in stored)
    assert sum(r.valid for r in rows) == sum(c["state"] == "ok" for c in stored)
    assert sum(r.failed for r in rows) == sum(c["state"] == "ok" and c["level"] >= 0 and c["score"] <= -1e8
                                              for c in stored) > 0
    # the bandit counted every attempt except the children the budget left unevaluated
    bandit = sum(a["children"] for a in state["arms"].values())
    assert bandit == sum(r.proposals - r.not_evaluated for r in rows)
    # the page's totals row shows the same sums
    page = build_html(view)
    table = page[page.index("<table id='operators'>"):]
    table = table[: table.index("</table>")]
    total = table[table.index("<tr class='total'>"):]
    for col, get in (("proposals", lambda r: r.proposals), ("invalid", lambda r: r.invalid),
                     ("failed", lambda r: r.failed), ("valid", lambda r: r.valid)):
        assert f"<td data-col='{col}'><b>{sum(get(r) for r in rows)}</b></td>" in total, col
    assert "<table><tr><th>operator</th><th>evaluated</th>" not in page     # the second, disagreeing table is gone


def test_every_failure_is_listed_with_its_reason(view):
    fs = failures(view)
    stored = _proposed(view)
    expect = {c["id"] for c in stored if c["state"] in ("invalid", "duplicate")
              or (c["state"] == "ok" and c["level"] >= 0 and c["score"] <= -1e8)}
    assert {f.id for f in fs} == expect
    assert all(f.reason for f in fs)
    assert any("no code found" in f.reason for f in fs)              # the LLM's garbage reply
    assert any(f.stage.startswith("training") and "diverged" in f.reason for f in fs)
    page = build_html(view)
    for f in fs[-12:]:                                                  # the latest ones, in full
        assert f"<tr data-id='{f.id}'>" in page and html.escape(f.reason) in page


def test_top_candidates_carry_an_interval_around_their_score(view):
    page = build_html(view)
    top = page[page.index("<table id='top'>"):]
    first = top[: top.index("</tr>", top.index("</tr>") + 5)]           # header and rank 1
    score, lo, hi = (float(x) for x in re.search(r"<td>([-+]\d\.\d{4}) <span class='ci'>\[([-+]\d\.\d{3}), "
                                                  r"([-+]\d\.\d{3})\]</span>", first).groups())
    assert lo - 1e-3 <= score <= hi + 1e-3 and lo < hi


def test_verdict_in_describe_wording_and_runs_verified_before_intervals_show_a_dash(run):
    rec = verify_run(run, top=1, tasks=["rosenbrock"], executor="inprocess", log=lambda *_: None,
                     noise_replicates=2)
    view = RunView(run)
    try:
        page = build_html(view)
    finally:
        view.close()
    for e in rec["entries"]:                     # the wording verify stored, in the table
        assert f"<td class='verdict'>{html.escape(e['describe'])}</td>" in page
    for e in rec["entries"]:                     # as a run verified before intervals were stored
        for k in ("estimate", "ci", "p_improvement", "verdict", "describe"):
            e.pop(k, None)
        for cell in e["tasks"].values():
            cell.pop("ci", None), cell.pop("noise", None)
    with RunStore(run / "run.sqlite") as st:
        st.set_meta(verify=rec)
    view = RunView(run)
    try:
        page = build_html(view)
    finally:
        view.close()
    assert "Transfer gap" in page
    assert "<td class='verdict'>-</td>" in page and "<span class='verdict'>-</span>" in page
    # the same record as a verification that stores intervals (evaluators.stats) writes it
    est = estimate({"rosenbrock": [0.31, 0.12, 0.25], "conv": [0.08, 0.11, 0.02]}, seed=1, n_boot=500)
    for e in rec["entries"]:
        e.update(estimate=est.to_json(), ci=list(est.ci), p_improvement=est.p_improvement, verdict=est.verdict)
        for cell in e["tasks"].values():
            cell.update(ci=[-0.1, 0.2], noise=0.05)
    with RunStore(run / "run.sqlite") as st:
        st.set_meta(verify=rec)
    view = RunView(run)
    try:
        page = build_html(view)
    finally:
        view.close()
    wording = describe(est)
    assert wording.startswith(("holds: ", "indistinguishable from tuned AdamW: ", "worse than tuned AdamW: "))
    assert f"<td class='verdict'>{html.escape(wording)}</td>" in page
    assert f"<span class='verdict'>{html.escape(wording)}</span>" in page      # the summary's verdict
    assert f"[{est.ci[0]:+.3f}, {est.ci[1]:+.3f}]" in page and "noise floor 0.050" in page


def test_plotly_js_inline_or_next_to_the_page(run, tmp_path):
    (tmp_path / "a").mkdir()
    inline = write_report(run, tmp_path / "a" / "r.html")
    text = inline.read_text()
    assert len(text) > 3_000_000 and "<script src=" not in text and not (inline.parent / "plotly.min.js").exists()
    (tmp_path / "b").mkdir()
    page = write_report(run, tmp_path / "b" / "r.html", plotly_js="file")
    assert "<script src='plotly.min.js'></script>" in page.read_text() and len(page.read_text()) < 1_000_000
    assert (page.parent / "plotly.min.js").stat().st_size > 3_000_000
    (tmp_path / "c").mkdir()
    assert main(["report", str(run), "-o", str(tmp_path / "c" / "r.html"), "--plotly-js", "file"]) == 0
    assert (tmp_path / "c" / "plotly.min.js").is_file() and (tmp_path / "c" / "r.html").stat().st_size < 1_000_000
    view = RunView(run)
    try:
        with pytest.raises(ValueError, match="plotly_js must be 'inline' or 'file'"):
            build_html(view, plotly_js="cdn")
    finally:
        view.close()


def test_hover_code_keeps_indentation_and_escapes_markup():
    got = hover_code("def f(w, g, lr):\n    w = w - lr * g <b>\n    return w\n")
    lines = got.split("<br>")
    assert lines == ["def f(w, g, lr):", "\u00a0" * 4 + "w = w - lr * g &lt;b&gt;", "\u00a0" * 4 + "return w"]
    long = hover_code("\n".join(f"x{i}" for i in range(40)), max_lines=5)
    assert long.split("<br>")[-1] == "... (35 more lines)"
