"""The observer program (bpf/verdict_probe.c), compiled by bcc, and its counters.

bcc is Debian's python3-bpfcc and compiles against kernel headers; both may be missing
on a node. Then this raises EnvironmentProblem with one line saying what to install
(exit 3), and nothing else in tcaudit needs bcc: scan, recommend and friends go on
working.
"""

from __future__ import annotations

import os
import platform
from importlib import resources
from pathlib import Path
from typing import Any

from tcaudit.errors import EnvironmentProblem
from tcaudit.model import Counts

MAX_SLOTS = 256  # PROBE_MAX_SLOTS in bpf/verdict_probe.h
INSTALL_HINT = (
    "install bcc and kernel headers (Debian: apt-get install python3-bpfcc "
    "linux-headers-amd64, or run `make setup`), or point BCC_KERNEL_SOURCE at a kernel "
    "source/headers tree"
)


def bpf_source(name: str) -> Path:
    """Absolute path of a C file shipped as the package data of ``tcaudit.bpf``."""
    path = Path(str(resources.files("tcaudit.bpf").joinpath(name)))
    if not path.is_file():
        raise EnvironmentProblem(f"tcaudit's BPF source {name} is missing from {path.parent}")
    return path


def headers_present() -> bool:
    if os.environ.get("BCC_KERNEL_SOURCE"):
        return True
    release = platform.release()
    return (
        any(Path(f"/lib/modules/{release}/{name}").exists() for name in ("build", "source"))
        or Path("/sys/kernel/kheaders.tar.xz").exists()
    )


def import_bcc() -> Any:
    """bcc's BPF class, or EnvironmentProblem naming what is missing."""
    try:
        from bcc import BPF
    except ImportError:
        raise EnvironmentProblem(f"bcc is not importable: {INSTALL_HINT}") from None
    return BPF


class Observer:
    """The loaded observer program and its per-slot counters (one program, many slots)."""

    def __init__(self) -> None:
        bpf_class = import_bcc()
        if not headers_present():
            raise EnvironmentProblem(
                f"no kernel headers under /lib/modules/{platform.release()}: {INSTALL_HINT}"
            )
        source = bpf_source("verdict_probe.c")
        try:
            self._bpf = bpf_class(src_file=str(source).encode(), cflags=[f"-I{source.parent}"])
        except Exception as err:  # bcc raises plain Exception on compile errors
            raise EnvironmentProblem(
                f"bcc could not compile {source.name} ({err}): {INSTALL_HINT}"
            ) from None
        self._fn = self._bpf.load_func(b"observe", bpf_class.SCHED_CLS)
        self._empty = self._bpf.load_func(b"empty", bpf_class.SCHED_CLS)
        self._table = self._bpf[b"probe_counts"]

    @property
    def fd(self) -> int:
        return int(self._fn.fd)

    @property
    def empty_fd(self) -> int:
        """A program that only returns TC_ACT_UNSPEC (the benchmark's baseline)."""
        return int(self._empty.fd)

    def counts(self, slot: int) -> Counts:
        per_cpu = self._table[self._table.Key(slot)]
        totals = [0] * 6
        for value in per_cpu:
            for i, field in enumerate(("packets", "bytes", "ipv4", "ipv6", "arp", "other")):
                totals[i] += int(getattr(value, field))
        return Counts(*totals)

    def close(self) -> None:
        self._bpf.cleanup()

    def __enter__(self) -> Observer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
