"""The vagrant provider without VMs: the cluster's Vagrant folder (the plugin's Vagrantfile,
or a copy of a user's coreos-vagrant checkout that leaves the original untouched), checked
by the real ``vagrant validate`` and ``vagrant status``; the settings it derives; and the
stand-in box's agent, whose decisions are pure functions. The VMs themselves boot in
``tests/e2e/test_vagrant_e2e.py``."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import vagrant

from pytest_coreos.config import cloud_config, etcd_env
from pytest_coreos.errors import ConfigError, CoreOSError
from pytest_coreos.image import builder
from pytest_coreos.image.agent import coreos_agent as agent
from pytest_coreos.options import ClusterSpec
from pytest_coreos.providers import common
from pytest_coreos.providers.vagrant import VagrantProvider, addresses, files, libvirt, machines
from pytest_coreos.providers.vagrant import box as vagrant_box
from pytest_coreos.providers.vagrant import settings as vagrant_settings
from pytest_coreos.providers.vagrant.output import parse_status

REPO = next(p for p in Path(__file__).resolve().parents if (p / "pyproject.toml").is_file())
DATA = Path(__file__).parents[1] / "data" / "vagrant"
CHECKOUT = DATA / "coreos-vagrant"
E2E_USER_DATA = Path(__file__).parents[1] / "e2e" / "data" / "user-data"
MACHINES = [
    {"name": "core-01", "ip": "172.17.8.101"},
    {"name": "core-02", "ip": "172.17.8.102"},
    {"name": "core-03", "ip": "172.17.8.103"},
]


@pytest.fixture
def vagrant_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Vagrant with a home of its own and no version check over the network."""
    if shutil.which("vagrant") is None:
        pytest.fail("vagrant is not installed; run scripts/bootstrap")
    home = tmp_path / "vagrant.d"
    monkeypatch.setenv("VAGRANT_HOME", str(home))
    monkeypatch.setenv("VAGRANT_CHECKPOINT_DISABLE", "1")
    return vagrant_settings.vagrant_environment("libvirt")


def _prepare(directory: Path, spec: ClusterSpec, **changes: object) -> list[str]:
    user_data = cloud_config.render_user_data(
        cloud_config.inject_discovery(
            cloud_config.default_user_data(), "http://172.17.8.1:8087/" + "a" * 32
        )
    )
    options: dict[str, object] = {
        "spec": spec,
        "user_data_text": user_data,
        "machines": MACHINES[: spec.instances],
        "name_prefix": "pytest-coreos-0123abcd-1-",
        "network": "172.17.8",
    }
    options.update(changes)
    return files.prepare_directory(directory, **options)  # type: ignore[arg-type]


def _box_file(path: Path, **metadata: object) -> Path:
    """A small ``.box`` of the stand-in's layout: metadata, a disk, a kernel and an initrd."""
    contents = {
        "metadata.json": json.dumps(
            {"provider": "libvirt", "format": "qcow2", "virtual_size": 4}
            | {"pytest_coreos_build": "0123456789abcdef"}
            | metadata
        ).encode(),
        "Vagrantfile": b'Vagrant.configure("2") { |config| }\n',
        "box.img": b"disk" * 1024,
        "vmlinuz": b"kernel",
        "initrd.img": b"initrd",
    }
    with tarfile.open(path, "w") as archive:
        for name, data in contents.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def _status(directory: Path, env: dict[str, str]) -> dict[str, str]:
    done = subprocess.run(
        ["vagrant", "status", "--machine-readable"],
        cwd=directory,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return parse_status(done.stdout)


def _snapshot(folder: Path) -> dict[str, tuple[str, int, float]]:
    """Every entry under ``folder``: its content hash (or link target), mode and mtime."""
    entries = {}
    for path in sorted(folder.rglob("*")):
        stat = path.lstat()
        if path.is_symlink():
            content = "-> " + os.readlink(path)
        elif path.is_file():
            content = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            content = "dir"
        entries[str(path.relative_to(folder))] = (content, stat.st_mode, stat.st_mtime)
    return entries


# --- the plugin's own Vagrantfile ----------------------------------------------------------


def test_the_plugins_folder_holds_vagrantfile_config_user_data_and_settings(
    tmp_path: Path,
) -> None:
    directory = tmp_path / "vagrant"
    box = _box_file(tmp_path / "stand-in.box")
    spec = ClusterSpec(provider="vagrant", instances=3, channel="beta", box=str(box))
    assert _prepare(directory, spec) == []
    assert sorted(p.name for p in directory.iterdir()) == [
        "Vagrantfile",
        "boot",
        "box-metadata.json",
        "config.rb",
        "pytest-coreos.json",
        "pytest-coreos.rb",
        "user-data",
    ]
    vagrantfile = (directory / "Vagrantfile").read_text()
    assert "config.vm.define vm_name" in vagrantfile
    assert 'load File.join(File.dirname(__FILE__), "pytest-coreos.rb")' in vagrantfile
    assert (directory / "config.rb").read_text() == (
        '$num_instances=3\n$update_channel="beta"\n'
        '$instance_name_prefix="core"\n$private_network="172.17.8"\n'
    )
    settings = json.loads((directory / "pytest-coreos.json").read_text())
    assert settings["machines"] == MACHINES
    assert settings["name_prefix"] == "pytest-coreos-0123abcd-1-"
    # named as CoreOS's boxes were, through a metadata file of its own
    version = f"1000.{int('0123456789abcdef'[:7], 16)}.0"
    assert settings["box"] == "coreos-beta"
    assert settings["box_version"] == version
    assert settings["box_url"] == (directory / "box-metadata.json").as_uri()
    metadata = json.loads((directory / "box-metadata.json").read_text())
    assert metadata["name"] == "coreos-beta"
    assert metadata["versions"] == [
        {"version": version, "providers": [{"name": "libvirt", "url": box.resolve().as_uri()}]}
    ]
    # its kernel and initrd, out of the box file, where QEMU's user may read them
    assert settings["kernel"] == str(directory / "boot" / "vmlinuz")
    assert settings["initrd"] == str(directory / "boot" / "initrd.img")
    assert (directory / "boot" / "vmlinuz").read_bytes() == b"kernel"
    assert (directory / "boot" / "vmlinuz").stat().st_mode & 0o777 == 0o444
    user_data = cloud_config.parse_user_data((directory / "user-data").read_text(), "user-data")
    assert user_data["coreos"]["etcd"]["discovery"].startswith("http://172.17.8.1:8087/")


def test_vagrant_validates_the_plugins_vagrantfile_and_sees_its_machines(
    tmp_path: Path, vagrant_env: dict[str, str]
) -> None:
    directory = tmp_path / "vagrant"
    _prepare(directory, ClusterSpec(provider="vagrant", instances=3, box="coreos-stable"))
    validated = vagrant.Vagrant(root=str(directory), env=vagrant_env).validate(str(directory))
    assert b"Vagrantfile validated successfully" in validated.stdout
    assert _status(directory, vagrant_env) == {
        "core-01": "not_created",
        "core-02": "not_created",
        "core-03": "not_created",
    }


def test_a_vagrantfile_error_is_reported_by_validate(
    tmp_path: Path, vagrant_env: dict[str, str]
) -> None:
    directory = tmp_path / "vagrant"
    _prepare(directory, ClusterSpec(provider="vagrant", instances=1, box="coreos-stable"))
    with (directory / "config.rb").open("a") as config:
        config.write("$vm_memory = \n")  # a syntax error, as a hand-edited config.rb has
    with pytest.raises(subprocess.CalledProcessError) as raised:
        vagrant.Vagrant(root=str(directory), env=vagrant_env).validate(str(directory))
    assert b"config.rb" in raised.value.stderr + raised.value.stdout


# --- a user's coreos-vagrant checkout --------------------------------------------------------


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A copy of the sample checkout, with what a real one has: .vagrant, .git, a symlink."""
    folder = tmp_path / "coreos-vagrant"
    shutil.copytree(CHECKOUT, folder)
    (folder / ".vagrant" / "machines" / "core-01" / "virtualbox").mkdir(parents=True)
    (folder / ".vagrant" / "machines" / "core-01" / "virtualbox" / "id").write_text("abc")
    (folder / ".git").mkdir()
    (folder / ".git" / "HEAD").write_text("ref: refs/heads/master\n")
    outside = tmp_path / "shared-user-data"
    shutil.move(folder / "user-data", outside)
    (folder / "user-data").symlink_to(outside)
    return folder


def test_a_checkout_is_used_on_a_copy_and_never_changed(
    tmp_path: Path, checkout: Path, vagrant_env: dict[str, str]
) -> None:
    before = _snapshot(checkout)
    outside = (tmp_path / "shared-user-data").read_bytes()
    directory = tmp_path / "cluster-1" / "vagrant"
    spec = ClusterSpec(provider="vagrant", instances=3, vagrant_dir=checkout, box="coreos-alpha")
    notices = _prepare(directory, spec)

    assert _snapshot(checkout) == before
    assert (tmp_path / "shared-user-data").read_bytes() == outside
    assert not (directory / ".vagrant").exists()
    assert not (directory / ".git").exists()
    assert not (directory / "user-data").is_symlink()
    copied = (directory / "Vagrantfile").read_text()
    assert copied.startswith((checkout / "Vagrantfile").read_text().rstrip("\n"))
    assert copied.endswith(vagrant_settings.CHECKOUT_EXTENSION)
    # its simple settings stay, its code (a discovery.etcd.io request) goes
    config = (directory / "config.rb").read_text()
    assert "$vm_memory=2048\n$vm_cpus=2\n" in config
    assert "$num_instances=3\n" in config
    assert "discovery.etcd.io" not in config
    assert any("left out" in notice and "open($new_discovery_url)" in notice for notice in notices)
    assert any("$update_channel is set by pytest-coreos" in notice for notice in notices)
    assert any("is replaced by the cluster's user-data" in notice for notice in notices)
    # given as the cluster's user-data, as the checkout's README says: nothing to say
    given = spec.replace(user_data=checkout / "user-data")
    again = _prepare(tmp_path / "cluster-2" / "vagrant", given)
    assert not any("is replaced" in notice for notice in again), again

    validated = vagrant.Vagrant(root=str(directory), env=vagrant_env).validate(str(directory))
    assert b"validated successfully" in validated.stdout
    assert set(_status(directory, vagrant_env)) == {"core-01", "core-02", "core-03"}


def test_a_checkout_with_only_a_config_rb_gets_the_plugins_vagrantfile(tmp_path: Path) -> None:
    folder = tmp_path / "settings"
    folder.mkdir()
    (folder / "config.rb").write_text('$vm_memory = 768\n$private_network = "10.20.30"\n')
    spec = ClusterSpec(provider="vagrant", instances=1, vagrant_dir=folder)
    assert vagrant_settings.private_network(spec) == "10.20.30"
    directory = tmp_path / "vagrant"
    _prepare(directory, spec, network=vagrant_settings.private_network(spec))
    assert "PytestCoreOS.configure_providers(config)" in (directory / "Vagrantfile").read_text()
    assert "$vm_memory=768\n" in (directory / "config.rb").read_text()
    assert '$private_network="10.20.30"\n' in (directory / "config.rb").read_text()


# --- settings ------------------------------------------------------------------------------


def test_config_rb_simple_settings_are_read_and_code_is_not() -> None:
    settings, skipped = vagrant_settings.read_config_rb(
        "# a comment\n"
        "$num_instances=1\n"
        "$vm_gui = false\n"
        "$vm_memory = 1024  # MiB\n"
        "$update_channel='alpha'\n"
        '$name = "a \\"quoted\\" word"\n'
        '$url="https://x/#{$num_instances}"\n'
        "$shared_folders = {}\n"
        "if ARGV[0].eql?('up')\n"
    )
    assert settings == {
        "num_instances": 1,
        "vm_gui": False,
        "vm_memory": 1024,
        "update_channel": "alpha",
        "name": 'a "quoted" word',
    }
    assert skipped == [
        '$url="https://x/#{$num_instances}"',
        "$shared_folders = {}",
        "if ARGV[0].eql?('up')",
    ]


def test_a_private_network_that_is_not_private_is_refused(tmp_path: Path) -> None:
    (tmp_path / "config.rb").write_text('$private_network = "8.8.8"\n')
    with pytest.raises(ConfigError, match="not a private network"):
        vagrant_settings.private_network(ClusterSpec(provider="vagrant", vagrant_dir=tmp_path))


def test_box_option_is_a_name_or_a_box_file(tmp_path: Path) -> None:
    assert vagrant_settings.box_settings(None) == {}
    assert vagrant_settings.box_settings("coreos-stable") == {"box": "coreos-stable"}
    with pytest.raises(ConfigError, match="not a file"):
        vagrant_settings.box_settings(str(tmp_path / "missing.box"))
    box = _box_file(tmp_path / "mine.box")
    assert vagrant_settings.box_settings(str(box)) == {"box_file": str(box.resolve())}


def test_a_box_file_is_added_under_the_version_config_rb_names(tmp_path: Path) -> None:
    box = vagrant_box.read_box_file(_box_file(tmp_path / "stand-in.box"))
    assert vagrant_box.box_version(box, "1122.2.0") == "1122.2.0"
    assert vagrant_box.box_version(box, "current") == vagrant_box.box_version(box)
    with pytest.raises(ConfigError, match="image_version"):
        vagrant_box.box_version(box, "latest; rm -rf /")
    # a box file of another origin: a version of its own all the same, above 308.0.1
    other = vagrant_box.read_box_file(_box_file(tmp_path / "other.box", pytest_coreos_build=None))
    assert other.build is None
    assert vagrant_box.box_version(other).startswith("1000.")


def test_a_non_box_file_is_a_usage_error(tmp_path: Path) -> None:
    not_a_box = tmp_path / "notes.box"
    not_a_box.write_text("not a tar")
    with pytest.raises(ConfigError, match=r"--coreos-box.*not a readable Vagrant box"):
        vagrant_box.read_box_file(not_a_box)


def test_older_stand_in_builds_leave_vagrants_boxes_and_others_stay(tmp_path: Path) -> None:
    folder = tmp_path / "boxes" / "coreos-stable"
    for version, build in (("1000.1.0", "aaaa"), ("1000.2.0", "bbbb"), ("1122.2.0", None)):
        (folder / version / "libvirt").mkdir(parents=True)
        metadata = {"provider": "libvirt"} | ({"pytest_coreos_build": build} if build else {})
        (folder / version / "libvirt" / "metadata.json").write_text(json.dumps(metadata))
    removed = vagrant_box.prune_stand_in_versions(tmp_path, "coreos-stable", "1000.2.0")
    assert removed == ["coreos-stable 1000.1.0"]
    assert sorted(path.name for path in folder.iterdir()) == ["1000.2.0", "1122.2.0"]


def test_clusters_of_one_session_get_addresses_of_their_own() -> None:
    first = addresses.claim_addresses("10.99.0", 3)
    second = addresses.claim_addresses("10.99.0", 2)
    try:
        assert first == ["10.99.0.101", "10.99.0.102", "10.99.0.103"]
        assert second == ["10.99.0.104", "10.99.0.105"]
        addresses.release_addresses(first)
        assert addresses.claim_addresses("10.99.0", 1) == ["10.99.0.101"]
        with pytest.raises(CoreOSError, match="already used"):
            addresses.claim_exact(["10.99.0.104"])
    finally:
        addresses.release_addresses(["10.99.0.101", *second])
    assert not addresses.addresses_in_use("10.99.0")


def test_etcd_handles_follow_the_user_data(tmp_path: Path) -> None:
    default = cloud_config.default_user_data()
    assert common.etcd_client_urls(default, "172.17.8.101") == ["http://172.17.8.101:4001"]
    e2e = cloud_config.load_user_data(E2E_USER_DATA)
    assert common.etcd_client_urls(e2e, "172.17.8.102") == ["http://172.17.8.102:2379"]


def test_vagrant_never_looks_for_updates_over_the_network(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("VAGRANT_VAGRANTFILE", "Elsewhere")
    env = vagrant_settings.vagrant_environment("libvirt")
    assert env["VAGRANT_CHECKPOINT_DISABLE"] == "1"
    assert env["VAGRANT_DEFAULT_PROVIDER"] == "libvirt"
    assert "VAGRANT_VAGRANTFILE" not in env


def test_discovery_address_only_for_local_discovery_on_libvirt() -> None:
    assert (
        VagrantProvider().discovery_address(ClusterSpec(provider="vagrant", discovery="public"))
        is None
    )
    spec = ClusterSpec(provider="vagrant", discovery="local", vagrant_provider="virtualbox")
    with pytest.raises(ConfigError, match="only the libvirt Vagrant provider"):
        VagrantProvider().discovery_address(spec)


def test_leftovers_are_only_ever_removed_by_the_plugins_prefix() -> None:
    with pytest.raises(ValueError, match="refusing"):
        libvirt.remove_libvirt_leftovers("")
    with pytest.raises(ValueError, match="refusing"):
        libvirt.remove_libvirt_leftovers("core-")


def test_reaping_a_folder_without_vagrant_settings_removes_nothing(tmp_path: Path) -> None:
    assert machines.reap_workdir(tmp_path) == []
    (tmp_path / "vagrant").mkdir()
    (tmp_path / "vagrant" / "pytest-coreos.json").write_text('{"name_prefix": "core-"}')
    assert machines.reap_workdir(tmp_path) == []


# --- the stand-in box's agent ------------------------------------------------------------------

# `ip -4 -o addr show scope global` on a machine of the stand-in box.
IP_ADDR = (
    "2: eth0    inet 192.168.121.138/24 brd 192.168.121.255 scope global dynamic eth0\\"
    "       valid_lft 3518sec preferred_lft 3518sec\n"
    "3: eth1    inet 172.17.8.101/24 brd 172.17.8.255 scope global eth1\\"
    "       valid_lft forever preferred_lft forever\n"
)
ROUTE = "default via 192.168.121.1 dev eth0 \n"


def test_the_agent_finds_the_private_address() -> None:
    addresses = agent.parse_addresses(IP_ADDR)
    assert addresses == [("eth0", "192.168.121.138"), ("eth1", "172.17.8.101")]
    defaults = agent.parse_default_interfaces(ROUTE)
    assert defaults == {"eth0"}
    # from /etc/environment, as the provisioner writes it
    environment = agent.read_environment('PATH="/usr/bin"\nCOREOS_PRIVATE_IPV4=172.17.8.105\n')
    assert agent.choose_private_address(environment, addresses, defaults) == "172.17.8.105"
    # else the interface that is not the management one
    assert agent.choose_private_address({}, addresses, defaults) == "172.17.8.101"
    assert agent.choose_private_address({}, addresses[:1], defaults) is None
    assert agent.choose_public_address({}, "172.17.8.101") == "172.17.8.101"
    with pytest.raises(agent.AgentError):
        agent.choose_private_address({"COREOS_PRIVATE_IPV4": "eth1"}, addresses, defaults)


def test_the_agent_uses_the_one_etcd_mapping_and_applies_units(tmp_path: Path) -> None:
    user_data = cloud_config.load_user_data(E2E_USER_DATA)
    todo = agent.plan(
        user_data,
        "172.17.8.101",
        "172.17.8.101",
        persistent=tmp_path / "etc",
        runtime=tmp_path / "run",
    )
    shared = etcd_env.etcd_environment(
        user_data, private_ipv4="172.17.8.101", public_ipv4="172.17.8.101"
    )
    # The user-data's own election timings (for emulated VMs) win over the stand-in's.
    assert shared.env["ETCD_HEARTBEAT_INTERVAL"] == "500"
    assert shared.env["ETCD_ELECTION_TIMEOUT"] == "5000"
    expected_env = {**shared.env, "ETCD_ENABLE_V2": "true", "ETCD_PRE_VOTE": "true"}
    assert todo.files[tmp_path / "run" / "etcd.service.d" / "20-cloudinit.conf"] == (
        agent.etcd_drop_in(expected_env)
    )
    hello = todo.files[tmp_path / "etc" / "hello.service"]
    assert 'echo "hello from 172.17.8.101 ($GREETING)"' in hello
    assert todo.files[tmp_path / "etc" / "hello.service.d" / "10-greeting.conf"] == (
        "[Service]\nEnvironment=GREETING=drop-in\n"
    )
    assert todo.enables == ["hello.service"]
    assert todo.commands == [
        ("start", "etcd2.service"),
        ("start", "fleet.service"),
        ("start", "myapp.service"),
        ("start", "hello.service"),
    ]
    # fleet's section, as coreos-cloudinit wrote it; its etcd is the machine's own.
    assert todo.files[tmp_path / "run" / "fleet.service.d" / "20-cloudinit.conf"] == (
        "[Service]\n"
        'Environment="FLEET_PUBLIC_IP=172.17.8.101"\n'
        'Environment="FLEET_METADATA=role=worker,address=172.17.8.101"\n'
        'Environment="FLEET_AGENT_TTL=60s"\n'
        'Environment="FLEET_ETCD_REQUEST_TIMEOUT=10"\n'
        'Environment="FLEET_ENGINE_RECONCILE_INTERVAL=10"\n'
        'Environment="FLEET_ETCD_SERVERS=http://172.17.8.101:2379"\n'
    )
    assert todo.notes == []


def test_the_agent_translates_the_seeds_etcd_04_section() -> None:
    todo = agent.plan(cloud_config.default_user_data(), "172.17.8.102", "172.17.8.102")
    drop_in = todo.files[agent.RUNTIME_UNITS / "etcd.service.d" / "20-cloudinit.conf"]
    assert 'Environment="ETCD_ADVERTISE_CLIENT_URLS=http://172.17.8.102:4001"' in drop_in
    assert 'Environment="ETCD_LISTEN_PEER_URLS=http://0.0.0.0:7001"' in drop_in
    assert 'Environment="ETCD_ENABLE_V2=true"' in drop_in


@pytest.mark.parametrize(
    ("etcd2", "expected"),
    [
        ({}, {"ETCD_HEARTBEAT_INTERVAL": "25", "ETCD_ELECTION_TIMEOUT": "250"}),
        ({"heartbeat-interval": 100}, {"ETCD_HEARTBEAT_INTERVAL": "100"}),
        ({"election-timeout": 2000}, {"ETCD_ELECTION_TIMEOUT": "2000"}),
    ],
    ids=["defaults", "own-heartbeat", "own-election"],
)
def test_the_agent_gives_etcd_fast_elections_unless_the_user_data_times_its_own(
    etcd2: dict[str, int], expected: dict[str, str]
) -> None:
    """As the local provider's members: 25 ms heartbeats, 250 ms elections, pre-vote; a
    user-data with either timing of its own gets neither default (etcd refuses an
    election timeout under five heartbeats)."""
    user_data = {"coreos": {"etcd2": {"name": "core-01", **etcd2}}}
    env, _ = agent.etcd_environment(user_data, "172.17.8.101", "172.17.8.101")
    timings = {key: value for key, value in env.items() if "INTERVAL" in key or "TIMEOUT" in key}
    assert timings == expected
    assert env["ETCD_PRE_VOTE"] == "true"


def test_the_agents_drop_in_escapes_what_systemd_would_read_otherwise() -> None:
    assert agent.systemd_quote('a "b" \\ 100%') == '"a \\"b\\" \\\\ 100%%"'


@pytest.mark.parametrize(
    ("units", "problem"),
    [
        ([{"name": "../../etc/passwd"}], "not a systemd unit name"),
        ([{"name": "x.service", "command": "explode"}], "not one of"),
        ([{"name": "x.service", "drop-ins": [{"name": "a/b.conf", "content": ""}]}], "conf name"),
        ("etcd.service", "not a list"),
    ],
)
def test_the_agent_refuses_units_it_cannot_apply_safely(units: object, problem: str) -> None:
    user_data = {"coreos": {"etcd2": {"name": "x"}, "units": units}}
    with pytest.raises(agent.AgentError, match=problem):
        agent.plan(user_data, "10.0.0.1", "10.0.0.1")


def _image_input_hash(script: Path) -> str:
    done = subprocess.run(
        ["bash", str(script), "--hash"], capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def test_the_image_build_hashes_its_inputs_the_shared_config_modules_among_them(
    tmp_path: Path,
) -> None:
    """The builder ships in the package and hashes what it copies into the image: the
    agent's files and the pure config modules the agent imports. On a copy of the package
    (the builder finds its inputs relative to itself), a change to one of those modules
    changes the hash; a change to anything else does not."""
    package = tmp_path / "pytest_coreos"
    shutil.copytree(
        builder.SCRIPT.parents[1], package, ignore=shutil.ignore_patterns("__pycache__")
    )
    script = package / builder.SCRIPT.relative_to(builder.SCRIPT.parents[1])
    before = _image_input_hash(script)
    assert len(before) == 16
    assert _image_input_hash(script) == before
    assert _image_input_hash(builder.SCRIPT) == before  # the same inputs in another place
    # python -m pytest_coreos.image and the checkout's box/build-box run the same builder.
    done = subprocess.run(
        [sys.executable, "-m", "pytest_coreos.image", "--hash"],
        capture_output=True,
        text=True,
        check=True,
    )
    wrapper = subprocess.run(
        [str(REPO / "box" / "build-box"), "--hash"], capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == wrapper.stdout.strip() == before
    (package / "plugin.py").write_text("# not an input of the image\n")
    assert _image_input_hash(script) == before
    for module in ("config/cloud_config.py", "config/etcd_env.py", "config/units.py"):
        path = package / module
        original = path.read_text()
        path.write_text(original + "# a change to code the agent runs\n")
        assert _image_input_hash(script) != before, module
        path.write_text(original)
    assert _image_input_hash(script) == before


def test_vms_are_named_after_the_session_and_the_cluster(tmp_path: Path) -> None:
    from pytest_coreos.host.sshd import generate_ed25519_key
    from pytest_coreos.providers.protocol import BootContext

    key = generate_ed25519_key(tmp_path / "key")

    def tag(workdir: Path) -> str:
        context = BootContext(
            spec=ClusterSpec(provider="vagrant"),
            workdir=workdir,
            user_data={},
            ssh_key=key,
            ssh_public_key_path=tmp_path / "key.pub",
        )
        return vagrant_settings.session_tag(context)

    assert tag(Path("/tmp/pytest-coreos-0123abcd-x1y2z3/cluster-2")) == "0123abcd-2"
    # a folder of the caller's choosing: a stable id of its own
    other = tag(tmp_path / "mine" / "cluster-1")
    assert other == tag(tmp_path / "mine" / "cluster-1")
    assert other.endswith("-1")
    assert len(other) == len("0123abcd-1")


def test_a_failed_vagrant_up_says_why_with_the_log_and_cleans_up(
    tmp_path: Path, vagrant_env: dict[str, str]
) -> None:
    """Real Vagrant, asked for a provider this machine does not have: no VM is made, and
    the failure carries Vagrant's reason and log; closing afterwards is quiet."""
    from pytest_coreos.host.sshd import generate_ed25519_key
    from pytest_coreos.providers.protocol import BootContext

    workdir = tmp_path / "pytest-coreos-0123abcd-xyz" / "cluster-1"
    workdir.mkdir(parents=True)
    steps: list[str] = []
    recorded: list[dict[str, object]] = []
    context = BootContext(
        spec=ClusterSpec(
            provider="vagrant",
            instances=2,
            discovery="public",
            vagrant_provider="no-such-provider",
            box="coreos-stable",
        ),
        workdir=workdir,
        user_data=cloud_config.inject_discovery(
            cloud_config.default_user_data(), "https://discovery.etcd.io/" + "b" * 32
        ),
        ssh_key=generate_ed25519_key(tmp_path / "key"),
        ssh_public_key_path=tmp_path / "key.pub",
        progress=steps.append,
        remember=lambda extra: recorded.append(dict(extra)),
    )
    vms = VagrantProvider().prepare(context)
    with pytest.raises(vagrant_settings.VagrantError) as raised:
        vms.boot()
    assert "vagrant up: exited with status 1" in str(raised.value)
    assert str(workdir / "vagrant.log") in str(raised.value)
    notes = "\n".join(raised.value.__notes__)
    assert "no-such-provider" in notes
    # on record before vagrant ran, with the names a reaper needs
    assert recorded[0]["vagrant"]["name_prefix"] == "pytest-coreos-0123abcd-1-"  # type: ignore[index]
    assert any(step.startswith("vagrant up: 2 machine(s)") for step in steps)
    vms.close()
    vms.close()  # twice is fine
    assert not addresses.addresses_in_use("172.17.8")


def test_vagrant_adds_a_box_file_from_its_metadata_under_a_checkouts_constraint(
    tmp_path: Path, vagrant_env: dict[str, str]
) -> None:
    # The 2014 checkout of the e2e test: box_version ">= 308.0.1" and a box_url of CoreOS's.
    checkout = REPO / "tests" / "e2e" / "data" / "checkout-2014"
    box = _box_file(tmp_path / "stand-in.box")
    directory = tmp_path / "cluster-1" / "vagrant"
    spec = ClusterSpec(provider="vagrant", instances=3, vagrant_dir=checkout, box=str(box))
    _prepare(directory, spec)
    settings = json.loads((directory / "pytest-coreos.json").read_text())
    assert "box_version" not in settings  # the checkout's own constraint decides
    validated = vagrant.Vagrant(root=str(directory), env=vagrant_env).validate(str(directory))
    assert b"validated successfully" in validated.stdout
    added = subprocess.run(
        ["vagrant", "box", "add", "--box-version", ">= 308.0.1", settings["box_url"]],
        cwd=directory,
        env=vagrant_env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert added.returncode == 0, added.stdout + added.stderr
    listed = subprocess.run(
        ["vagrant", "box", "list"], env=vagrant_env, capture_output=True, text=True, check=True
    )
    assert f"coreos-stable (libvirt, {settings['box_added_version']})" in listed.stdout


# Vagrant 2.3.4's CoreOS guest: the cloud-configs it sends for config.vm.hostname and a
# private network (plugins/guests/coreos/cap/*.rb), as it writes them.
VAGRANT_HOSTNAME_CONFIG = "#cloud-config\n---\nhostname: core-01\n"
VAGRANT_NETWORKS_CONFIG = """#cloud-config
---
write_files:
- path: "/etc/environment"
  content: |-
    COREOS_PUBLIC_IPV4=127.0.0.1
    COREOS_PRIVATE_IPV4=172.17.8.101
coreos:
  units:
  - name: 50-vagrant1.network
    runtime: 'no'
    content: |-
      [Match]
      Name=eth1
      [Network]
      Address=172.17.8.101/24
"""


def test_the_agent_plans_vagrants_hostname_and_network_configs() -> None:
    hostname = agent.plan_guest_config(
        cloud_config.parse_cloud_config(VAGRANT_HOSTNAME_CONFIG, "hostname.yml")
    )
    assert hostname.hostname == "core-01"
    assert (hostname.files, hostname.addresses, hostname.notes) == ({}, [], [])
    networks = agent.plan_guest_config(
        cloud_config.parse_cloud_config(VAGRANT_NETWORKS_CONFIG, "networks.yml")
    )
    assert networks.hostname is None
    assert networks.files == {
        Path("/etc/environment"): (
            b"COREOS_PUBLIC_IPV4=127.0.0.1\nCOREOS_PRIVATE_IPV4=172.17.8.101",
            0o644,
        )
    }
    assert networks.addresses == [("eth1", "172.17.8.101/24")]
    assert list(networks.network_units) == [Path("/etc/systemd/network/50-vagrant1.network")]
    # and again at the next boot (ifupdown), before the agent starts etcd on the address
    stanza = networks.interfaces[Path("/etc/network/interfaces.d/vagrant-50-vagrant1")]
    assert stanza.splitlines()[1:] == [
        "auto eth1",
        "iface eth1 inet static",
        "    address 172.17.8.101/24",
    ]
    assert networks.notes == []
    # $public_ipv4 is then the private address, never the loopback Vagrant wrote
    environment = agent.read_environment(networks.files[Path("/etc/environment")][0].decode())
    assert agent.choose_public_address(environment, "172.17.8.101") == "172.17.8.101"


def test_the_agent_reports_what_of_vagrants_configs_it_does_not_apply() -> None:
    config = cloud_config.parse_cloud_config(
        "#cloud-config\nusers: [core]\ncoreos:\n  units:\n"
        '  - {name: 50-dhcp.network, content: "[Match]\\nName=eth2\\n[Network]\\nDHCP=yes"}\n'
        "  - {name: docker.service, command: start}\n",
        "other.yml",
    )
    planned = agent.plan_guest_config(config)
    assert planned.addresses == []
    assert planned.notes == [
        "coreos.units: 50-dhcp.network asks for DHCP on eth2, not applied",
        "coreos.units: 'docker.service' is not a .network unit, not applied",
        "users: not applied by the stand-in box",
    ]
    with pytest.raises(agent.AgentError, match="not absolute"):
        agent.plan_guest_config({"write_files": [{"path": "etc/x", "content": ""}]})
