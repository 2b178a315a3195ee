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
    credentials_from_env,
)
from orchestrator.service.client import ClientSettings, CsbsClient, Timeouts

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


def authenticator(settings: RunSettings, env: Mapping[str, str]) -> Authenticator:
    """AK/SK or a token from the environment, else IAM user/password from the settings."""
    from_env = credentials_from_env(env)
    if from_env is not None:
        return from_env
    if settings.iam_user and settings.iam_password:
        if not settings.iam_domain:
            raise ConfigError("IAM token auth needs the account's domain: set [auth] domain")
        iam = settings.iam_endpoint or _iam_endpoint(settings.region)
        return IamPasswordToken(
            iam, settings.iam_user, Secret(settings.iam_password), settings.iam_domain
        )
    raise ConfigError(
        "no credentials: set HUAWEICLOUD_SDK_AK and HUAWEICLOUD_SDK_SK, or CSBS_AUTH_TOKEN, "
        "or an IAM user in [auth] with CSBS_IAM_PASSWORD; or try --simulate"
    )


def _iam_endpoint(region: str | None) -> str:
    if not region:
        raise ConfigError("IAM token auth needs --iam-endpoint or a --region to derive it from")
    return f"https://iam.{region}.myhuaweicloud.com"


def connection(settings: RunSettings, env: Mapping[str, str]) -> Connection:
    """The real service as the settings and the environment's credentials describe it."""
    return Connection(settings, authenticator(settings, env))
