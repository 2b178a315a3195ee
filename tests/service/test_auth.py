"""A secret that never shows itself."""

from __future__ import annotations

import pickle

import pytest

from orchestrator.service.auth import Secret

SK = "sk-Very-Secret-0123456789abcdefghij"


# -- Secret -----------------------------------------------------------------------------------


def test_secret_never_shows_its_value() -> None:
    secret = Secret(SK)
    assert secret.reveal() == SK
    for text in (repr(secret), str(secret), f"{secret}", f"{secret!r}", repr([secret])):
        assert SK not in text
        assert "***" in text
    assert bool(secret)
    assert not Secret("")
    with pytest.raises(TypeError):
        pickle.dumps(secret)
