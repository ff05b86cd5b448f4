"""Helper names from /proc/kallsyms: what an xlated dump's ``call`` immediates mean.

An xlated dump carries ``imm = helper address - __bpf_call_base`` (kernel/bpf/syscall.c
bpf_insn_prepare_dump); the addresses are only real for root (kptr_restrict).
"""

from __future__ import annotations


class Kallsyms:
    """Names of helper addresses, from /proc/kallsyms read once on first use.

    Looks up only the addresses asked for (a byte search per address) instead of parsing
    the whole 5 MB file: reading it is most of the cost. Helpers are core kernel text,
    listed before every module and BPF symbol (the lines ending in ``[module]`` or
    ``[bpf]``), so reading stops at the first of those: the kernel produces BPF
    programs' symbols slowly (on a node with 2,200 programs the whole file took 0.65 s,
    the core part 0.03 s).
    """

    def __init__(self, path: str = "/proc/kallsyms") -> None:
        self._path = path
        self._data: bytes | None = None
        self._base: int | None = None
        self._names: dict[int, str | None] = {}

    def _load(self) -> None:
        chunks: list[bytes] = []
        try:
            with open(self._path, "rb", buffering=0) as handle:
                while True:
                    chunk = handle.read(1 << 20)
                    if not chunk:
                        break
                    tail = chunk.find(b"\t[")  # the first module or BPF symbol
                    if tail >= 0:
                        chunks.append(chunk[: chunk.rfind(b"\n", 0, tail) + 1])
                        break
                    chunks.append(chunk)
        except OSError:
            chunks = []
        self._data = b"".join(chunks)
        end = self._data.find(b" __bpf_call_base\n")
        if end > 0:
            line = self._data[self._data.rfind(b"\n", 0, end) + 1 : end]
            address = int(line.split()[0], 16)
            self._base = address or None  # zeros: kptr_restrict hides addresses

    def helper_name(self, imm: int) -> str | None:
        if self._data is None:
            self._load()
        if self._base is None or self._data is None:
            return None
        address = self._base + imm
        if address not in self._names:
            self._names[address] = None
            at = self._data.find(b"%016x " % address)
            if at >= 0 and (at == 0 or self._data[at - 1] == 0x0A):
                line = self._data[at : self._data.find(b"\n", at)].split()
                if len(line) >= 3:
                    self._names[address] = line[2].decode()
        return self._names[address]
