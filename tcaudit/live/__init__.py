"""Live tools beside the pipeline: they change or watch a running node.

The observer program and its counters, test traffic, ``probe`` (observers put into live
chains) and ``watch`` (who changes the hooks, and races between vendors).
"""
