"""``--coreos-config=ignition`` and ``--coreos-ignition``: how the options resolve, and the
Ignition configs a real local cluster writes (one per machine, with its own addresses,
valid against Ignition's published schema). Booting machines that apply them is in
``tests/test_nspawn.py`` (containers) and ``tests/e2e/`` (VMs)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from pytest_coreos import IgnitionError as exported
from pytest_coreos.cluster import ClusterFactory
from pytest_coreos.errors import ConfigError, IgnitionError
from pytest_coreos.ignition import ETCD_MEMBER_UNIT, SUPPORTED_VERSIONS
from pytest_coreos.ignition import IgnitionError as from_ignition
from pytest_coreos.options import ClusterSpec, resolve_spec

DATA = Path(__file__).parent / "data" / "ignition"
SCHEMA_DIR = Path(__file__).parents[2] / "shared" / "ignition-schema"


def resolve(cli: dict[str, Any], ini: dict[str, Any] | None = None) -> ClusterSpec:
    here = Path.cwd()
    return resolve_spec(
        lambda name: cli.get(name),
        lambda name: (ini or {}).get(name),
        invocation_dir=here,
        ini_dir=here,
    )


def test_ignition_error_is_one_class_importable_from_three_places() -> None:
    assert exported is IgnitionError is from_ignition
    assert issubclass(IgnitionError, ConfigError)


def test_config_defaults_to_cloud_config_and_ignition_implies_it() -> None:
    assert resolve({}).config == "cloud-config"
    assert resolve({"config": "ignition"}).config == "ignition"
    assert resolve({}, {"coreos_config": "ignition"}).config == "ignition"
    spec = resolve({"provider": "nspawn", "ignition": "x.ign"})
    assert (spec.config, spec.ignition) == ("ignition", Path.cwd() / "x.ign")
    assert ClusterSpec(provider="nspawn").replace(ignition=Path("x.ign")).config == "ignition"


@pytest.mark.parametrize(
    ("cli", "message"),
    [
        ({"config": "json"}, "--coreos-config: unknown value 'json'"),
        (
            {"provider": "nspawn", "ignition": "x.ign", "config": "cloud-config"},
            "--coreos-config: cloud-config does not go with --coreos-ignition",
        ),
        ({"ignition": "x.ign"}, "--coreos-ignition: the local provider runs etcd and sshd"),
        (
            {"provider": "ssh", "hosts": "core@h", "ssh_key": __file__, "config": "ignition"},
            "--coreos-config: the ssh provider attaches to machines that run already",
        ),
        (
            {"config": "ignition", "discovery": "static"},
            "--coreos-discovery: static does not go with --coreos-config=ignition",
        ),
    ],
)
def test_options_that_do_not_go_together(cli: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        resolve(cli)
    assert str(raised.value).startswith(message)


@pytest.fixture(scope="module")
def validators() -> dict[str, jsonschema.Draft4Validator]:
    found = {}
    for version in SUPPORTED_VERSIONS:
        schema = json.loads(
            (SCHEMA_DIR / f"ignition-v{version.rpartition('.')[0]}.json").read_text()
        )
        found[version] = jsonschema.Draft4Validator(schema)
    return found


@pytest.fixture
def factory(tmp_path: Path) -> Iterator[ClusterFactory]:
    session = ClusterFactory(ClusterSpec(instances=3), root=tmp_path / "session")
    yield session
    session.close()


def test_a_local_cluster_writes_one_valid_ignition_config_per_machine_and_runs_its_etcd(
    factory: ClusterFactory, validators: dict[str, jsonschema.Draft4Validator]
) -> None:
    cluster = factory(config="ignition")
    assert not cluster.user_data_path.exists()  # Ignition instead of cloud-config
    public_key = (factory.root / "id_ed25519.pub").read_text().strip()
    for machine in cluster.machines:
        config = json.loads((cluster.workdir / "ignition" / f"{machine.name}.ign").read_text())
        errors = list(validators[config["ignition"]["version"]].iter_errors(config))
        assert not errors, errors
        assert config["passwd"]["users"][0]["sshAuthorizedKeys"] == [public_key]
        assert config["storage"]["files"][0]["path"] == "/etc/hostname"
        unit = next(u for u in config["systemd"]["units"] if u["name"] == ETCD_MEMBER_UNIT)
        dropin = unit["dropins"][0]["contents"]
        address = machine.private_ipv4
        assert f'"ETCD_ADVERTISE_CLIENT_URLS=http://{address}:4001"' in dropin
        assert f'"ETCD_DISCOVERY={cluster.discovery_url}"' in dropin
        assert "$private_ipv4" not in dropin
    assert len(cluster.etcd.members()) == 3
    # Said once: the seed's fleet section has no Ignition equivalent.
    told = [n for n in cluster.notices if n.startswith("--coreos-config=ignition")]
    assert told == [
        "--coreos-config=ignition: Ignition does not carry these parts of the user-data: "
        "coreos.fleet"
    ]


def test_the_users_ignition_gets_the_discovery_url_and_nothing_else(
    factory: ClusterFactory, tmp_path: Path
) -> None:
    cluster = factory.create(
        ClusterSpec(provider="nspawn", ignition=DATA / "flatcar-etcd-member.ign")
    )
    cluster.workdir.mkdir(parents=True)
    cluster.discovery_url = "http://127.0.0.1:8087/" + "a" * 32
    cluster._write_config()
    written = cluster._write_ignition("core-02", "10.0.0.2", "10.0.0.2")
    assert written == cluster.workdir / "ignition" / "core-02.ign"
    config = json.loads(written.read_text())
    original = json.loads((DATA / "flatcar-etcd-member.ign").read_text())
    dropin = config["systemd"]["units"][0]["dropins"][0]["contents"]
    assert f'"ETCD_DISCOVERY={cluster.discovery_url}"' in dropin
    config["systemd"]["units"][0]["dropins"][0]["contents"] = original["systemd"]["units"][0][
        "dropins"
    ][0]["contents"]
    assert config == original
    # The handles reach etcd on the machine's private address, port 2379.
    assert cluster.user_data["coreos"]["etcd2"]["advertise-client-urls"] == (
        "http://$private_ipv4:2379"
    )
    cluster.close()


def test_an_ignition_config_with_no_etcd_unit_is_refused_naming_the_file(
    factory: ClusterFactory,
) -> None:
    cluster = factory.create(ClusterSpec(provider="nspawn", ignition=DATA / "no-etcd.ign"))
    cluster.workdir.mkdir(parents=True)
    cluster.discovery_url = "http://127.0.0.1:8087/" + "a" * 32
    with pytest.raises(IgnitionError, match=r"--coreos-ignition .*no-etcd.ign: no unit runs etcd"):
        cluster._write_config()
    cluster.close()
