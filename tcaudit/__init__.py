"""tcaudit: which eBPF tc classifiers run on this node, and what they hide from later ones."""

__version__ = "0.1.0"
