"""Tests of orchestrator.ledger."""
