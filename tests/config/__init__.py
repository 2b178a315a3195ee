"""Tests of orchestrator.config."""
