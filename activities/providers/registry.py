"""Build configured providers by name. Adapters are imported lazily: a deployment that
uses only Okta never imports boto3."""

from __future__ import annotations

import importlib
from typing import Any

from activities.providers.base import IdentityProvider
from stanch.config import ProviderSettings, Settings

# adapter type → "module:Class"; each Class has `from_settings(name, ProviderSettings, Settings)`.
ADAPTERS: dict[str, str] = {
    "mock": "activities.providers.mock:MockProvider",
    "aws_iam": "activities.providers.aws_iam:AwsIamProvider",
    "scim": "activities.providers.scim:ScimProvider",
    "vault": "activities.providers.vault:VaultProvider",
    "ldap": "activities.providers.ldap:LdapProvider",
    "okta": "activities.providers.okta:OktaProvider",
    "entra": "activities.providers.entra:EntraProvider",
}


class UnknownProvider(KeyError):
    pass


def build_provider(name: str, settings: Settings) -> IdentityProvider:
    conf: ProviderSettings | None = settings.providers.get(name)
    if conf is None:
        raise UnknownProvider(f"provider {name!r} is not configured (known: "
                              f"{', '.join(sorted(settings.providers)) or 'none'})")
    target = ADAPTERS.get(conf.type)
    if target is None:
        raise UnknownProvider(f"provider {name!r}: unknown adapter type {conf.type!r}")
    module_name, _, cls_name = target.partition(":")
    cls: Any = getattr(importlib.import_module(module_name), cls_name)
    provider: IdentityProvider = cls.from_settings(name, conf, settings)
    return provider


class ProviderPool:
    """One adapter instance per configured provider name, created on first use."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._providers: dict[str, IdentityProvider] = {}

    def get(self, name: str) -> IdentityProvider:
        if name not in self._providers:
            self._providers[name] = build_provider(name, self._settings)
        return self._providers[name]

    async def aclose(self) -> None:
        for p in self._providers.values():
            await p.aclose()
        self._providers.clear()
