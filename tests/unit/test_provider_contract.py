"""Every registered provider keeps the provider contract
(:mod:`pytest_coreos.providers.protocol`): its declarations, its checks, and the
signatures of what it does; and every deployment class keeps the deployment contract."""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import re
import typing
from pathlib import Path

import pytest

from pytest_coreos import providers
from pytest_coreos.errors import ConfigError
from pytest_coreos.options import ClusterSpec, resolve_spec
from pytest_coreos.providers.protocol import Capabilities, Deployment, Provider

NAMES = providers.names()


def _members(protocol: type) -> dict[str, object]:
    """The protocol's methods and properties, and its annotated attributes."""
    members: dict[str, object] = {
        name: value
        for name, value in vars(protocol).items()
        if not name.startswith("_") and (callable(value) or isinstance(value, property))
    }
    members.update(dict.fromkeys(typing.get_type_hints(protocol, include_extras=False)))
    return members


def _parameters(function: object) -> list[tuple[str, object]]:
    signature = inspect.signature(function)  # type: ignore[arg-type]
    return [(p.name, p.kind) for p in signature.parameters.values() if p.name != "self"]


def test_the_registry_names_five_providers_once() -> None:
    assert NAMES == ("local", "vagrant", "ssh", "nspawn", "qemu")
    assert len(set(NAMES)) == len(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_each_provider_keeps_the_protocol(name: str) -> None:
    provider = providers.get_provider(name)
    assert provider.name == name
    assert isinstance(provider.capabilities, Capabilities)
    assert provider.default_discovery in ("local", "public", "static")
    for member, declared in _members(Provider).items():
        assert hasattr(provider, member), f"{name} lacks {member}"
        if callable(declared):
            assert _parameters(getattr(provider, member)) == _parameters(declared), (
                f"{name}.{member} differs from the protocol"
            )


@pytest.mark.parametrize("name", NAMES)
def test_each_provider_serves_its_default_spec_and_says_so_in_the_header(
    name: str, tmp_path: Path
) -> None:
    provider = providers.get_provider(name)
    key = tmp_path / "key"
    key.write_text("not checked here")
    spec = ClusterSpec(
        provider=name,
        discovery=provider.default_discovery,
        hosts=("core@192.0.2.1",),
        ssh_key=key,
    )
    provider.check(spec)
    settled = provider.settle(spec, instances_given=False)
    assert isinstance(settled, ClusterSpec)
    assert isinstance(provider.report_header(settled), str)


@pytest.mark.parametrize(
    "name", [name for name in NAMES if not providers.get_provider(name).capabilities.attach]
)
def test_a_provider_that_cannot_attach_says_so_naming_the_option(name: str) -> None:
    with pytest.raises(ConfigError, match="--coreos-reuse"):
        providers.get_provider(name).attach(None, {})  # type: ignore[arg-type]


@pytest.mark.parametrize("name", NAMES)
def test_only_providers_with_ignition_take_an_ignition_config(name: str) -> None:
    provider = providers.get_provider(name)
    spec = ClusterSpec(
        provider=name,
        discovery="local" if name != "vagrant" else "public",
        ignition=Path("x.ign"),
        config="ignition",
    )
    if provider.capabilities.ignition:
        provider.check(spec)
    else:
        with pytest.raises(ConfigError, match=r"--coreos-(ignition|config)"):
            provider.check(spec)


def _deployment_classes() -> list[type]:
    found = []
    for info in pkgutil.walk_packages(providers.__path__, "pytest_coreos.providers."):
        module = importlib.import_module(info.name)
        found += [
            value
            for value in vars(module).values()
            if inspect.isclass(value)
            and value.__module__ == module.__name__
            and value.__name__.endswith("Deployment")
            and not issubclass(value, typing.Protocol)  # type: ignore[arg-type]
        ]
    return found


def test_every_deployment_keeps_the_deployment_protocol() -> None:
    classes = _deployment_classes()
    assert {cls.__module__.split(".")[2] for cls in classes} == set(NAMES)
    for cls in classes:
        for member, declared in _members(Deployment).items():
            assert hasattr(cls, member) or member in ("notices",), f"{cls} lacks {member}"
            if callable(declared) and not isinstance(declared, property):
                assert _parameters(getattr(cls, member)) == _parameters(declared), (
                    f"{cls.__name__}.{member} differs from the protocol"
                )


def probes(source: str) -> list[int]:
    """The lines where ``source`` looks for a provider's feature: ``hasattr``, or
    ``getattr`` with a default, on a provider, deployment, module or boot context."""
    return [
        node.lineno
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and (node.func.id == "hasattr" or (node.func.id == "getattr" and len(node.args) == 3))
        and re.search(r"provider|deployment|module|context", ast.unparse(node.args[0]), re.I)
    ]


def test_no_provider_feature_is_probed_with_getattr() -> None:
    """Capabilities are declared and methods are part of the contract: nothing in the
    package looks a provider's feature up."""
    package = Path(providers.__file__).parents[1]
    found = [
        f"{path.relative_to(package)}:{line}"
        for path in sorted(package.rglob("*.py"))
        for line in probes(path.read_text())
    ]
    assert found == []


def test_the_probe_finder_finds_the_probes_there_were() -> None:
    source = (
        'partition = getattr(self._provider, "partition", None)\n'
        'find = getattr(_module(spec.provider), "discovery_address", None)\n'
        "worker = getattr(config, 'workerinput', None)\n"
    )
    assert probes(source) == [1, 2]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"provider": "nspawn", "discovery": "static"},
            "--coreos-discovery: static is not supported by the nspawn provider",
        ),
        (
            {"provider": "nspawn", "discovery": "public"},
            "--coreos-discovery: 'public' cannot be reached from machines in network namespaces",
        ),
        (
            {"network": "netns", "discovery": "http://127.0.0.1:8087"},
            "--coreos-discovery: 'http://127.0.0.1:8087' cannot be reached from machines",
        ),
        ({"ignition": "x.ign"}, "--coreos-ignition: the local provider runs etcd and sshd"),
        (
            {
                "provider": "vagrant",
                "discovery": "local",
                "vagrant_option": ["uri=qemu+ssh://core@remote.invalid/system"],
            },
            "--coreos-discovery: local discovery listens on this host's address",
        ),
        (
            {"provider": "vagrant", "vagrant_provider": "virtualbox", "config": "ignition"},
            "--coreos-config: Ignition is passed to VMs of the libvirt Vagrant provider only",
        ),
    ],
)
def test_combinations_a_provider_cannot_serve_are_refused_naming_the_options(
    options: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        resolve_spec(options.get, lambda name: None, invocation_dir=Path(), ini_dir=Path())
    assert str(raised.value).startswith(message)


def test_a_bad_combination_stops_the_run_before_any_test(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_never_runs():\n    raise AssertionError\n")
    result = pytester.runpytest_subprocess("--coreos-provider=nspawn", "--coreos-discovery=static")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--coreos-discovery: static is not supported by the nspawn*"])
    assert "test_never_runs" not in result.stdout.str()
