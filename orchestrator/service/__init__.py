"""The service: the calls the engine needs, HTTP client, auth and signing."""
