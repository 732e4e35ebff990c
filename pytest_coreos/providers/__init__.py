"""The providers, by name: the only place their names are written.

Each entry is a ``"module:Class"`` string, imported when a run first asks for that
provider (the class's own module is light: what boots machines is imported only when a
cluster boots). The contract they keep is :mod:`pytest_coreos.providers.protocol`.
"""

from __future__ import annotations

import functools
import importlib
from typing import TYPE_CHECKING

from pytest_coreos.errors import ConfigError

if TYPE_CHECKING:
    from pytest_coreos.providers.protocol import Provider

# The provider of a run that names none.
DEFAULT_PROVIDER = "local"
PROVIDERS = {
    "local": "pytest_coreos.providers.local:LocalProvider",
    "vagrant": "pytest_coreos.providers.vagrant:VagrantProvider",
    "ssh": "pytest_coreos.providers.ssh:SSHProvider",
    "nspawn": "pytest_coreos.providers.nspawn:NspawnProvider",
    "qemu": "pytest_coreos.providers.qemu:QemuProvider",
}


def names() -> tuple[str, ...]:
    """Every registered provider's name, in the order the documentation lists them."""
    return tuple(PROVIDERS)


@functools.cache
def get_provider(name: str) -> Provider:
    """The provider called ``name``; a ConfigError naming --coreos-provider for an unknown
    name."""
    try:
        module_name, _, class_name = PROVIDERS[name].partition(":")
    except KeyError:
        raise ConfigError(
            "--coreos-provider",
            f"unknown provider {name!r}",
            "allowed: " + ", ".join(sorted(PROVIDERS)),
        ) from None
    provider: Provider = getattr(importlib.import_module(module_name), class_name)()
    return provider
