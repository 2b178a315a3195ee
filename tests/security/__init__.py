"""Tests against hostile servers, files and inputs: escapes, formulas, TLS, secrets."""
