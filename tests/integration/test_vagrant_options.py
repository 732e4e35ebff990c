"""``--coreos-vagrant-option`` and the setups docs/vagrant.md documents: the Vagrantfile
written for each documented command line, checked by the real ``vagrant validate`` inside
an empty network namespace (so nothing is contacted: the remote host's name is under
``.invalid`` anyway), and the values read back by the real Ruby."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from pytest_coreos.errors import ConfigError
from pytest_coreos.options import ClusterSpec, resolve_spec
from pytest_coreos.providers.vagrant import VagrantProvider, files
from pytest_coreos.providers.vagrant import settings as vagrant_settings

DOC = (Path(__file__).parents[2] / "docs" / "vagrant.md").read_text()
MACHINES = [
    {"name": "core-01", "ip": "172.17.8.101"},
    {"name": "core-02", "ip": "172.17.8.102"},
]


def documented(heading: str, fence: str = "console") -> str:
    """The first ``fence`` block under ``heading`` in docs/vagrant.md."""
    section = DOC.split(f"\n{heading}\n", 1)[1]
    return section.split(f"```{fence}\n", 1)[1].split("```", 1)[0]


def documented_spec(heading: str, base: Path, replacements: dict[str, str]) -> ClusterSpec:
    """The spec the documented ``pytest`` command line resolves to, with the made-up host
    and paths swapped for ones of this test."""
    command = documented(heading).replace("\\\n", " ")
    for old, new in replacements.items():
        command = command.replace(old, new)
    argv = shlex.split(command.removeprefix("$ "))[1:]
    cli: dict[str, object] = {}
    for index, arg in enumerate(argv):
        if not arg.startswith("--coreos-"):
            continue
        name, equals, value = arg.removeprefix("--coreos-").partition("=")
        if not equals:
            value = argv[index + 1]
        name = name.replace("-", "_")
        if name == "vagrant_option":
            cli.setdefault(name, []).append(value)  # type: ignore[union-attr]
        else:
            cli[name] = value
    return resolve_spec(lambda n: cli.get(n), lambda n: None, invocation_dir=base, ini_dir=base)


@pytest.fixture
def vagrant_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    if shutil.which("vagrant") is None:
        pytest.fail("vagrant is not installed; run scripts/bootstrap")
    monkeypatch.setenv("VAGRANT_HOME", str(tmp_path / "vagrant.d"))
    monkeypatch.setenv("VAGRANT_CHECKPOINT_DISABLE", "1")
    return vagrant_settings.vagrant_environment("libvirt")


def offline(argv: list[str]) -> list[str]:
    """``argv`` in a network namespace of its own with no interface but a down loopback:
    a command that tried to reach any host would fail."""
    if os.geteuid() == 0:
        return ["unshare", "--net", "--", *argv]
    return ["unshare", "--user", "--map-root-user", "--net", "--", *argv]


def validate(directory: Path, env: dict[str, str], *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        offline(["vagrant", "validate", *extra]),
        cwd=directory,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def prepare(
    directory: Path, spec: ClusterSpec, user_data_text: str | None = "#cloud-config\n"
) -> None:
    files.prepare_directory(
        directory,
        spec=spec,
        user_data_text=user_data_text,
        machines=MACHINES[: spec.instances],
        name_prefix="pytest-coreos-0123abcd-1-",
        network="172.17.8",
    )


# --- values ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "ruby"),
    [
        ("1024", "1024"),
        ("-3", "-3"),
        ("0.5", "0.5"),
        ("true", "true"),
        ("false", "false"),
        ("0755", '"0755"'),
        ("1e3", '"1e3"'),
        ("qemu+ssh://core@h/system", '"qemu+ssh://core@h/system"'),
        ("", '""'),
        ('a"b', '"a\\"b"'),
        ("#{system('id')}", "\"\\#{system('id')}\""),
    ],
)
def test_values_are_numbers_booleans_or_quoted_strings(text: str, ruby: str) -> None:
    assert vagrant_settings.option_value(text) == ruby


def test_the_real_ruby_reads_back_every_value_as_given(tmp_path: Path) -> None:
    if shutil.which("ruby") is None:
        pytest.fail("ruby is not installed (it comes with vagrant)")
    values = [
        "1024",
        "0.5",
        "true",
        "0755",
        'q"uote',
        "back\\slash",
        "#{raise 'ran'}",
        "#$0 #@x",
        "tab\there",
        "é",
    ]
    options = tuple(f"key_{index}={value}" for index, value in enumerate(values))
    block = vagrant_settings.provider_options_block("aws", options)
    recorder = (
        "require 'json'\n"
        "class Recorder\n"
        "  attr_reader :seen\n"
        "  def initialize; @seen = {}; end\n"
        "  def method_missing(name, value) @seen[name.to_s.chomp('=')] = value; end\n"
        "  def respond_to_missing?(*) true end\n"
        "end\n"
        "class Provider; def initialize(r) @r = r end; def provider(name) yield @r end; end\n"
        "class VM; def initialize(r) @vm = Provider.new(r) end; def vm; @vm; end; end\n"
        "recorder = Recorder.new\n"
        "config = VM.new(recorder)\n"
        f"{block}"
        "puts JSON.generate(recorder.seen)\n"
    )
    script = tmp_path / "read_back.rb"
    script.write_text(recorder, encoding="utf-8")
    done = subprocess.run(["ruby", str(script)], capture_output=True, text=True, check=True)
    seen = json.loads(done.stdout)
    assert seen == {
        "key_0": 1024,
        "key_1": 0.5,
        "key_2": True,
        **{f"key_{index}": values[index] for index in range(3, len(values))},
    }


def test_keys_must_be_setting_names() -> None:
    spec = ClusterSpec(provider="vagrant")
    with pytest.raises(ConfigError, match=r"vagrant_options: 'Uri=x' is not key=value"):
        spec.replace(vagrant_options=("Uri=x",))
    with pytest.raises(ConfigError, match=r"the value of uri has a control character"):
        spec.replace(vagrant_options=("uri=a\nb",))
    with pytest.raises(ConfigError, match=r"--coreos-vagrant-provider: 'a b' is not a Vagrant"):
        vagrant_settings.provider_options_block("a b", ("memory=1",))


def test_the_ini_twin_is_a_line_list(tmp_path: Path) -> None:
    ini = {
        "coreos_provider": "vagrant",
        "coreos_vagrant_option": ["uri=qemu:///system", "memory=2048"],
    }
    spec = resolve_spec(lambda n: None, ini.get, invocation_dir=tmp_path, ini_dir=tmp_path)
    assert spec.vagrant_options == ("uri=qemu:///system", "memory=2048")
    cli = {"vagrant_option": ["memory=4096"]}
    spec = resolve_spec(cli.get, ini.get, invocation_dir=tmp_path, ini_dir=tmp_path)
    assert spec.vagrant_options == ("memory=4096",)  # the command line wins whole


# --- the documented setups ----------------------------------------------------------------

REMOTE = "### A remote libvirt host"
AWS = "### A cloud provider (AWS)"


def test_the_documented_remote_libvirt_setup_validates_for_real_offline(
    tmp_path: Path, vagrant_env: dict[str, str]
) -> None:
    spec = documented_spec(REMOTE, tmp_path, {"libvirt-host.example": "remote-libvirt.invalid"})
    assert spec.vagrant_provider == "libvirt"
    assert vagrant_settings.libvirt_uri(spec) == "qemu+ssh://core@remote-libvirt.invalid/system"
    assert vagrant_settings.remote_libvirt(spec)
    directory = tmp_path / "vagrant"
    prepare(directory, spec)
    vagrantfile = (directory / "Vagrantfile").read_text()
    assert (
        "  config.vm.provider :libvirt do |provider|\n"
        '    provider.uri = "qemu+ssh://core@remote-libvirt.invalid/system"\n'
        "    provider.memory = 1024\n"
        "  end\n"
    ) in vagrantfile
    validated = validate(directory, vagrant_env)
    assert validated.returncode == 0, validated.stdout + validated.stderr
    assert "Vagrantfile validated successfully" in validated.stdout
    # vagrant-libvirt's own checks run: a setting it does not have is caught.
    bad = spec.replace(vagrant_options=(*spec.vagrant_options, "no_such_setting=1"))
    prepare(tmp_path / "bad", bad)
    refused = validate(tmp_path / "bad", vagrant_env)
    assert refused.returncode != 0
    assert (
        "The following settings shouldn't exist: no_such_setting" in refused.stdout + refused.stderr
    )


def test_a_remote_libvirt_refuses_local_discovery_and_ignition() -> None:
    spec = ClusterSpec(
        provider="vagrant",
        vagrant_options=("uri=qemu+ssh://core@remote-libvirt.invalid/system",),
    )
    with pytest.raises(ConfigError, match="--coreos-discovery: local discovery listens"):
        VagrantProvider().discovery_address(spec.replace(discovery="local"))
    with pytest.raises(ConfigError, match="--coreos-config: Ignition goes to a VM as a file"):
        vagrant_settings.check_ignition_support(spec.replace(config="ignition", discovery="public"))
    with pytest.raises(ConfigError, match="libvirt Vagrant provider only, not virtualbox"):
        vagrant_settings.check_ignition_support(
            ClusterSpec(provider="vagrant", vagrant_provider="virtualbox", config="ignition")
        )


def test_the_documented_aws_setup_validates_but_its_provider_block_for_want_of_the_plugin(
    tmp_path: Path, vagrant_env: dict[str, str]
) -> None:
    """vagrant-aws (a RubyGems download) cannot be installed here, so Vagrant does not know
    the aws provider: ``vagrant validate --ignore-provider`` checks everything else."""
    checkout = tmp_path / "aws"
    checkout.mkdir()
    key = tmp_path / "pytest-coreos.pem"
    (checkout / "config.rb").write_text(
        documented(AWS, "ruby").replace("~/.ssh/pytest-coreos.pem", str(key))
    )
    spec = documented_spec(AWS, tmp_path, {})
    assert spec.vagrant_provider == "aws"
    assert spec.vagrant_dir == checkout
    assert vagrant_settings.private_network(spec) == "172.31.8"
    directory = tmp_path / "vagrant"
    files.prepare_directory(
        directory,
        spec=spec,
        user_data_text="#cloud-config\n",
        machines=[{"name": "core-01", "ip": "172.31.8.101"}],
        name_prefix="pytest-coreos-0123abcd-1-",
        network="172.31.8",
    )
    vagrantfile = (directory / "Vagrantfile").read_text()
    assert '    provider.region = "eu-west-1"\n' in vagrantfile
    assert '    provider.keypair_name = "pytest-coreos"\n' in vagrantfile
    assert '$ssh_username="core"' in (directory / "config.rb").read_text()
    env = {**vagrant_env, "VAGRANT_DEFAULT_PROVIDER": "libvirt"}
    # The cloud image's login from config.rb is checked: its key file must exist.
    missing = validate(directory, env, "--ignore-provider")
    assert missing.returncode != 0
    assert f"`private_key_path` file must exist: {key}" in missing.stdout + missing.stderr
    key.write_text("a private key\n")
    validated = validate(directory, env, "--ignore-provider")
    assert validated.returncode == 0, validated.stdout + validated.stderr
    assert "Vagrantfile validated successfully" in validated.stdout


def test_ignition_reaches_each_vm_as_a_qemu_firmware_config_entry(
    tmp_path: Path, vagrant_env: dict[str, str]
) -> None:
    directory = tmp_path / "vagrant"
    machines = [
        {**machine, "ignition": str(tmp_path / f"fw,cfg/{machine['name']}.ign")}
        for machine in MACHINES
    ]
    files.prepare_directory(
        directory,
        spec=ClusterSpec(provider="vagrant", instances=2, box="coreos-stable", config="ignition"),
        user_data_text=None,
        machines=machines,
        name_prefix="pytest-coreos-0123abcd-1-",
        network="172.17.8",
    )
    assert not (directory / "user-data").exists()
    assert json.loads((directory / "pytest-coreos.json").read_text())["machines"] == machines
    validated = validate(directory, vagrant_env)
    assert validated.returncode == 0, validated.stdout + validated.stderr
    # What Vagrant made of it, per machine: its own file, the comma doubled for QEMU.
    script = (
        "require 'vagrant'\n"
        "env = Vagrant::Environment.new(cwd: ARGV[0])\n"
        "%w[core-01 core-02].each do |name|\n"
        "  machine = env.machine(name.to_sym, :libvirt)\n"
        "  puts machine.provider_config.qemu_args.map { |arg| arg[:value] }.join(' ')\n"
        "end\n"
    )
    shown = subprocess.run(
        offline(["ruby", "-e", script, str(directory)]),
        env=vagrant_env,
        capture_output=True,
        text=True,
        check=False,
    )
    if shown.returncode != 0 and "cannot load such file -- vagrant" in shown.stderr:
        pytest.fail("Vagrant's Ruby library is not loadable by ruby: " + shown.stderr[-500:])
    assert shown.returncode == 0, shown.stderr[-2000:]
    lines = shown.stdout.strip().splitlines()[-2:]
    assert lines == [
        f"-fw_cfg name=opt/org.flatcar-linux/config,file={tmp_path}/fw,,cfg/{name}.ign"
        for name in ("core-01", "core-02")
    ]
    assert re.search(r"qemuargs", (directory / "pytest-coreos.rb").read_text())
