"""Progress while a campaign runs: a rich live panel on a terminal, plain log lines otherwise.

Both show the evaluation budget used and left, the best score so far (and the fidelity it was
measured at), the current best program, the LLM accept rate (valid proposals / LLM
proposals) and the throughput (evaluations per minute in this session). The engine calls
``start``, ``update`` (after each finished evaluation and each generation), ``log`` (events)
and ``stop``.
"""
from __future__ import annotations

import sys
import time
from typing import TextIO

from rich.console import Console, Group
from rich.live import Live
from rich.markup import escape
from rich.panel import Panel
from rich.progress_bar import ProgressBar
from rich.syntax import Syntax
from rich.table import Table

from evaluators.base import WORST_SCORE
from search.core import Engine, Progress


def snapshot(engine: Engine) -> dict:
    """The numbers both views print."""
    top = engine.ctx.top(1)
    best = top[0] if top else None
    elapsed = max(1e-9, time.monotonic() - engine.t_start)
    st = engine.stats
    done_here = engine.used - engine.used_at_start
    return {
        "used": engine.used, "budget": engine.campaign.budget.evaluations,
        "left": max(0.0, engine.campaign.budget.evaluations - engine.used),
        "generation": engine.generation,
        "best_score": best.score if best and best.score > WORST_SCORE else None,
        "best_fidelity": engine.fidelities[best.level] if best else None,
        "best_id": best.id if best else None,
        "best_text": engine.kind.display(best.text) if best else "",
        "llm_calls": engine.llm_calls, "llm_proposals": st.llm_proposals, "llm_valid": st.llm_valid,
        "llm_rate": (st.llm_valid / st.llm_proposals) if st.llm_proposals else None,
        "invalid": sum(st.invalid.values()), "duplicates": st.duplicates,
        "per_min": done_here / elapsed * 60.0, "wall": engine.wall_elapsed(),
        "llm_off": engine.llm_disabled_reason,
    }


def _line(s: dict) -> str:
    best = "n/a" if s["best_score"] is None else f"{s['best_score']:+.4f} (#{s['best_id']} @ {s['best_fidelity']})"
    llm = "" if s["llm_rate"] is None else f" | llm valid {s['llm_valid']}/{s['llm_proposals']}"
    return (f"gen {s['generation']} | evals {s['used']:g}/{s['budget']} (left {s['left']:g}) | best {best}"
            f"{llm} | invalid {s['invalid']} dup {s['duplicates']} | {s['per_min']:.1f} evals/min | "
            f"{s['wall']:.0f}s")


class PlainProgress(Progress):
    """Log lines (CI, pipes): at most one every ``every_s`` seconds, plus events."""

    def __init__(self, stream: TextIO | None = None, every_s: float = 5.0):
        self.stream = stream or sys.stderr
        self.every_s = every_s
        self._last = 0.0
        self._best_id = None

    def _print(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def start(self, engine: Engine) -> None:
        c = engine.campaign
        self._print(f"[optforge] campaign {c.name!r} ({c.kind}) -> {engine.run_dir} | budget "
                    f"{c.budget.evaluations} evals | fidelities {', '.join(engine.fidelities)}")

    def update(self, engine: Engine) -> None:
        s = snapshot(engine)
        now = time.monotonic()
        new_best = s["best_id"] != self._best_id
        if now - self._last >= self.every_s or new_best:
            self._last = now
            self._print("[optforge] " + _line(s))
            if new_best and s["best_id"] is not None:
                self._best_id = s["best_id"]
                self._print("[optforge] new best:\n" + s["best_text"].rstrip())

    def log(self, message: str) -> None:
        self._print(f"[optforge] {message}")

    def stop(self, engine: Engine) -> None:
        self._print("[optforge] " + _line(snapshot(engine)))


class RichProgress(Progress):
    """A rich Live panel (terminal only)."""

    def __init__(self, console=None) -> None:
        self.console = console or Console(stderr=True)
        self.live = None
        self.events: list[str] = []

    def _render(self, engine: Engine):
        s = snapshot(engine)
        t = Table.grid(padding=(0, 2))
        t.add_row("evaluations", f"{s['used']:g} / {s['budget']}  (left {s['left']:g}, generation {s['generation']})")
        t.add_row("best score", "n/a" if s["best_score"] is None else
                  f"{s['best_score']:+.4f}  (#{s['best_id']} at {s['best_fidelity']})")
        llm = "off" + (f" ({escape(s['llm_off'])})" if s["llm_off"] else "") if s["llm_rate"] is None and s["llm_off"] \
            else ("n/a" if s["llm_rate"] is None else
                  f"{s['llm_rate']:.0%} valid ({s['llm_valid']}/{s['llm_proposals']}, {s['llm_calls']} calls)")
        t.add_row("LLM", llm)
        t.add_row("invalid / dup", f"{s['invalid']} / {s['duplicates']}")
        t.add_row("throughput", f"{s['per_min']:.1f} evals/min, {s['wall']:.0f} s")
        # The bar sits in a table row: rich 15 drops the line after a finished bar in a Group.
        t.add_row("budget", ProgressBar(total=max(1, s["budget"]), completed=min(s["used"], s["budget"]), width=40))
        parts = [t]
        if s["best_text"]:
            parts.append(Panel(Syntax(s["best_text"].rstrip(), engine.kind.syntax, word_wrap=True),
                               title="current best"))
        if self.events:
            parts.append(escape("\n".join(self.events[-4:])))
        return Panel(Group(*parts), title=f"optforge: {engine.campaign.name}")

    def start(self, engine: Engine) -> None:
        self._engine = engine
        self.live = Live(self._render(engine), console=self.console, refresh_per_second=4, transient=False)
        self.live.start()

    def update(self, engine: Engine) -> None:
        if self.live is not None:
            self.live.update(self._render(engine))

    def log(self, message: str) -> None:
        self.events.append(message[:200])

    def stop(self, engine: Engine) -> None:
        if self.live is not None:
            self.live.update(self._render(engine))
            self.live.stop()
            self.live = None


def make_progress(mode: str = "auto", stream: TextIO | None = None):
    """``auto``: rich on a terminal, plain lines otherwise; ``plain``; ``rich``; ``none``."""
    if mode == "none":
        return None
    s = stream or sys.stderr
    if mode == "rich" or (mode == "auto" and hasattr(s, "isatty") and s.isatty()):
        return RichProgress()
    return PlainProgress(s)
