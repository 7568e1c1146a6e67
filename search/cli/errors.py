"""The CLI's one error path.

A verb raises ``CLIError`` with a message that says what is wrong and what to do; ``main``
prints ``optforge <verb>: <message>`` on stderr and exits with ``EXIT_USER_ERROR``. Verbs turn
the library's typed errors (``CampaignError``, ``StoreError``, ``DSLError``, ``LLMSetupError``,
...) into a ``CLIError`` where they call the library; nothing else is caught, so a bug still
shows its traceback. Exit statuses: 0 success, 1 a user error (this one), 2 a command line
argparse refuses, 130 interrupted; ``rule check --strict`` and ``eval`` also report a result
through the status (their help says how).
"""
from __future__ import annotations

EXIT_USER_ERROR = 1


class CLIError(Exception):
    """A user error: bad input, a missing file or run, a set-up problem; the message names the fix."""
