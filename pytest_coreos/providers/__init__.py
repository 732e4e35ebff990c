"""Providers boot the machines of a cluster; each lives in its own module, imported only
when a cluster asks for it by name."""

from __future__ import annotations

import importlib

from pytest_coreos.cluster import ProviderFactory
from pytest_coreos.errors import ConfigError

PROVIDER_MODULES = {"local": "pytest_coreos.providers.local"}


def get_provider(name: str) -> ProviderFactory:
    """The ``create(context)`` function of the provider called ``name``."""
    try:
        module_name = PROVIDER_MODULES[name]
    except KeyError:
        raise ConfigError(
            "--coreos-provider",
            f"unknown provider {name!r}",
            "allowed: " + ", ".join(sorted(PROVIDER_MODULES)),
        ) from None
    module = importlib.import_module(module_name)
    factory: ProviderFactory = module.create
    return factory
