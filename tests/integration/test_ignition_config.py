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
from pytest_coreos.config import cloud_config
from pytest_coreos.config.ignition import ETCD_MEMBER_UNIT, render_ignition
from pytest_coreos.config.ignition import IgnitionError as from_ignition
from pytest_coreos.errors import ConfigError, IgnitionError
from pytest_coreos.image.agent import coreos_agent as agent
from pytest_coreos.options import ClusterSpec, resolve_spec
from pytest_coreos.session import boot
from pytest_coreos.session.factory import ClusterFactory

DATA = Path(__file__).parents[1] / "data" / "ignition"


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


@pytest.fixture
def factory(tmp_path: Path) -> Iterator[ClusterFactory]:
    session = ClusterFactory(ClusterSpec(instances=3), root=tmp_path / "session")
    yield session
    session.close()


def test_a_local_cluster_writes_one_valid_ignition_config_per_machine_and_runs_its_etcd(
    factory: ClusterFactory, validators: dict[str, jsonschema.Draft4Validator]
) -> None:
    cluster = factory(config="ignition")
    # The machines get Ignition; the workdir also keeps the cloud-config it is rendered
    # from, to read.
    assert cluster.discovery_url in cluster.user_data_path.read_text()
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
    boot.write_config(factory, cluster)
    written = boot.write_ignition(factory, cluster, "core-02", "10.0.0.2", "10.0.0.2")
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
        boot.write_config(factory, cluster)
    cluster.close()


def test_real_addresses_are_put_into_units_as_coreos_cloudinit_did() -> None:
    data = cloud_config.parse_user_data(
        "#cloud-config\ncoreos:\n  etcd2: {}\n  units:\n    - name: a.service\n"
        "      content: |\n        [Service]\n"
        "        ExecStart=/bin/echo $private_ipv4 \\$public_ipv4\n"
        "      drop-ins:\n        - name: x.conf\n          content: Environment=P=$public_ipv4\n",
        "ud",
    )
    config = render_ignition(
        data, ssh_public_key="ssh-ed25519 AAAA k", private_ipv4="10.0.0.5", public_ipv4="192.0.2.5"
    )
    unit = next(u for u in config["systemd"]["units"] if u["name"] == "a.service")
    assert unit["contents"] == "[Service]\nExecStart=/bin/echo 10.0.0.5 $public_ipv4\n"
    assert unit["dropins"] == [{"name": "x.conf", "contents": "Environment=P=192.0.2.5"}]
    # Without real addresses (one config for every machine) they stay as written.
    shared = render_ignition(data, ssh_public_key="ssh-ed25519 AAAA k")
    unit = next(u for u in shared["systemd"]["units"] if u["name"] == "a.service")
    assert "$private_ipv4" in unit["contents"]


# --- the stand-in box's agent, which applies Ignition on nspawn containers and VMs ----------


def test_the_agent_plans_files_units_users_and_lists_what_it_does_not_apply() -> None:
    config = {
        "ignition": {"version": "3.4.0", "config": {"merge": [{"source": "http://x"}]}},
        "kernelArguments": {"shouldExist": ["quiet"]},
        "storage": {
            "files": [
                {"path": "/etc/a", "mode": 0o600, "contents": {"source": "data:,a%20b%0A"}},
                {
                    "path": "/etc/b",
                    "contents": {"source": "data:;base64,aGk=", "compression": ""},
                },
                {"path": "/etc/hostname", "contents": {"source": "data:,core-07%0A"}},
            ],
            "links": [{"path": "/etc/l", "target": "/etc/a"}],
        },
        "systemd": {
            "units": [
                {
                    "name": "etcd-member.service",
                    "enabled": True,
                    "dropins": [{"name": "20.conf", "contents": "[Service]\n"}],
                },
                {"name": "x.service", "contents": "[Service]\n", "enabled": False},
                {"name": "locksmithd.service", "mask": True},
            ]
        },
        "passwd": {"users": [{"name": "core", "sshAuthorizedKeys": ["k1", "k2"], "groups": ["x"]}]},
    }
    plan = agent.plan_ignition(config, persistent=Path("/etc/systemd/system"))
    assert plan.files[Path("/etc/a")] == (b"a b\n", 0o600)
    assert plan.files[Path("/etc/b")] == (b"hi", 0o644)
    assert (
        plan.files[Path("/etc/systemd/system/etcd-member.service.d/20.conf")][0] == b"[Service]\n"
    )
    assert Path("/etc/systemd/system/x.service") in plan.files
    assert plan.hostname == "core-07"
    assert plan.users == {"core": ["k1", "k2"]}
    assert (plan.enables, plan.disables, plan.masks) == (
        ["etcd-member.service"],
        ["x.service"],
        ["locksmithd.service"],
    )
    assert plan.notes == [
        "not applied by the stand-in box: kernelArguments, ignition.config, storage.links, "
        "passwd.users[0].groups"
    ]


@pytest.mark.parametrize(
    ("config", "problem"),
    [
        ({"ignition": {"version": "2.2.0"}}, "not a spec 3 version"),
        (
            {
                "ignition": {"version": "3.4.0"},
                "storage": {"files": [{"path": "/x", "contents": {"source": "https://x/y"}}]},
            },
            "only data: URLs",
        ),
        (
            {"ignition": {"version": "3.4.0"}, "storage": {"files": [{"path": "rel"}]}},
            "not an absolute path",
        ),
        (
            {"ignition": {"version": "3.4.0"}, "systemd": {"units": [{"name": "../x.service"}]}},
            "is not a systemd unit name",
        ),
        (
            {"ignition": {"version": "3.4.0"}, "passwd": {"users": [{"name": "Root;"}]}},
            "is not a user name",
        ),
    ],
)
def test_the_agent_refuses_what_it_cannot_apply_safely(
    config: dict[str, Any], problem: str
) -> None:
    with pytest.raises(agent.AgentError, match=problem):
        agent.plan_ignition(config)


def test_the_agent_prefers_the_firmware_config_then_the_mounted_file(tmp_path: Path) -> None:
    firmware, mounted = tmp_path / "raw", tmp_path / "config.ign"
    assert agent.find_ignition((firmware, mounted)) is None
    mounted.write_text("{}")
    assert agent.find_ignition((firmware, mounted)) == mounted
    firmware.write_text("{}")
    assert agent.find_ignition((firmware, mounted)) == firmware
