"""What the verdict analysis reads from the kernel: xlated code, prog arrays, helper names.

``KernelCode`` implements ``verdicts.CodeSource`` over bpf(2) (through ``kernel.bpf``) and
caches everything per instance, so one scan reads each program and each prog array once.

Helper calls in an xlated dump carry ``imm = helper address - __bpf_call_base``
(kernel/bpf/syscall.c bpf_insn_prepare_dump, with raw dumps allowed for root); names come
from /proc/kallsyms (``kernel.kallsyms``), read once and only when some program calls a
helper.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Mapping

from tcaudit.analysis import btf
from tcaudit.analysis.insns import decode
from tcaudit.analysis.results import ProgramCode
from tcaudit.kernel import bpf
from tcaudit.kernel.abi import BPF_FUNC_TAIL_CALL
from tcaudit.kernel.kallsyms import Kallsyms


class KernelCode:
    """``verdicts.CodeSource`` over the live kernel, with per-instance caches."""

    def __init__(self, kallsyms: Kallsyms | None = None) -> None:
        self._kallsyms = kallsyms or Kallsyms()
        self._code: dict[int, ProgramCode | None] = {}
        self._errors: dict[int, str] = {}
        self._map_ids: dict[int, tuple[int, ...]] = {}
        self._raw: dict[int, bytes] = {}
        self._names: dict[int, str] = {}
        self._starts: dict[int, tuple[int, ...]] = {}
        self._fetched: dict[int, bool] = {}
        self._arrays: dict[int, Mapping[int, int] | None] = {}
        self._rodata: dict[int, bytes | None] = {}
        self._load_times: dict[int, int | None] = {}
        self._cb: tuple[int, int] | bool | None = False

    # -- CodeSource -----------------------------------------------------------------------

    def helper_name(self, imm: int) -> str | None:
        if imm == BPF_FUNC_TAIL_CALL:
            return "bpf_tail_call"  # the dump turns tail calls back into `call 12`
        return self._kallsyms.helper_name(imm)

    def prog_array(self, map_id: int) -> Mapping[int, int] | None:
        if map_id not in self._arrays:
            try:
                self._arrays[map_id] = bpf.prog_array_slots(map_id)
            except OSError:
                self._arrays[map_id] = None
        return self._arrays[map_id]

    def program(self, prog_id: int) -> ProgramCode | None:
        if prog_id not in self._code:
            self._code[prog_id] = None
            if self.readable(prog_id):
                self._code[prog_id] = ProgramCode(
                    prog_id=prog_id,
                    name=self._names[prog_id],
                    insns=decode(self._raw[prog_id]),
                    func_starts=self._starts[prog_id],
                    map_ids=self._map_ids[prog_id],
                )
        return self._code[prog_id]

    # -- raw code, not decoded (shapes.ShapeSource) -------------------------------------

    def readable(self, prog_id: int) -> bool:
        """The program's code could be read (it is read once, not decoded)."""
        if prog_id not in self._fetched:
            self._fetched[prog_id] = self._read(prog_id)
        return self._fetched[prog_id]

    def raw(self, prog_id: int) -> bytes | None:
        return self._raw.get(prog_id) if self.readable(prog_id) else None

    def map_ids_of(self, prog_id: int) -> tuple[int, ...]:
        return self._map_ids.get(prog_id, ()) if self.readable(prog_id) else ()

    def func_starts_of(self, prog_id: int) -> tuple[int, ...]:
        return self._starts.get(prog_id, (0,)) if self.readable(prog_id) else (0,)

    def load_time(self, prog_id: int) -> int | None:
        """The program's load time (CLOCK_BOOTTIME ns): with the id, it names the code."""
        if prog_id not in self._load_times:
            try:
                fd = bpf.prog_fd_by_id(prog_id)
            except OSError:
                self._load_times[prog_id] = None
            else:
                try:
                    self._load_times[prog_id] = bpf.prog_load_time(fd)
                except OSError:
                    self._load_times[prog_id] = None
                finally:
                    os.close(fd)
        return self._load_times[prog_id]

    def rodata(self, map_id: int) -> bytes | None:
        """Element 0 of a frozen, program-read-only array map (bpf_map_is_rdonly)."""
        if map_id not in self._rodata:
            self._rodata[map_id] = bpf.readonly_array_value(map_id)
        return self._rodata[map_id]

    def cb_range(self) -> tuple[int, int] | None:
        """Where ``__sk_buff.cb[]`` lives in ``struct sk_buff``, from the kernel's BTF."""
        if self._cb is False:
            self._cb = btf.skb_cb_data_range()
        return self._cb  # type: ignore[return-value]

    # -- extras -----------------------------------------------------------------------------

    def error(self, prog_id: int) -> str | None:
        """Why ``program(prog_id)`` is None."""
        return self._errors.get(prog_id)

    def cache_key(self, prog_id: int) -> str | None:
        """Hash of the xlated code, the map ids and the slots of its prog arrays.

        Not the tag: the tag is computed before the verifier rewrites the program, so
        equal tags can hide different code (and different map ids).
        """
        if not self.readable(prog_id):
            return None
        import hashlib  # (an analysis needs it; a warm scan reads load times only)

        digest = hashlib.sha256(self._raw[prog_id])
        for map_id in self._map_ids[prog_id]:
            digest.update(struct.pack("=I", map_id))
            slots = self.prog_array(map_id)
            if slots:
                digest.update(repr(sorted(slots.items())).encode())
        return digest.hexdigest()

    def _read(self, prog_id: int) -> bool:
        try:
            fd = bpf.prog_fd_by_id(prog_id)
        except OSError as err:
            self._errors[prog_id] = f"program {prog_id} unreadable: {err.strerror}"
            return False
        try:
            info = bpf.prog_info(fd, with_code=True)
        except OSError as err:
            self._errors[prog_id] = f"program {prog_id} code unreadable: {err.strerror}"
            return False
        finally:
            os.close(fd)
        if not info.xlated or len(info.xlated) % 8:
            self._errors[prog_id] = f"program {prog_id}: the kernel gave no instructions"
            return False
        self._raw[prog_id] = info.xlated
        self._map_ids[prog_id] = tuple(info.map_ids)
        self._names[prog_id] = info.name
        self._starts[prog_id] = info.func_starts or (0,)
        self._load_times.setdefault(prog_id, info.load_time_ns)
        return True
