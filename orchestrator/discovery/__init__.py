"""Listing the estate through the API and turning it into replication pairs."""
