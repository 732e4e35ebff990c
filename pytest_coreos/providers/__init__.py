"""Providers boot the machines of a cluster; each lives in its own module, imported only
when a cluster asks for it by name."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from types import ModuleType
from typing import Any

from pytest_coreos.errors import ConfigError
from pytest_coreos.options import ClusterSpec
from pytest_coreos.providers.base import BootContext, Provider, ProviderFactory
from pytest_coreos.state import ProviderReaper

PROVIDER_MODULES = {
    "local": "pytest_coreos.providers.local",
    "vagrant": "pytest_coreos.providers.vagrant",
    "ssh": "pytest_coreos.providers.ssh",
    "nspawn": "pytest_coreos.providers.nspawn",
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


def attach_provider(name: str, context: BootContext, record: Mapping[str, Any]) -> Provider:
    """A provider of ``name`` over machines that already run, described by ``record``."""
    attach = getattr(_module(name), "attach", None)
    if attach is None:
        raise ConfigError("--coreos-reuse", f"the {name} provider cannot attach to a cluster")
    provider: Provider = attach(context, record)
    return provider


def reaper(name: str) -> ProviderReaper | None:
    """The provider's ``reap(cluster_record)``, for what only it knows how to remove (VMs);
    None for providers whose resources are all processes and namespaces."""
    try:
        reap: ProviderReaper | None = getattr(_module(name), "reap", None)
    except ImportError:
        return None
    return reap
