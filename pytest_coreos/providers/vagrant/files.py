"""The cluster's Vagrant folder: the plugin's Vagrantfile or a copy of the user's
coreos-vagrant checkout, ``config.rb``, ``user-data``, ``pytest-coreos.json`` and
``pytest-coreos.rb``."""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_coreos.config import config_rb
from pytest_coreos.errors import ConfigError
from pytest_coreos.providers.vagrant.box import (
    BoxFile,
    box_version,
    extract_kernel,
    read_box_file,
    write_box_metadata,
)
from pytest_coreos.providers.vagrant.settings import (
    _OWN_GLOBALS,
    CHECKOUT_EXTENSION,
    DEFAULT_PRIVATE_NETWORK,
    OPTIONS_MARK,
    PLUGIN_RUBY,
    SETTINGS_FILE,
    TEMPLATE,
    box_settings,
    provider_options_block,
    read_config_rb,
    vagrant_provider_name,
)

if TYPE_CHECKING:
    from pytest_coreos.options import ClusterSpec


def _write(path: Path, text: str) -> None:
    """Write ``text`` as a new file: never through a symlink into the user's checkout."""
    if path.is_symlink() or path.exists():
        path.unlink()
    path.write_text(text)


# The plugin's Vagrantfile template and Ruby part, shipped next to this module.
_FILES = Path(__file__).resolve().parent


def prepare_directory(
    directory: Path,
    *,
    spec: ClusterSpec,
    user_data_text: str | None,
    machines: Sequence[Mapping[str, str]],
    name_prefix: str,
    network: str,
    box: str | None = None,
) -> list[str]:
    """Write the cluster's Vagrant folder; return notices for the user. ``box``: the box
    to boot where it is not ``spec.box`` as given (the stand-in box, built).

    With ``spec.vagrant_dir`` holding a Vagrantfile, the folder is a copy of it (without
    ``.vagrant`` and ``.git``) whose Vagrantfile loads the plugin's part at its end;
    otherwise the plugin's own Vagrantfile. Either way the plugin writes ``config.rb``
    (the user's simple settings, then the cluster's), ``user-data`` and its own files.
    """
    notices: list[str] = []
    user_settings: dict[str, str | int | bool] = {}
    checkout = spec.vagrant_dir
    if checkout is not None:
        if not checkout.is_dir():
            raise ConfigError("--coreos-vagrant-dir", f"{checkout} is not a folder")
        shutil.copytree(
            checkout,
            directory,
            symlinks=True,
            ignore=shutil.ignore_patterns(".vagrant", ".git"),
            dirs_exist_ok=True,
        )
        config = checkout / "config.rb"
        if config.is_file():
            user_settings, skipped = read_config_rb(config.read_text())
            if skipped:
                notices.append(
                    f"{config}: only its $name = value settings are used; left out: "
                    + "; ".join(line[:60] for line in skipped[:5])
                    + (" ..." if len(skipped) > 5 else "")
                )
            for name in _OWN_GLOBALS:
                if name in user_settings:
                    notices.append(f"{config}: ${name} is set by pytest-coreos")
                    del user_settings[name]
        given = spec.user_data
        if (checkout / "user-data").is_file() and not (
            given is not None and given.resolve() == (checkout / "user-data").resolve()
        ):
            notices.append(
                f"{checkout / 'user-data'} is replaced by the cluster's user-data "
                "(give it with --coreos-user-data to use it)"
            )
    else:
        directory.mkdir(parents=True, exist_ok=True)
    directory.mkdir(parents=True, exist_ok=True)
    files = _FILES
    vagrantfile = directory / "Vagrantfile"
    options = provider_options_block(vagrant_provider_name(spec), spec.vagrant_options)
    if checkout is not None and (checkout / "Vagrantfile").is_file():
        text = (checkout / "Vagrantfile").read_text().rstrip("\n") + "\n" + CHECKOUT_EXTENSION
        if options:
            text += 'Vagrant.configure("2") do |config|\n' + options + "end\n"
        _write(vagrantfile, text)
    else:
        _write(vagrantfile, files.joinpath(TEMPLATE).read_text().replace(OPTIONS_MARK, options))
    _write(directory / PLUGIN_RUBY, files.joinpath(PLUGIN_RUBY).read_text())
    extra: dict[str, str | int | bool] = dict(user_settings)
    extra.update(instance_name_prefix="core", private_network=network)
    _write(directory / "config.rb", config_rb.render_config_rb(spec.instances, spec.channel, extra))
    if user_data_text is not None:
        _write(directory / "user-data", user_data_text)
    elif (directory / "user-data").exists() or (directory / "user-data").is_symlink():
        (directory / "user-data").unlink()  # a checkout's: Ignition configures the machines
    box_entries: dict[str, str] = box_settings(box if box is not None else spec.box)
    if "box_file" in box_entries:
        image_version = user_settings.get("image_version")
        box_entries = _box_file_settings(
            directory,
            read_box_file(Path(box_entries["box_file"])),
            name=f"coreos-{spec.channel}",
            image_version=None if image_version is None else str(image_version),
            provider=vagrant_provider_name(spec),
            # A checkout's own box_version constraint (if any) picks among the versions.
            exact=checkout is None or not (checkout / "Vagrantfile").is_file(),
        )
    settings: dict[str, Any] = {
        "created_by": "pytest-coreos",
        "name_prefix": name_prefix,
        "machines": [dict(machine) for machine in machines],
        **box_entries,
    }
    _write(directory / SETTINGS_FILE, json.dumps(settings, indent=1) + "\n")
    return notices


def _box_file_settings(
    directory: Path,
    box: BoxFile,
    *,
    name: str,
    image_version: str | None,
    provider: str,
    exact: bool,
) -> dict[str, str]:
    """The box settings of a ``.box`` file: named ``name`` at its version through a
    metadata file (so that ``box_version`` constraints and ``box_url`` lines hold), and its
    own kernel and initrd copied out of it for libvirt (``boot/``)."""
    version = box_version(box, image_version)
    metadata = write_box_metadata(directory, name, version, box)
    entries = {
        "box": name,
        "box_url": metadata.as_uri(),
        "box_added_version": version,
    }
    if exact:
        entries["box_version"] = version
    if provider == "libvirt" and box.provider == "libvirt" and box.kernel_files:
        copied = extract_kernel(box, directory / "boot")
        for file_name, key in (("vmlinuz", "kernel"), ("initrd.img", "initrd")):
            if file_name in copied:
                copied[file_name].chmod(0o444)
                entries[key] = str(copied[file_name])
    return entries


def checkout_addresses(count: int) -> list[str]:
    """The addresses coreos-vagrant's own Vagrantfile gives its machines."""
    return [f"{DEFAULT_PRIVATE_NETWORK}.{100 + index}" for index in range(1, count + 1)]
