"""The ``[connection.endpoints]`` check's message (the CLI: tests/cli/test_endpoint_keys.py)."""

from __future__ import annotations

from orchestrator.engine.endpoint_keys import unused_endpoints_note

_URL = "https://csbs.example.internal"


def test_every_key_used_says_nothing() -> None:
    endpoints = {"cn-north-4": _URL, "cn-east-3": _URL}
    assert unused_endpoints_note(endpoints, ["cn-north-4"], "cn-east-3") is None


def test_unused_keys_are_named_with_the_regions_used() -> None:
    endpoints = {"cn-nort-4": _URL, "cn-eats-3": _URL, "cn-east-2": _URL}
    note = unused_endpoints_note(endpoints, ["cn-east-2", ""], None)
    assert note is not None
    assert note.startswith("[connection.endpoints] 'cn-eats-3', 'cn-nort-4': no row of the ")
    assert "manifest uses these regions (a typo? the manifest uses cn-east-2;" in note
