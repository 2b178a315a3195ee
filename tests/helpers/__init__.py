"""Helpers shared by the tests: simulator processes and threads, manifests, ledger lines."""
