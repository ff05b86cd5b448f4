"""The verdict engine: which values a tc/TCX BPF program can return, and what they mean.

Pure code over instructions, apart from ``kernelcode`` (what it reads from the kernel):

* ``insns``: decoding, encoding and disassembly of eBPF instructions;
* ``domain``: the abstract values (constant sets, bounds with known bits, pointers);
* ``helpers``: return-value contracts of kernel helpers;
* ``prepare``: per-program instruction tuples and block leaders;
* ``interp``: the abstract interpreter of one program;
* ``closure``: the tail-call closure and the public ``analyse()``;
* ``meaning``: TC_ACT_*/TCX_* values and what they mean for an attach mode;
* ``attach``: a ``Verdict`` on every scan entry, cached.

Nothing is imported here, so ``import tcaudit.analysis.x`` stays cheap.
"""
