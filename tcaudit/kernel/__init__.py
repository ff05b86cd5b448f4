"""Kernel gateways: the only code that makes system calls that need root.

bpf(2) (``bpf``), namespaces (``nsfs``), rtnetlink (``rtnl``, with its pure decoders in
``rtnl_codec``), kallsyms, capability checks and the tc/TCX ABI constants (``abi``).
Nothing here imports any other tcaudit layer but ``errors``.
"""
