"""Providers boot the machines of a cluster; each lives in its own module, imported only
when a cluster asks for it by name."""

from __future__ import annotations

import importlib
from types import ModuleType

from pytest_coreos.errors import ConfigError
from pytest_coreos.options import ClusterSpec
from pytest_coreos.providers.base import ProviderFactory

PROVIDER_MODULES = {
    "local": "pytest_coreos.providers.local",
    "vagrant": "pytest_coreos.providers.vagrant",
}


def _module(name: str) -> ModuleType:
    try:
        module_name = PROVIDER_MODULES[name]
    except KeyError:
        raise ConfigError(
            "--coreos-provider",
            f"unknown provider {name!r}",
            "allowed: " + ", ".join(sorted(PROVIDER_MODULES)),
        ) from None
    return importlib.import_module(module_name)


def get_provider(name: str) -> ProviderFactory:
    """The ``create(context)`` function of the provider called ``name``."""
    factory: ProviderFactory = _module(name).create
    return factory


def discovery_address(spec: ClusterSpec) -> str | None:
    """Where the private discovery service must listen for ``spec``'s machines to reach
    it: the provider's ``discovery_address(spec)`` if it has one, else None (a loopback
    block of the service's own, enough for machines that live on this host)."""
    find = getattr(_module(spec.provider), "discovery_address", None)
    return find(spec) if find is not None else None
