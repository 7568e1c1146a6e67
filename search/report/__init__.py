"""Views of a run: the HTML report, its figures, and the live progress while a campaign runs.

- ``html``: ``write_report`` / ``build_html`` (``optforge report RUN``: one HTML file with
  interactive plotly figures, plotly.js embedded or written next to it);
- ``figures``: the plotly figures (the chosen winner marked, hover labels with each candidate's
  scores and simplified source); ``png`` turns a matplotlib figure into an inline image (kinds
  use it for their own report sections);
- ``operators``: one per-operator table whose counts add up (show and report);
- ``failures``: why candidates failed, by reason;
- ``transfer``: search, validation and verified scores side by side (the transfer gap), with
  intervals and the verdict in ``evaluators.describe`` wording;
- ``live``: ``make_progress`` (a rich panel on a terminal, ``PlainProgress`` lines otherwise).

A kind adds its own report HTML through ``KindPlugin.report_sections``.
"""
from .failures import failure_sections, failures
from .figures import (
    WINNER,
    curves_figure,
    distribution_figure,
    ok_score,
    pareto_figure,
    png,
    progress_figure,
    simplified_text,
)
from .html import PLOTLY_FILE, build_html, write_report
from .live import PlainProgress, RichProgress, make_progress, snapshot
from .operators import OperatorRow, operator_lines, operator_rows, operator_sections

__all__ = ["WINNER", "curves_figure", "distribution_figure", "ok_score", "pareto_figure", "png", "progress_figure",
           "simplified_text", "PLOTLY_FILE", "build_html", "write_report", "PlainProgress", "RichProgress",
           "make_progress", "snapshot", "OperatorRow", "operator_lines", "operator_rows", "operator_sections",
           "failure_sections", "failures"]
