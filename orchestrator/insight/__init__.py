"""Insight: what the ledgers and the service say about the estate (reports, coverage)."""
