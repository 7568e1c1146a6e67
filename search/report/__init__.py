"""Views of a run: the HTML report, its figures, and the live progress while a campaign runs.

- ``html``: ``write_report`` / ``build_html`` (``optforge report RUN``: one self-contained file);
- ``figures``: the plots, each as an inline PNG (``png`` turns any matplotlib figure into one;
  kinds use it for their own report sections);
- ``live``: ``make_progress`` (a rich panel on a terminal, ``PlainProgress`` lines otherwise);
- ``operators``: per-operator statistics and shares over time (show and report);
- ``transfer``: search, validation and verified scores side by side (the transfer gap).

A kind adds its own report HTML through ``KindPlugin.report_sections``.
"""
from .figures import ok_score, plot_curves, plot_distribution, plot_pareto, plot_progress, png
from .html import build_html, simplified_text, write_report
from .live import PlainProgress, RichProgress, make_progress, snapshot
from .operators import operator_lines, operator_rows, operator_sections

__all__ = ["ok_score", "plot_curves", "plot_distribution", "plot_pareto", "plot_progress", "png", "build_html",
           "simplified_text", "write_report", "PlainProgress", "RichProgress", "make_progress", "snapshot",
           "operator_lines", "operator_rows", "operator_sections"]
