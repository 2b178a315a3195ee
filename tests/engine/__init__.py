"""Tests of orchestrator.engine."""
