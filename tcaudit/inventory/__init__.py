"""Inventory: which namespaces, interfaces, hooks and classifiers a node has, read-only.

Namespaces are discovered and selected (``namespaces``), each hook read in execution
order (``scan``), every program's facts read once (``programs``); ``snapshot`` reads a
saved scan document back into the same model.
"""
