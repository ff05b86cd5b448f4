"""Advice: pure answers built from a scan with verdicts and vendors.

The CWS priority recommendation (``recommend``), snapshot differences (``diff``), one
answer for a cluster (``merge``) and one program explained (``explain``).
"""
