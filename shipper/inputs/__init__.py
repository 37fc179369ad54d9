"""Inputs other than `tail` (which has its own package, shipper/tail)."""
