"""End-to-end tests: whole runs through the CLI, crashes, shutdowns, storms, resume."""
