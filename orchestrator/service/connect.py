"""What a command needs to talk to the service: settings, credentials and the client they make.

Built from resolved settings (never from argparse) by :func:`connection`; the CLI adds the
embedded simulator for ``--simulate`` on top (:mod:`orchestrator.cli.connection`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from orchestrator.config.settings import RunSettings
from orchestrator.errors import ConfigError, ErrorTable
from orchestrator.service.auth import (
    Authenticator,
    IamPasswordToken,
    Secret,
)
from orchestrator.service.client import ClientSettings, CsbsClient, Timeouts
from orchestrator.service.credentials import resolve_credentials

__all__ = ["Connection", "authenticator", "connection"]


@dataclass(frozen=True, slots=True)
class Connection:
    """Where to send requests and how to authenticate them, simulator included."""

    settings: RunSettings
    auth: Authenticator | None

    def client_settings(self) -> ClientSettings:
        s = self.settings
        return ClientSettings(
            endpoint=s.endpoint,
            region=s.region,
            timeouts=Timeouts(total_s=s.request_timeout),
            limit=max(256, s.concurrency * 2),
            verify_tls=s.verify_tls,
            error_table=ErrorTable.with_overrides(s.error_codes),
        )

    def client(self) -> CsbsClient:
        return CsbsClient(self.client_settings(), self.auth)


async def authenticator(settings: RunSettings, env: Mapping[str, str]) -> Authenticator:
    """The credential chain (docs/credentials.md): the environment, the IAM user of the
    settings, the SDK's profile file, then the ECS metadata service."""
    return await resolve_credentials(env, iam=lambda: _iam_user(settings))


def _iam_user(settings: RunSettings) -> Authenticator | None:
    if not (settings.iam_user and settings.iam_password):
        return None
    if not settings.iam_domain:
        raise ConfigError("IAM token auth needs the account's domain: set [auth] domain")
    iam = settings.iam_endpoint or _iam_endpoint(settings.region)
    return IamPasswordToken(
        iam, settings.iam_user, Secret(settings.iam_password), settings.iam_domain
    )


def _iam_endpoint(region: str | None) -> str:
    if not region:
        raise ConfigError("IAM token auth needs --iam-endpoint or a --region to derive it from")
    return f"https://iam.{region}.myhuaweicloud.com"


async def connection(settings: RunSettings, env: Mapping[str, str]) -> Connection:
    """The real service as the settings and the credential chain describe it."""
    return Connection(settings, await authenticator(settings, env))
