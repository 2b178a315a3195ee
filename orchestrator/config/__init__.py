"""Settings: one table of options, resolved once (flags > environment > config file > defaults)."""
