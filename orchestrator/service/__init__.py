"""The service as a client: HTTP calls, authentication, and reading its answers."""
