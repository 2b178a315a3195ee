"""Which endpoints the tool may talk to, and which of them may see a credential.

* ``https://`` anywhere: yes, with the certificate verified (the system store, or
  ``--ca-file`` for a private CA such as Huawei Cloud Stack's or a TLS-inspecting proxy's).
* ``http://`` to a loopback host (``localhost``, ``127.0.0.0/8``, ``::1``): yes. Nothing
  leaves the machine; the simulator and tunnels live there.
* ``http://`` to any other host: refused, unless ``--insecure`` is given. Even then no
  credential travels over it (:func:`refuse_credentials_over_plain_http`): an IAM password,
  a token or a request signature sent in clear text can be read, or replayed, by anyone on
  the path.

Every decision is made on the URL's text, before any name lookup or connection.
"""

from __future__ import annotations

import ipaddress

import yarl

from orchestrator.errors import ConfigError

__all__ = [
    "check_endpoint",
    "is_loopback_host",
    "plain_http_remote",
    "refuse_credentials_over_plain_http",
]


def is_loopback_host(host: str | None) -> bool:
    """True for ``localhost`` (and ``*.localhost``, RFC 6761) and loopback IP literals; no DNS."""
    if not host:
        return False
    name = host.strip("[]").rstrip(".").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def plain_http_remote(url: yarl.URL) -> bool:
    """A plain-HTTP URL whose host is not loopback."""
    return url.scheme == "http" and not is_loopback_host(url.host)


def check_endpoint(url: str, *, insecure: bool, what: str = "endpoint") -> None:
    """Refuse a plain-HTTP ``url`` to a non-loopback host unless ``insecure``.

    Raises :class:`ConfigError` (exit 2); the message names the host, never the URL's
    credentials (a URL with ``user:password@`` is refused elsewhere).
    """
    try:
        parsed = yarl.URL(url)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"invalid {what} URL: {exc}") from None
    if plain_http_remote(parsed) and not insecure:
        raise ConfigError(
            f"{what} http://{parsed.host}: plain HTTP to a host that is not loopback is "
            "refused (credentials would travel in clear text); use https:// (with --ca-file "
            "for a private CA), or pass --insecure for an endpoint that needs no credentials"
        )


def refuse_credentials_over_plain_http(url: yarl.URL, what: str = "request to") -> None:
    """The last guard before a credential is attached: never over plain HTTP off loopback,
    whatever ``--insecure`` says. Raises :class:`ConfigError`."""
    if plain_http_remote(url):
        raise ConfigError(
            f"{what} http://{url.host}: credentials are never sent over plain HTTP to a "
            "host that is not loopback, not even with --insecure; use https:// (with "
            "--ca-file for a private CA)"
        )
