"""Tests of orchestrator.service."""
