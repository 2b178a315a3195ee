"""Configuration: the table of options, the file read once, the resolved settings."""
