"""The HTML report opened in a real headless browser (Debian's Chromium driven by Playwright), on a
real run (report_cases): the plots render with the traces the report built, the chosen winner is
marked and hovering it shows its simplified source, the operator table's totals are the store's,
failure reasons are visible, nothing is fetched from the network, and the console stays clean.

Skips only where no Chromium is installed (CI installs it: .ci/run)."""
from __future__ import annotations

from pathlib import Path

import pytest

from evaluators import WORST_SCORE
from report_cases import run_report_campaign
from search.core import RunView, run_kind
from search.report import WINNER, failures, operator_rows, progress_figure, simplified_text, write_report
from search.report.figures import Hover, curves_figure, distribution_figure, pareto_figure

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason=f"no Chromium at {CHROMIUM}: install Debian's "
                                "chromium (apt-get install -y chromium; .ci/run does) to run the browser tests")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return run_report_campaign(tmp_path_factory.mktemp("browser") / "run")


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright  # the dev extra; only here, after the Chromium check
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield b
        b.close()


class Opened:
    """A report page with what it logged and what it tried to fetch."""

    def __init__(self, browser, path: Path):
        self.context = browser.new_context(viewport={"width": 1300, "height": 900})
        self.console: list[str] = []
        self.fetched: list[str] = []
        self.context.route("http*://**", lambda route: (self.fetched.append(route.request.url), route.abort()))
        self.page = self.context.new_page()
        self.page.on("console", lambda m: self.console.append(f"{m.type}: {m.text}") if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.console.append(f"pageerror: {e}"))
        self.page.goto(path.as_uri())
        self.page.wait_for_function("() => { const d = document.querySelectorAll('.plotly-graph-div'); "
                                    "return d.length > 0 && Array.from(d).every(x => x.querySelector('.main-svg')); }")

    def traces(self, name: str) -> list[dict]:
        return self.page.evaluate(f"() => document.getElementById('plot-{name}').data.map("
                                  "t => ({name: t.name || '', x: Array.from(t.x || []), y: Array.from(t.y || [])}))")

    def close(self) -> None:
        self.context.close()


@pytest.fixture(scope="module")
def opened(run, browser, tmp_path_factory):
    page = Opened(browser, write_report(run, tmp_path_factory.mktemp("page") / "report.html"))
    yield page
    page.close()


@pytest.fixture
def view(run):
    v = RunView(run)
    yield v
    v.close()


def test_the_plots_render_with_the_traces_the_report_built(opened, view):
    kind = run_kind(view)
    hover, ranked = Hover(view, kind), view.ranked()
    built = {"progress": progress_figure(view, hover, ranked[0]), "distribution": distribution_figure(view),
             "pareto": pareto_figure(view, hover, ranked[0]), "curves": curves_figure(view, ranked[:3])}
    for name, fig in built.items():
        assert fig is not None, name
        drawn = opened.traces(name)
        assert [t["name"] for t in drawn] == [t.name for t in fig.data], name
        assert opened.page.locator(f"#plot-{name} .main-svg").count() >= 1, name
    # every ok search evaluation at the screening fidelity is a drawn point
    screen = view.fidelities[0]
    n_ok = sum(1 for e in view.evaluations if e["phase"] == "search" and e["fidelity"] == screen
               and e["score"] > WORST_SCORE)
    k = [t["name"] for t in opened.traces("progress")].index(f"scores at {screen}")
    assert opened.page.locator("#plot-progress .scatterlayer .trace").nth(k).locator(".point").count() == n_ok
    assert opened.page.locator("#plot-shares .main-svg").count() >= 1          # the bandit's shares


def test_the_winner_is_marked_and_its_hover_shows_its_source(opened, view):
    winner = view.ranked()[0]
    name = f"{WINNER} #{winner['id']}"
    for plot in ("progress", "pareto"):
        assert name in [t["name"] for t in opened.traces(plot)], plot
    traces = opened.traces("progress")
    k = [t["name"] for t in traces].index(name)
    assert traces[k]["y"] == pytest.approx([winner["score"]])
    point = opened.page.locator("#plot-progress .scatterlayer .trace").nth(k).locator(".point").first
    point.scroll_into_view_if_needed()
    box = point.bounding_box()
    opened.page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    label = opened.page.locator("#plot-progress .hoverlayer .hovertext").first
    label.wait_for(timeout=10_000)
    text = label.text_content().replace("\u00a0", " ")
    assert f"#{winner['id']}" in text and f"{winner['score']:+.4f}" in text
    source = simplified_text(run_kind(view), winner)
    for line in source.strip().splitlines():
        assert line in text, line


def test_the_operator_table_totals_are_the_stores(opened, view):
    rows, state = operator_rows(view)
    cols = opened.page.evaluate("() => Array.from(document.querySelectorAll('#operators tr.total td[data-col]'))"
                                ".map(td => [td.dataset.col, Number(td.textContent)])")
    total = dict(cols)
    proposed = [c for c in view.all if c["operator"] not in ("seed", "simplify") and c["state"] != "simplify"]
    assert total["invalid"] == sum(c["state"] == "invalid" for c in proposed) > 0
    assert total["valid"] == sum(c["state"] == "ok" for c in proposed)
    assert total["failed"] == sum(c["state"] == "ok" and c["level"] >= 0 and c["score"] <= WORST_SCORE
                                  for c in proposed) > 0
    assert total["proposals"] == total["valid"] + total["invalid"] + total["duplicate"]
    # every attempt the operator bandit counted is a proposal (the unevaluated children it never saw aside)
    assert total["proposals"] - total["not evaluated"] == sum(a["children"] for a in state["arms"].values())
    assert opened.page.locator("#operators tr[data-operator]").count() == len(rows)
    assert opened.page.locator("table#operators").count() == 1


def test_failure_reasons_are_visible(opened, view):
    fs = failures(view)
    assert any(f.stage.startswith("proposal") for f in fs) and any(f.stage.startswith("training") for f in fs)
    for f in fs[::-1][:12]:                          # the latest, shown in full
        cell = opened.page.locator(f"#failures tr[data-id='{f.id}'] td.reason")
        assert cell.is_visible() and f.reason in cell.text_content()
    assert opened.page.locator("#failure-reasons td.reason", has_text="no code found in the reply").first.is_visible()


def test_nothing_is_fetched_and_the_console_is_clean(opened):
    assert opened.fetched == []
    assert opened.console == []


def test_plotly_js_written_next_to_the_page_renders_too(run, browser, tmp_path):
    page = Opened(browser, write_report(run, tmp_path / "report.html", plotly_js="file"))
    try:
        assert page.page.locator(".js-plotly-plot").count() == 5       # progress, distribution, pareto, curves, shares
        assert page.fetched == [] and page.console == []
    finally:
        page.close()
