"""Outputs: each takes chunks, delivers them, and releases them (the acknowledgement)."""
