"""The observer program and its counters.

``Observer`` loads it as bytecode (live/observer_code.py mirrors bpf/verdict_probe.c
instruction by instruction) through the bpf gateway: no compiler and no kernel headers,
which most production nodes and the node image lack. ``CompiledObserver`` compiles the
C source with bcc; the tests run both on the same traffic and compare every counter,
and the lab keeps compiling its stand-ins with bcc (``import_bcc``, ``headers_present``:
without them it raises EnvironmentProblem with one line saying what to install, exit 3).
"""

from __future__ import annotations

import contextlib
import os
import platform
import struct
from importlib import resources
from pathlib import Path
from typing import Any

from tcaudit.errors import EnvironmentProblem
from tcaudit.model import Counts

MAX_SLOTS = 256  # PROBE_MAX_SLOTS in bpf/verdict_probe.h
BPF_MAP_TYPE_PERCPU_ARRAY = 6
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


def possible_cpus() -> int:
    """How many values a per-CPU map holds per key (/sys/devices/system/cpu/possible)."""
    try:
        text = Path("/sys/devices/system/cpu/possible").read_text().strip()
    except OSError:
        return os.cpu_count() or 1
    count = 0
    for part in text.split(","):
        low, _, high = part.partition("-")
        count += int(high or low) - int(low) + 1
    return count


class Observer:
    """The observer loaded from bytecode, and its per-slot counters (one program, many
    slots); needs neither bcc nor kernel headers."""

    def __init__(self) -> None:
        from tcaudit.kernel import bpf
        from tcaudit.live.observer_code import COUNTS_SIZE, empty_insns, observer_insns

        self._bpf = bpf
        self._size = COUNTS_SIZE
        self._cpus = possible_cpus()
        try:
            self._map = bpf.map_create(
                BPF_MAP_TYPE_PERCPU_ARRAY, 4, COUNTS_SIZE, MAX_SLOTS, "probe_counts"
            )
        except OSError as err:
            raise EnvironmentProblem(f"cannot create the observer's counters: {err}") from None
        try:
            self._fn = bpf.prog_load(observer_insns(self._map), name="observe")
            self._empty = bpf.prog_load(empty_insns(), name="empty")
        except OSError as err:
            os.close(self._map)
            raise EnvironmentProblem(f"the kernel refused the observer program: {err}") from None

    @property
    def fd(self) -> int:
        return self._fn

    @property
    def empty_fd(self) -> int:
        """A program that only returns TC_ACT_UNSPEC (the benchmark's baseline)."""
        return self._empty

    def counts(self, slot: int) -> Counts:
        stride = (self._size + 7) & ~7
        raw = self._bpf.map_lookup(self._map, slot.to_bytes(4, "little"), stride * self._cpus)
        totals = [0] * 6
        for cpu in range(self._cpus if raw else 0):
            assert raw is not None
            values = struct.unpack_from("=6Q", raw, cpu * stride)
            totals = [a + b for a, b in zip(totals, values, strict=True)]
        return Counts(*totals)

    def close(self) -> None:
        for fd in (self._fn, self._empty, self._map):
            with contextlib.suppress(OSError):
                os.close(fd)

    def __enter__(self) -> Observer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class CompiledObserver:
    """bpf/verdict_probe.c compiled by bcc: the reference the bytecode is checked against
    (needs bcc and kernel headers)."""

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

    def __enter__(self) -> CompiledObserver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
