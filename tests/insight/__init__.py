"""Tests of orchestrator.insight."""
