"""Insight: what the ledger says, summarised for people and machines."""
