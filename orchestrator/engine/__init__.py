"""The engine: what a run sends, when, and under which limits."""
