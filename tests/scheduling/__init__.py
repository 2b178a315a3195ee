"""Tests of orchestrator.scheduling."""
