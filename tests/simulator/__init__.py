"""Tests of orchestrator.simulator."""
