"""BPF C sources, shipped as the package data of ``tcaudit.bpf``.

bcc compiles them at run time, so callers need their absolute path.
"""

from pathlib import Path

_HERE = Path(__file__).resolve().parent


def source_path(name: str) -> Path:
    """Absolute path of a shipped C file, e.g. ``source_path("lab/verdict.c")``."""
    path = _HERE / name
    if not path.is_file():
        raise FileNotFoundError(f"tcaudit ships no BPF source named {name!r} (looked in {_HERE})")
    return path
