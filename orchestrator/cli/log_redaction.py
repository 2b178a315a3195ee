"""The redaction every log line passes: secret-named keys masked, known secrets scrubbed.

Secrets: a redaction processor masks the values of keys named like a secret (``sk``,
``password``, ``pwd``, ``passphrase``, ``token``, ``authorization``, ``api_key``,
``private_key``, ``credential``, ``signature``, ``x-auth-token``, ``x-subject-token``, nested
dicts and lists too) and replaces every occurrence of the known secret strings in string
values with ``***``. Rendered lines are scrubbed once more for the secret strings in every
escaped form (JSON, ``repr``, both), which also covers ``repr()`` of odd objects and console
tracebacks. Tracebacks never show local variables (they hold headers and tokens). The known
secrets are a :class:`~orchestrator.secret_set.SecretSet` that grows during the run: the
client adds each token it learns (an IAM token) before sending it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from structlog.typing import EventDict, WrappedLogger

from orchestrator.secret_set import MASK, SecretSet

__all__ = ["Redactor"]

_KEY_CACHE_SIZE = 4096

# Words that mark a key as secret wherever they appear in it (``iam_password``, ``X-Auth-Token``).
_SECRET_WORDS = frozenset(
    {
        "secret",
        "sk",
        "password",
        "passwd",
        "pwd",
        "passphrase",
        "token",
        "authorization",
        "cookie",
        "credential",
        "credentials",
        "signature",
    }
)
# Long enough to be matched inside run-together names (``secretKey``, ``securitytoken``,
# ``api_key`` once separators are dropped); ``token`` only at the end, so ``total_tokens`` (a
# limiter size) stays readable.
_SECRET_INFIXES = (
    "secret",
    "password",
    "passwd",
    "passphrase",
    "authorization",
    "credential",
    "apikey",
    "privatekey",
    "accesskeysecret",
)
_SEPARATORS = str.maketrans("", "", "_-. ")
# Values that can hold no secret text; skipped before the (slow, ABC) Mapping check.
_PLAIN = frozenset({int, float, bool, type(None)})
_CAMEL = re.compile(r"([a-z0-9])([A-Z])")
_WORD = re.compile(r"[a-z0-9]+")


def _is_secret_key(key: str) -> bool:
    lowered = key.lower().translate(_SEPARATORS)
    if any(infix in lowered for infix in _SECRET_INFIXES):
        return True
    words = _WORD.findall(_CAMEL.sub(r"\1_\2", key).lower())
    return any(word in _SECRET_WORDS or word.endswith("token") for word in words)


class Redactor:
    """A structlog processor: mask secret-named keys, scrub known secret strings.

    Never mutates nested containers it was given (they may be the caller's live headers dict):
    it builds new ones.
    """

    __slots__ = ("_key_cache", "_secrets")

    def __init__(self, secrets: Iterable[str] | SecretSet = ()) -> None:
        # Shared, not copied: secrets learnt later in the run (tokens) are scrubbed too.
        self._secrets = secrets if isinstance(secrets, SecretSet) else SecretSet(secrets)
        # Event keys come from code, so this memo stays small; it keeps the per-line cost at one
        # dict lookup per key. Capped: nested dicts may be keyed by data (item ids).
        self._key_cache: dict[str, bool] = {}

    def __call__(self, logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
        # The hot path (every log line): one memo lookup per key, and work only for strings,
        # containers and secret keys. Replacing values while iterating is safe (no new keys).
        cache = self._key_cache
        for key, value in event_dict.items():
            secret = cache.get(key)
            if secret is None:
                secret = self._secret_key(key)
            if secret:
                if value is not None:
                    event_dict[key] = MASK
            else:
                kind = type(value)
                if kind is str:
                    if self._secrets:
                        event_dict[key] = self.scrub(value)
                elif kind not in _PLAIN and isinstance(value, Mapping | list | tuple):
                    event_dict[key] = self._clean(value)
        return event_dict

    def scrub(self, text: str) -> str:
        """``text`` with every known secret string (in every escaped form) replaced by ``***``."""
        return self._secrets.scrub(text)

    def scrub_bytes(self, data: bytes) -> bytes:
        return self._secrets.scrub_bytes(data)

    def _secret_key(self, key: object) -> bool:
        if not isinstance(key, str):
            return False
        known = self._key_cache.get(key)
        if known is None:
            known = _is_secret_key(key)
            if len(self._key_cache) < _KEY_CACHE_SIZE:
                self._key_cache[key] = known
        return known

    def _value(self, key: object, value: Any) -> Any:
        if value is None:
            return None  # "no password was set" is safe to show and useful
        if self._secret_key(key):
            return MASK
        return self._clean(value)

    def _clean(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.scrub(value) if self._secrets else value
        if isinstance(value, Mapping):
            return {k: self._value(k, v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self._clean(item) for item in value]
        return value
