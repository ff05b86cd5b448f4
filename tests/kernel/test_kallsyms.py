"""Helper names from kallsyms: only the core kernel part of the file is read."""

from __future__ import annotations

from pathlib import Path

from tcaudit.kernel.kallsyms import Kallsyms

BASE = 0xFFFFFFFF81200000


def test_helpers_are_found_and_module_and_bpf_symbols_are_not_read(tmp_path: Path) -> None:
    core = [f"{BASE - 0x100:016x} T _text", f"{BASE:016x} T __bpf_call_base",
            f"{BASE + 0x40:016x} T bpf_map_lookup_elem"]
    # enough core lines that the reads come in several chunks, a line cut between two
    core += [f"{BASE + 0x1000 + 16 * k:016x} t filler_{k}" for k in range(60_000)]
    core.append(f"{BASE + 0x900000:016x} T bpf_redirect")
    rest = [f"{0xFFFFFFFFC0000000 + k:016x} t mod_fn_{k}\t[veth]" for k in range(10)]
    rest.append(f"{0xFFFFFFFFC1000000:016x} t bpf_prog_1234_cil_from_contai\t[bpf]")
    path = tmp_path / "kallsyms"
    path.write_text("\n".join(core + rest) + "\n")
    syms = Kallsyms(str(path))
    assert syms.helper_name(0x40) == "bpf_map_lookup_elem"
    assert syms.helper_name(0x900000) == "bpf_redirect"
    assert syms.helper_name(0xFFFFFFFFC1000000 - BASE) is None  # a program, not a helper
    assert syms._data is not None and b"[veth]" not in syms._data
    assert syms._data.endswith(b"bpf_redirect\n")


def test_hidden_addresses_or_no_file_mean_no_names(tmp_path: Path) -> None:
    path = tmp_path / "kallsyms"
    path.write_text(f"{0:016x} T __bpf_call_base\n{0:016x} T bpf_map_lookup_elem\n")
    assert Kallsyms(str(path)).helper_name(0) is None
    assert Kallsyms(str(tmp_path / "missing")).helper_name(1) is None
