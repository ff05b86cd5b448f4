"""Vendors: who put each classifier on a hook (registry, attribution, CWS detection)."""
