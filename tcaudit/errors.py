"""The error types the core raises; the CLI turns each into one line and an exit code.

Exit codes are the public contract of contracts.md: 2 usage, 3 environment.
"""


class TcauditError(Exception):
    """An expected failure with a one-line message for the user."""

    exit_code = 1


class UsageError(TcauditError):
    """Bad option, unknown namespace/interface/hook/program, unreadable input."""

    exit_code = 2


class EnvironmentProblem(TcauditError):
    """Not root, a missing capability, bcc or headers missing, kernel lacks a feature."""

    exit_code = 3


class Vanished(TcauditError):
    """A namespace, link or program went away while tcaudit was reading it."""

    exit_code = 1
