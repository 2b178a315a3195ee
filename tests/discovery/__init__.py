"""Tests of orchestrator.discovery."""
