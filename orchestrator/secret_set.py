"""The secret strings a process knows, and scrubbing them out of text in every form they take.

A secret can reach text raw (an error message echoing a token), JSON-escaped (a log line:
``a"b`` is written ``a\\"b``), ``repr``-escaped (structlog's fallback for an object it cannot
render: ``'a\\'b'``), or both at once (a ``repr`` inside a JSON line). :class:`SecretSet` keeps
every one of those forms, longest first, and replaces each occurrence with ``***``.

The set grows while the process runs: an IAM token is learnt at the first request, an ECS
agency token at each refresh. :meth:`SecretSet.add` publishes a new tuple of forms (copy on
write), so readers in other threads see either the old set or the new one, never half of it,
and the hot path (one log line) pays one attribute read when nothing is secret.
"""

from __future__ import annotations

from collections.abc import Iterable

import orjson

__all__ = ["MASK", "MIN_LENGTH", "SecretSet"]

MASK = "***"
_MASK_BYTES = MASK.encode()
#: Shorter values are not masked. A mistyped credential of one or two characters (``a``)
#: would otherwise be replaced inside every word of every log line (``"timest***mp"``),
#: breaking the JSON keys operators read with jq, and a value that short hides nothing: no
#: access key, secret key, token or IAM password is under 8 characters.
MIN_LENGTH = 4


def _forms(secret: str) -> set[str]:
    """``secret`` as it may appear in text: raw, JSON-escaped, repr-escaped, and the escapes
    of those escapes (a repr inside a JSON line, a JSON string inside another)."""

    def json_inner(text: str) -> str:
        return orjson.dumps(text).decode()[1:-1]

    def repr_inner(text: str) -> str:
        return repr(text)[1:-1]

    forms = {secret, json_inner(secret), repr_inner(secret)}
    forms |= {json_inner(form) for form in list(forms)}
    forms |= {repr_inner(form) for form in list(forms)}
    return forms


class SecretSet:
    """Known secrets; :meth:`scrub` and :meth:`scrub_bytes` mask them. Never prints them."""

    __slots__ = ("_forms", "_known", "_raw")

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._known: frozenset[str] = frozenset()
        self._forms: tuple[str, ...] = ()
        self._raw: tuple[bytes, ...] = ()
        self.update(secrets)

    def __repr__(self) -> str:
        return f"SecretSet({len(self._known)} secrets)"

    def __bool__(self) -> bool:
        return bool(self._forms)

    def __contains__(self, value: object) -> bool:
        return value in self._known

    def add(self, secret: str | None) -> None:
        """Learn one more secret (ignored when shorter than :data:`MIN_LENGTH` or known)."""
        if secret and len(secret) >= MIN_LENGTH and secret not in self._known:
            self.update((secret,))

    def update(self, secrets: Iterable[str]) -> None:
        new = {s for s in secrets if len(s) >= MIN_LENGTH} - self._known
        if not new:
            return
        known = self._known | new
        forms: set[str] = set()
        for secret in known:
            forms |= _forms(secret)
        # Longest first: a secret that contains another is masked whole.
        ordered = tuple(sorted(forms, key=len, reverse=True))
        # Publish forms before the membership set: a reader never skips a known secret.
        self._forms, self._raw = ordered, tuple(form.encode() for form in ordered)
        self._known = frozenset(known)

    def scrub(self, text: str) -> str:
        """``text`` with every known secret, in every form, replaced by ``***``."""
        for form in self._forms:
            if form in text:
                text = text.replace(form, MASK)
        return text

    def scrub_bytes(self, data: bytes) -> bytes:
        for raw in self._raw:
            if raw in data:
                data = data.replace(raw, _MASK_BYTES)
        return data
