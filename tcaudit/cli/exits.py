"""The exit codes beyond a command's own (contracts.md), and SIGTERM as an exception.

Here rather than in main.py because watch, which stops on Ctrl-C or SIGTERM and still
prints its summary, needs them too, and main.py imports the commands.
"""

from __future__ import annotations

EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143  # 128 + SIGTERM
EXIT_CRASH = 70


class Terminated(BaseException):
    """SIGTERM: unwind like Ctrl-C, so every `finally` removes what was added."""
