"""Talking to the service: HTTP client, credentials, signing, the transport policy."""
