"""Tests that the documentation says what the code does, and that its links resolve."""
