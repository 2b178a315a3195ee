"""What a command needs to talk to the service: settings, credentials and the client they make.

Built from resolved settings (never from argparse) by :func:`connection`; the CLI adds the
embedded simulator for ``--simulate`` on top (:mod:`orchestrator.cli.connection`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import structlog
import yarl

from orchestrator.config.settings import RunSettings
from orchestrator.errors import ConfigError
from orchestrator.secret_set import SecretSet
from orchestrator.service.auth import Authenticator, Secret
from orchestrator.service.cbr import CbrClient
from orchestrator.service.client import CsbsClient
from orchestrator.service.credentials import resolve_credentials
from orchestrator.service.settings import ClientSettings
from orchestrator.service.tokens import IamPasswordToken
from orchestrator.service.transport_policy import (
    check_endpoint,
    refuse_credentials_over_plain_http,
)

__all__ = ["Connection", "authenticator", "check_transport", "connection"]

log = structlog.get_logger("orchestrator.connect")


@dataclass(frozen=True, slots=True)
class Connection:
    """Where to send requests and how to authenticate them, simulator included."""

    settings: RunSettings
    auth: Authenticator | None
    secrets: SecretSet | None = None
    """The log redactor's secrets: the client adds the tokens it learns, and scrubs them
    (and everything else in it) out of the error messages the ledger keeps."""

    def client(self) -> CsbsClient:
        """The client of the run's service (``--service``): CSBS v1, or CBR v3."""
        settings = ClientSettings.from_settings(self.settings)
        if self.settings.connection.service == "cbr":
            return CbrClient(settings, self.auth, secrets=self.secrets)
        return CsbsClient(settings, self.auth, secrets=self.secrets)


async def authenticator(settings: RunSettings, env: Mapping[str, str]) -> Authenticator:
    """The credential chain (docs/credentials.md): the environment, the IAM user of the
    settings, the SDK's profile file, then the ECS metadata service."""
    return await resolve_credentials(env, iam=lambda: _iam_user(settings))


def _iam_user(settings: RunSettings) -> Authenticator | None:
    if not (settings.auth.iam_user and settings.auth.iam_password):
        return None
    if not settings.auth.iam_domain:
        raise ConfigError("IAM token auth needs the account's domain: set [auth] domain")
    iam = settings.auth.iam_endpoint or _iam_endpoint(settings.connection.region)
    return IamPasswordToken(
        iam, settings.auth.iam_user, Secret(settings.auth.iam_password), settings.auth.iam_domain
    )


def _iam_endpoint(region: str | None) -> str:
    if not region:
        raise ConfigError("IAM token auth needs --iam-endpoint or a --region to derive it from")
    return f"https://iam.{region}.myhuaweicloud.com"


def check_transport(settings: RunSettings) -> None:
    """Refuse plain HTTP off loopback before anything is sent (unless ``--insecure``), and
    say once per run, loudly, that ``--insecure`` is on."""
    insecure = not settings.connection.verify_tls
    urls = [
        (settings.connection.endpoint, "endpoint"),
        (settings.auth.iam_endpoint, "IAM endpoint"),
    ]
    urls += [
        (url, f"endpoint of {region}") for region, url in settings.connection.endpoints.items()
    ]
    for url, what in urls:
        if url:
            check_endpoint(url, insecure=insecure, what=what)
            # Every command of the real service sends credentials: say so now, not at the
            # first request (the client refuses there too).
            refuse_credentials_over_plain_http(yarl.URL(url), what)
    if insecure:
        log.warning(
            "connection.insecure",
            detail="--insecure: TLS certificates are NOT verified and plain http:// to other "
            "hosts is accepted (no credential is sent over it); anyone on the network path "
            "can read or change this run's traffic",
        )


async def connection(
    settings: RunSettings, env: Mapping[str, str], secrets: SecretSet | None = None
) -> Connection:
    """The real service as the settings and the credential chain describe it; plain HTTP
    off loopback is refused before any credential is looked up."""
    check_transport(settings)
    return Connection(settings, await authenticator(settings, env), secrets)
