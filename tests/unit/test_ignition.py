"""Unit tests of pytest_coreos.config.ignition: cloud-config to Ignition, the user's own config, and
discovery injection; every config checked against Ignition's published JSON schema, and the
etcd drop-ins read back by systemd itself where systemd-analyze is installed."""

from __future__ import annotations

import base64
import copy
import gzip
import json
import os
import re
import shutil
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from pytest_coreos.config import cloud_config, etcd_env
from pytest_coreos.config.ignition import (
    COREOS_ENVIRONMENT,
    DISCOVERY_DROPIN,
    ETCD_DROPIN,
    ETCD_MEMBER_UNIT,
    ETCD_WRAPPER,
    FLATCAR_CUSTOM_METADATA,
    IGNITION_VERSION,
    SUPPORTED_VERSIONS,
    AddressVariables,
    IgnitionError,
    data_url,
    etcd_unit_name,
    inject_discovery_ignition,
    load_ignition,
    not_rendered,
    render_ignition,
    to_json,
)
from pytest_coreos.errors import ConfigError

DATA = Path(__file__).parents[1] / "data" / "ignition"
SSH_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE7vJ1rG3dZb9c2N0w0l8Xq5gVqk pytest-coreos"
DISCOVERY_URL = "http://127.0.0.1:8087/0123456789abcdef0123456789abcdef"
PRIVATE = "10.0.0.5"
PUBLIC = "172.17.8.101"

ETCD2_USER_DATA = (Path(__file__).parents[1] / "data" / "etcd2-user-data").read_text()


def etcd2_user_data() -> dict[str, Any]:
    return cloud_config.parse_user_data(ETCD2_USER_DATA, "etcd2 sample")


# --- the schema ----------------------------------------------------------------------------


def assert_valid(validators: dict[str, jsonschema.Draft4Validator], config: Any) -> None:
    version = config["ignition"]["version"]
    errors = sorted(validators[version].iter_errors(config), key=lambda error: str(error.path))
    assert not errors, "\n".join(f"{list(error.path)}: {error.message}" for error in errors)


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        (
            lambda config: config["systemd"]["units"][0].update(contents=["[Service]"]),
            "is not of type 'string', 'null'",
        ),
        (lambda config: config["storage"]["files"][0].update(mode="0644"), "'0644'"),
        (lambda config: config["passwd"]["users"][0].pop("name"), "'name' is a required"),
        (
            lambda config: config["systemd"].update(units={"name": "x.service"}),
            "is not of type 'array'",
        ),
        (lambda config: config.update(ignition={}), "'version' is a required"),
    ],
    ids=["unit-contents-list", "mode-text", "user-without-name", "units-object", "no-version"],
)
def test_schema_validator_rejects_a_broken_config(
    validators: dict[str, jsonschema.Draft4Validator], change: Any, complaint: str
) -> None:
    """The validator runs: a config broken on purpose fails it, with the reason."""
    config = render_ignition(
        cloud_config.default_user_data(), ssh_public_key=SSH_KEY, hostname="core-01"
    )
    assert_valid(validators, config)
    change(config)
    with pytest.raises(jsonschema.ValidationError, match=re.escape(complaint)):
        validators["3.4.0"].validate(config)


# --- rendering: etcd -----------------------------------------------------------------------


def etcd_unit(config: dict[str, Any], name: str = ETCD_MEMBER_UNIT) -> dict[str, Any]:
    units = [unit for unit in config["systemd"]["units"] if unit["name"] == name]
    assert len(units) == 1, config["systemd"]["units"]
    return units[0]


def etcd_dropin(config: dict[str, Any], name: str = ETCD_MEMBER_UNIT) -> str:
    dropins = {dropin["name"]: dropin["contents"] for dropin in etcd_unit(config, name)["dropins"]}
    return str(dropins[ETCD_DROPIN])


@pytest.mark.parametrize("version", SUPPORTED_VERSIONS)
def test_default_user_data_renders_a_valid_config(
    validators: dict[str, jsonschema.Draft4Validator], version: str
) -> None:
    config = render_ignition(
        cloud_config.default_user_data(),
        ssh_public_key=SSH_KEY,
        hostname="core-01",
        private_ipv4=PRIVATE,
        public_ipv4=PUBLIC,
        version=version,
    )
    assert_valid(validators, config)
    assert list(config) == ["ignition", "passwd", "storage", "systemd"]
    assert config["ignition"] == {"version": version}
    assert config["systemd"]["units"][0]["name"] == ETCD_MEMBER_UNIT
    assert config["systemd"]["units"][0]["enabled"] is True


def test_default_version_is_3_4() -> None:
    config = render_ignition(cloud_config.default_user_data(), ssh_public_key=SSH_KEY)
    assert config["ignition"]["version"] == IGNITION_VERSION == "3.4.0"


def test_unsupported_version_is_refused() -> None:
    with pytest.raises(
        ValueError, match=r"'3\.2\.0' is not supported; supported: 3\.3\.0, 3\.4\.0"
    ):
        render_ignition(cloud_config.default_user_data(), ssh_public_key=SSH_KEY, version="3.2.0")


@pytest.mark.parametrize(
    "user_data", [cloud_config.default_user_data(), etcd2_user_data()], ids=["etcd-0.4", "etcd2"]
)
def test_etcd_environment_lines_are_render_etcd_environment(user_data: dict[str, Any]) -> None:
    """With real addresses the drop-in is Environment= lines, exactly etcd_environment's."""
    config = render_ignition(
        user_data, ssh_public_key=SSH_KEY, private_ipv4=PRIVATE, public_ipv4=PUBLIC
    )
    env = etcd_env.etcd_environment(user_data, private_ipv4=PRIVATE, public_ipv4=PUBLIC).env
    assert etcd_dropin(config) == "[Service]\n" + "".join(
        f'Environment="{name}={value}"\n' for name, value in env.items()
    )


def test_etcd_04_addresses_become_etcd2_urls() -> None:
    config = render_ignition(
        cloud_config.default_user_data(),
        ssh_public_key=SSH_KEY,
        private_ipv4=PRIVATE,
        public_ipv4=PUBLIC,
    )
    assert etcd_dropin(config).splitlines() == [
        "[Service]",
        'Environment="ETCD_DISCOVERY=https://discovery.etcd.io/<token>"',
        f'Environment="ETCD_ADVERTISE_CLIENT_URLS=http://{PUBLIC}:4001"',
        f'Environment="ETCD_INITIAL_ADVERTISE_PEER_URLS=http://{PUBLIC}:7001"',
        'Environment="ETCD_LISTEN_CLIENT_URLS=http://0.0.0.0:4001"',
        'Environment="ETCD_LISTEN_PEER_URLS=http://0.0.0.0:7001"',
    ]


def test_values_are_quoted_for_systemd() -> None:
    data = cloud_config.default_user_data()
    data["coreos"]["etcd"]["data-dir"] = '/var/lib/e t"c\\d %n $HOME'
    config = render_ignition(data, ssh_public_key=SSH_KEY, private_ipv4=PRIVATE, public_ipv4=PUBLIC)
    assert 'Environment="ETCD_DATA_DIR=/var/lib/e t\\"c\\\\d %%n $HOME"' in etcd_dropin(config)


def test_a_control_character_cannot_be_rendered() -> None:
    data = cloud_config.default_user_data()
    data["coreos"]["etcd"]["name"] = "core\n01"
    with pytest.raises(ValueError, match=r"ETCD_NAME: control characters .*'\\n'"):
        render_ignition(data, ssh_public_key=SSH_KEY, private_ipv4=PRIVATE, public_ipv4=PUBLIC)


# --- rendering: addresses read at start ----------------------------------------------------


def exec_words(dropin: str) -> list[str]:
    """The double-quoted words of the drop-in's last ExecStart=, unquoted as systemd does
    when it loads the unit (before it expands ${VARIABLE} at start)."""
    start = dropin.rindex("ExecStart=")
    words = re.findall(r'"((?:[^"\\]|\\.)*)"', dropin[start:])
    return [re.sub(r"\\(.)", r"\1", word).replace("%%", "%") for word in words]


def at_start(word: str, values: dict[str, str]) -> str:
    """What systemd makes of a command-line word at start, given the environment file."""
    expanded = re.sub(r"\$\{(\w+)\}", lambda match: values[match.group(1)], word)
    return expanded.replace("$$", "$")


def test_addresses_left_as_placeholders_are_read_at_start() -> None:
    user_data = etcd2_user_data()
    config = render_ignition(user_data, ssh_public_key=SSH_KEY)
    dropin = etcd_dropin(config)
    env = etcd_env.etcd_environment(user_data, private_ipv4=PRIVATE, public_ipv4=PUBLIC).env
    plain = {
        name: value for name, value in env.items() if PRIVATE not in value and PUBLIC not in value
    }
    assert [line for line in dropin.splitlines() if line.startswith("Environment")] == [
        *(f'Environment="{name}={value}"' for name, value in plain.items()),
        "EnvironmentFile=/etc/environment",
    ]
    assert 'ExecStartPre=/usr/bin/test -n "${COREOS_PRIVATE_IPV4}"' in dropin
    assert 'ExecStartPre=/usr/bin/test -n "${COREOS_PUBLIC_IPV4}"' in dropin
    assert "\nExecStart=\nExecStart=/usr/bin/env \\\n" in dropin
    assert dropin.endswith(f"  {ETCD_WRAPPER}\n")
    values = {"COREOS_PRIVATE_IPV4": PRIVATE, "COREOS_PUBLIC_IPV4": PUBLIC}
    started = dict(at_start(word, values).split("=", 1) for word in exec_words(dropin))
    # Together: the same variables as with real addresses, the address ones set on start.
    assert started == {name: value for name, value in env.items() if name not in plain}
    assert set(plain) | set(started) == set(env)


def test_only_the_address_not_given_is_read_at_start() -> None:
    config = render_ignition(etcd2_user_data(), ssh_public_key=SSH_KEY, public_ipv4=PUBLIC)
    dropin = etcd_dropin(config)
    assert (
        f'Environment="ETCD_ADVERTISE_CLIENT_URLS=http://{PUBLIC}:2379,http://{PUBLIC}:4001"'
        in dropin
    )
    assert "COREOS_PUBLIC_IPV4" not in dropin
    assert '"ETCD_LISTEN_PEER_URLS=http://${COREOS_PRIVATE_IPV4}:2380"' in dropin


def test_flatcar_metadata_addresses_wait_for_coreos_metadata() -> None:
    config = render_ignition(
        cloud_config.default_user_data(), ssh_public_key=SSH_KEY, addresses=FLATCAR_CUSTOM_METADATA
    )
    dropin = etcd_dropin(config)
    assert dropin.startswith(
        "[Unit]\nRequires=coreos-metadata.service\nAfter=coreos-metadata.service\n\n[Service]\n"
    )
    assert "EnvironmentFile=/run/metadata/flatcar\n" in dropin
    assert '"ETCD_ADVERTISE_CLIENT_URLS=http://${COREOS_CUSTOM_PUBLIC_IPV4}:4001"' in dropin
    assert "COREOS_CUSTOM_PRIVATE_IPV4" not in dropin  # the etcd 0.4 sample uses $public_ipv4


def test_a_dollar_and_percent_in_a_value_read_at_start_stay_literal() -> None:
    data = etcd2_user_data()
    data["coreos"]["etcd2"]["advertise-client-urls"] = "http://$public_ipv4:2379/$x%y"
    dropin = etcd_dropin(render_ignition(data, ssh_public_key=SSH_KEY))
    assert '"ETCD_ADVERTISE_CLIENT_URLS=http://${COREOS_PUBLIC_IPV4}:2379/$$x%%y"' in dropin
    (word,) = [word for word in exec_words(dropin) if word.startswith("ETCD_ADVERTISE")]
    assert at_start(word, {"COREOS_PUBLIC_IPV4": PUBLIC}) == (
        f"ETCD_ADVERTISE_CLIENT_URLS=http://{PUBLIC}:2379/$x%y"
    )


def test_address_variables_are_checked() -> None:
    with pytest.raises(ValueError, match="not an environment variable name"):
        AddressVariables(private_ipv4="COREOS PRIVATE")
    with pytest.raises(ValueError, match="absolute path"):
        AddressVariables(environment_file="etc/environment")
    with pytest.raises(ValueError, match="not a systemd unit name"):
        AddressVariables(after_unit="coreos-metadata")
    assert COREOS_ENVIRONMENT.environment_file == "/etc/environment"


# --- systemd reads the drop-ins back -------------------------------------------------------

# scripts/bootstrap installs systemd (with systemd-container): a missing systemd-analyze is
# a failure to see, not a reason to skip.
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")


def systemd_reads(tmp_path: Path, unit: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(Environment= assignments, command lines) of an Ignition unit as systemd's own parser
    reads its file and drop-ins (``systemd-analyze verify`` dumps them at debug level)."""
    assert SYSTEMD_ANALYZE is not None, "systemd-analyze not found: run scripts/bootstrap"
    directory = tmp_path / "units"
    (directory / f"{unit['name']}.d").mkdir(parents=True)
    path = directory / unit["name"]
    path.write_text(unit.get("contents") or "[Service]\nExecStart=/bin/true\n")
    for dropin in unit.get("dropins", []):
        (directory / f"{unit['name']}.d" / dropin["name"]).write_text(dropin["contents"])
    result = subprocess.run(
        [SYSTEMD_ANALYZE, "verify", "--man=no", "--generators=no", str(path)],
        env={**os.environ, "SYSTEMD_LOG_LEVEL": "debug"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    output = result.stdout + result.stderr
    complaints = [
        line
        for line in output.splitlines()
        if str(directory) + "/" in line and re.search(r":\d+:", line)
    ]
    assert not complaints, "\n".join(complaints)
    block = output.split(f"-> Unit {unit['name']}:", 1)[1].split("-> Unit ", 1)[0]
    environment = re.findall(r"^\t+Environment: (.*)$", block, re.MULTILINE)
    commands = re.findall(r"^\t+Command Line: (.*)$", block, re.MULTILINE)
    return environment, commands


def test_systemd_reads_the_environment_as_etcd_environment_gives_it(tmp_path: Path) -> None:
    data = etcd2_user_data()
    data["coreos"]["etcd2"]["data-dir"] = "/var/lib/e t\"c\\d %n %% $HOME 'q'\ttab"
    data["coreos"]["etcd2"]["name"] = "core-01 %H"
    config = render_ignition(data, ssh_public_key=SSH_KEY, private_ipv4=PRIVATE, public_ipv4=PUBLIC)
    environment, _ = systemd_reads(tmp_path, etcd_unit(config))
    env = etcd_env.etcd_environment(data, private_ipv4=PRIVATE, public_ipv4=PUBLIC).env
    assert environment == [f"{name}={value}" for name, value in env.items()]


def test_systemd_reads_the_start_time_settings(tmp_path: Path) -> None:
    config = render_ignition(cloud_config.default_user_data(), ssh_public_key=SSH_KEY)
    environment, commands = systemd_reads(tmp_path, etcd_unit(config))
    assert environment == [
        "ETCD_DISCOVERY=https://discovery.etcd.io/<token>",
        "ETCD_LISTEN_CLIENT_URLS=http://0.0.0.0:4001",
        "ETCD_LISTEN_PEER_URLS=http://0.0.0.0:7001",
    ]
    # systemd shows $ as \$: these are kept for expansion at start.
    assert commands == [
        r'/usr/bin/test -n "\${COREOS_PUBLIC_IPV4}"',
        r'/usr/bin/env "ETCD_ADVERTISE_CLIENT_URLS=http://\${COREOS_PUBLIC_IPV4}:4001" '
        r'"ETCD_INITIAL_ADVERTISE_PEER_URLS=http://\${COREOS_PUBLIC_IPV4}:7001" '
        r'/usr/lib/flatcar/etcd-wrapper "\$ETCD_OPTS"',
    ]


# --- rendering: users, hostname, files -----------------------------------------------------


def read_data_url(source: str) -> bytes:
    """A data: URL's bytes, as the standard library's RFC 2397 handler decodes them."""
    with urllib.request.urlopen(source) as response:  # a data: URL, nothing on the network
        data: bytes = response.read()
    return data


def test_core_gets_the_ssh_key_and_the_cloud_configs() -> None:
    config = render_ignition(etcd2_user_data(), ssh_public_key=SSH_KEY + "\n")
    assert config["passwd"] == {
        "users": [
            {
                "name": "core",
                "sshAuthorizedKeys": [
                    SSH_KEY,
                    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGm core@example",
                ],
            }
        ]
    }


def test_a_key_given_twice_is_listed_once() -> None:
    data = cloud_config.default_user_data()
    data["ssh_authorized_keys"] = [SSH_KEY]
    config = render_ignition(data, ssh_public_key=SSH_KEY)
    assert config["passwd"]["users"][0]["sshAuthorizedKeys"] == [SSH_KEY]


@pytest.mark.parametrize("key", ["", "ssh-ed25519 AAAA\nssh-rsa BBBB"])
def test_an_ssh_key_must_be_one_line(key: str) -> None:
    with pytest.raises(ValueError, match="ssh_public_key must be one non-empty line"):
        render_ignition(cloud_config.default_user_data(), ssh_public_key=key)


def test_hostname_is_a_data_url_that_decodes_back(
    validators: dict[str, jsonschema.Draft4Validator],
) -> None:
    config = render_ignition(
        cloud_config.default_user_data(), ssh_public_key=SSH_KEY, hostname="core-01"
    )
    assert_valid(validators, config)
    (hostname,) = config["storage"]["files"]
    assert hostname == {
        "path": "/etc/hostname",
        "overwrite": True,
        "mode": 0o644,
        "contents": {"source": "data:,core-01%0A"},
    }
    assert read_data_url(hostname["contents"]["source"]) == b"core-01\n"


def test_without_a_hostname_there_are_no_files() -> None:
    config = render_ignition(cloud_config.default_user_data(), ssh_public_key=SSH_KEY)
    assert "storage" not in config


def test_the_hostname_parameter_wins_over_the_cloud_configs() -> None:
    config = render_ignition(etcd2_user_data(), ssh_public_key=SSH_KEY, hostname="core-02")
    assert read_data_url(config["storage"]["files"][0]["contents"]["source"]) == b"core-02\n"
    config = render_ignition(etcd2_user_data(), ssh_public_key=SSH_KEY)
    assert read_data_url(config["storage"]["files"][0]["contents"]["source"]) == b"core-01\n"


@pytest.mark.parametrize("hostname", ["core_01", "-core", "a" * 64, "core 01", ""])
def test_a_bad_hostname_is_refused(hostname: str) -> None:
    with pytest.raises(ValueError, match="is not a host name"):
        render_ignition(cloud_config.default_user_data(), ssh_public_key=SSH_KEY, hostname=hostname)


def test_data_url_percent_encodes_all_but_unreserved_characters() -> None:
    text = "a b/c?d#e%f,g;h\"i'j\nü€\t~._-"
    url = data_url(text)
    assert re.fullmatch(r"data:,[A-Za-z0-9%._~-]*", url)
    assert read_data_url(url) == text.encode()
    assert read_data_url(data_url(b"\x00\xff")) == b"\x00\xff"


def write_files_config(*entries: dict[str, Any]) -> dict[str, Any]:
    data = cloud_config.default_user_data()
    data["write_files"] = list(entries)
    return render_ignition(data, ssh_public_key=SSH_KEY)


def test_write_files_become_files(validators: dict[str, jsonschema.Draft4Validator]) -> None:
    config = render_ignition(etcd2_user_data(), ssh_public_key=SSH_KEY)
    assert_valid(validators, config)
    motd = config["storage"]["files"][1]
    assert motd == {
        "path": "/etc/motd.d/test.conf",
        "overwrite": True,
        "mode": 0o644,
        "contents": {"source": data_url("hello\nfrom cloud-config\n")},
    }
    assert read_data_url(motd["contents"]["source"]) == b"hello\nfrom cloud-config\n"


def test_write_files_encodings_owner_and_permissions(
    validators: dict[str, jsonschema.Draft4Validator],
) -> None:
    secret = b"\x00binary\xff"
    packed = gzip.compress(b"zipped\n")
    config = write_files_config(
        {"path": "/etc/a", "content": base64.b64encode(secret).decode(), "encoding": "b64"},
        {
            "path": "/etc/b",
            "content": base64.b64encode(packed).decode(),
            "encoding": "gzip+base64",
            "permissions": "0600",
            "owner": "core:core",
        },
        {"path": "/opt/bin/c", "content": "#!/bin/sh\n", "permissions": 755, "owner": "0"},
    )
    assert_valid(validators, config)
    first, second, third = config["storage"]["files"]
    assert read_data_url(first["contents"]["source"]) == secret
    assert second["contents"]["compression"] == "gzip"
    assert gzip.decompress(read_data_url(second["contents"]["source"])) == b"zipped\n"
    assert (second["mode"], second["user"], second["group"]) == (
        0o600,
        {"name": "core"},
        {"name": "core"},
    )
    assert (third["mode"], third["user"], "group" in third) == (0o755, {"id": 0}, False)


@pytest.mark.parametrize(
    ("entry", "complaint"),
    [
        ({"path": "etc/x", "content": ""}, "path must be absolute"),
        ({"path": "/x", "content": "", "encoding": "uu"}, "unknown encoding 'uu'"),
        ({"path": "/x", "content": "%%%", "encoding": "b64"}, "not base64"),
        ({"path": "/x", "content": "aGk=", "encoding": "gz+b64"}, "not gzip data"),
        ({"path": "/x", "content": "", "permissions": "0988"}, "are not octal"),
        ({"path": "/etc/hostname", "content": "x"}, "files written twice: /etc/hostname"),
    ],
)
def test_write_files_that_cannot_be_rendered(entry: dict[str, Any], complaint: str) -> None:
    data = cloud_config.default_user_data()
    data["write_files"] = [entry]
    with pytest.raises(ValueError, match=re.escape(complaint)):
        render_ignition(data, ssh_public_key=SSH_KEY, hostname="core-01")


# --- rendering: the user's units -----------------------------------------------------------


def with_units(*units: dict[str, Any], section: str = "etcd") -> dict[str, Any]:
    data = cloud_config.default_user_data()
    if section == "etcd2":
        data = etcd2_user_data()
    data["coreos"]["units"] = list(units)
    return data


def test_units_drop_ins_and_mask(validators: dict[str, jsonschema.Draft4Validator]) -> None:
    app = "[Unit]\nDescription=app\n\n[Service]\nExecStart=/usr/bin/sleep infinity\n"
    data = with_units(
        {"name": "app.service", "command": "start", "content": app},
        {
            "name": "docker.service",
            "enable": True,
            "drop-ins": [{"name": "50-opts.conf", "content": "[Service]\nEnvironment=A=1\n"}],
        },
        {"name": "update-engine.service", "command": "stop", "mask": True},
        {"name": "backup.timer", "content": "[Timer]\nOnCalendar=hourly\n"},
    )
    config = render_ignition(data, ssh_public_key=SSH_KEY, private_ipv4=PRIVATE, public_ipv4=PUBLIC)
    assert_valid(validators, config)
    assert config["systemd"]["units"][1:] == [
        {
            "name": "app.service",
            "enabled": True,
            # Ignition enables through presets: without [Install] the unit would never start.
            "contents": app + "\n[Install]\nWantedBy=multi-user.target\n",
        },
        {
            "name": "docker.service",
            "enabled": True,
            "dropins": [{"name": "50-opts.conf", "contents": "[Service]\nEnvironment=A=1\n"}],
        },
        {"name": "update-engine.service", "mask": True},
        {"name": "backup.timer", "contents": "[Timer]\nOnCalendar=hourly\n"},
    ]


def test_a_unit_with_an_install_section_is_kept_as_written() -> None:
    content = "[Service]\nExecStart=/bin/true\n[Install]\nWantedBy=timers.target"
    data = with_units({"name": "app.service", "command": "start", "content": content})
    config = render_ignition(data, ssh_public_key=SSH_KEY)
    assert config["systemd"]["units"][1]["contents"] == content


def test_coreos_etcd_unit_stands_for_etcd_member() -> None:
    """The sample's `etcd.service` started CoreOS's etcd; Flatcar's is etcd-member.service,
    which gets its drop-ins."""
    data = with_units(
        {
            "name": "etcd.service",
            "command": "start",
            "drop-ins": [{"name": "40-limits.conf", "content": "[Service]\nLimitNOFILE=65536\n"}],
        },
        {"name": "fleet.service", "command": "start"},
    )
    config = render_ignition(data, ssh_public_key=SSH_KEY)
    names = [unit["name"] for unit in config["systemd"]["units"]]
    assert names == [ETCD_MEMBER_UNIT, "fleet.service"]
    assert [dropin["name"] for dropin in etcd_unit(config)["dropins"]] == [
        ETCD_DROPIN,
        "40-limits.conf",
    ]


def test_the_users_own_etcd2_unit_gets_the_environment(
    validators: dict[str, jsonschema.Draft4Validator],
) -> None:
    """As coreos-cloudinit did, the etcd2 section configures etcd2.service where the
    cloud-config gives it a content; Flatcar's etcd-member is then left alone."""
    content = "[Service]\nExecStart=/opt/bin/etcd\n"
    data = with_units(
        {"name": "etcd2.service", "command": "start", "content": content}, section="etcd2"
    )
    config = render_ignition(data, ssh_public_key=SSH_KEY, private_ipv4=PRIVATE, public_ipv4=PUBLIC)
    assert_valid(validators, config)
    assert [unit["name"] for unit in config["systemd"]["units"]] == ["etcd2.service"]
    unit = etcd_unit(config, "etcd2.service")
    assert unit["enabled"] is True
    assert unit["contents"] == content + "\n[Install]\nWantedBy=multi-user.target\n"
    assert "ETCD_LISTEN_PEER_URLS=http://10.0.0.5:2380" in etcd_dropin(config, "etcd2.service")


def test_addresses_cannot_be_read_at_start_for_a_unit_of_unknown_exec_start() -> None:
    data = with_units(
        {
            "name": "etcd2.service",
            "command": "start",
            "content": "[Service]\nExecStart=/opt/bin/etcd\n",
        },
        section="etcd2",
    )
    with pytest.raises(ValueError, match=r"etcd2\.service a content of its own.*real addresses"):
        render_ignition(data, ssh_public_key=SSH_KEY)


def test_users_etcd_member_drop_ins_are_merged() -> None:
    data = with_units(
        {"name": ETCD_MEMBER_UNIT, "drop-ins": [{"name": "30-tag.conf", "content": "[Service]\n"}]}
    )
    config = render_ignition(data, ssh_public_key=SSH_KEY)
    assert [unit["name"] for unit in config["systemd"]["units"]] == [ETCD_MEMBER_UNIT]
    assert [dropin["name"] for dropin in etcd_unit(config)["dropins"]] == [
        ETCD_DROPIN,
        "30-tag.conf",
    ]


@pytest.mark.parametrize(
    ("units", "complaint"),
    [
        ([{"name": "etcd.service", "mask": True}], "masks etcd.service, but the etcd section"),
        ([{"name": "a.service"}, {"name": "a.service"}], "lists a.service more than once"),
        ([{"name": "a.service", "command": "begin"}], "unknown command 'begin'"),
        ([{"name": "app"}], "'app' is not a systemd unit name"),
        ([{"command": "start"}], "coreos.units[0] has no name"),
        ([{"name": "a.service", "enable": "yes"}], "enable is 'yes', not true or false"),
        ([{"name": "a.service", "content": 1}], "content is a int, not text"),
        ([{"name": "a.service", "drop-ins": [{"name": "x.txt"}]}], "ending .conf"),
        ([{"name": "a.service", "contents": "x"}], "unknown key contents"),
        ("etcd.service", "coreos.units is a str, not a list"),
    ],
)
def test_units_that_cannot_be_rendered(units: Any, complaint: str) -> None:
    data = cloud_config.default_user_data()
    data["coreos"]["units"] = units
    with pytest.raises(ValueError, match=re.escape(complaint)):
        render_ignition(data, ssh_public_key=SSH_KEY)


def test_not_rendered_names_what_ignition_leaves_out() -> None:
    data = etcd2_user_data()
    data["users"] = [{"name": "elroy"}]
    data["coreos"]["units"].append({"name": "tmp.service", "runtime": True})
    assert not_rendered(data) == [
        "users",
        "coreos.update",
        "runtime of coreos.units (tmp.service): Ignition writes units to /etc, not /run",
    ]
    assert not_rendered(cloud_config.default_user_data()) == ["coreos.fleet"]


def test_rendering_leaves_the_user_data_unchanged() -> None:
    data = with_units({"name": "app.service", "command": "start", "content": "[Service]\n"})
    before = copy.deepcopy(data)
    render_ignition(data, ssh_public_key=SSH_KEY, hostname="core-01")
    assert data == before


def test_to_json_keeps_the_order_indents_by_two_and_reads_back() -> None:
    config = render_ignition(
        cloud_config.default_user_data(), ssh_public_key=SSH_KEY, hostname="core-01"
    )
    text = to_json(config)
    assert text.startswith('{\n  "ignition": {\n    "version": "3.4.0"\n  },\n  "passwd": {')
    assert text.endswith("}\n")
    assert text.isascii()
    assert json.loads(text) == config
    assert to_json(json.loads(text)) == text


# --- the user's own config -----------------------------------------------------------------

SAMPLES = ["flatcar-etcd-member.ign", "ct-etcd-member.ign", "docker-etcd.ign", "no-discovery.ign"]


@pytest.mark.parametrize("name", [*SAMPLES, "no-etcd.ign"])
def test_samples_are_valid_ignition(
    validators: dict[str, jsonschema.Draft4Validator], name: str
) -> None:
    assert_valid(validators, json.loads((DATA / name).read_text()))


@pytest.mark.parametrize(
    ("name", "unit"),
    [
        ("flatcar-etcd-member.ign", ETCD_MEMBER_UNIT),
        ("ct-etcd-member.ign", ETCD_MEMBER_UNIT),
        ("docker-etcd.ign", "etcd-container.service"),
        ("no-discovery.ign", ETCD_MEMBER_UNIT),
    ],
)
def test_load_ignition_finds_the_etcd_unit(name: str, unit: str) -> None:
    config = load_ignition(DATA / name)
    assert config == json.loads((DATA / name).read_text())
    assert etcd_unit_name(config) == unit


def load_error(path: Path) -> IgnitionError:
    with pytest.raises(IgnitionError) as caught:
        load_ignition(path)
    error = caught.value
    assert isinstance(error, ConfigError)
    assert error.source == f"--coreos-ignition {path}"
    assert error.path == path
    return error


def test_load_error_missing_file(tmp_path: Path) -> None:
    error = load_error(tmp_path / "config.ign")
    assert error.problem == "the file does not exist"
    assert str(error) == f"--coreos-ignition {tmp_path / 'config.ign'}: the file does not exist"


def test_load_error_directory(tmp_path: Path) -> None:
    assert load_error(tmp_path).problem == "is a directory, not an Ignition config"


def test_load_error_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "config.ign"
    path.write_bytes(b'{"ignition": {"version": "3.4.0\xff"}}')
    assert load_error(path).problem.startswith("the file is not UTF-8 text")


@pytest.mark.parametrize(
    ("text", "problem", "hint"),
    [
        (
            '{"ignition": {"version": "3.4.0"},}',
            "not JSON: Expecting property name enclosed in double quotes at line 1, column 35",
            "an Ignition config is JSON",
        ),
        (
            ETCD2_USER_DATA,
            "not JSON: Expecting value at line 1, column 1",
            "this is a cloud-config: give it with --coreos-user-data",
        ),
        (
            "variant: flatcar\nversion: 1.1.0\n",
            "not JSON: Expecting value at line 1, column 1",
            "this looks like a Butane config: translate it first (butane --strict)",
        ),
    ],
    ids=["trailing-comma", "cloud-config", "butane"],
)
def test_load_error_not_json(tmp_path: Path, text: str, problem: str, hint: str) -> None:
    path = tmp_path / "config.ign"
    path.write_text(text)
    error = load_error(path)
    assert (error.problem, error.hint) == (problem, hint)


@pytest.mark.parametrize(
    ("config", "problem"),
    [
        ([], "the document is a JSON array, not an Ignition config object"),
        ({"systemd": {}}, "has no ignition.version"),
        ({"ignition": {"version": 3.4}}, "has no ignition.version"),
        ({"ignition": "3.4.0"}, "has no ignition.version"),
    ],
)
def test_load_error_no_version(tmp_path: Path, config: Any, problem: str) -> None:
    path = tmp_path / "config.ign"
    path.write_text(json.dumps(config))
    error = load_error(path)
    assert error.problem == problem
    if "version" in problem:
        assert error.hint == 'an Ignition config starts {"ignition": {"version": "3.4.0"}, ...'


def test_load_error_duplicate_key(tmp_path: Path) -> None:
    path = tmp_path / "config.ign"
    path.write_text('{"ignition": {"version": "3.4.0", "version": "3.3.0"}}')
    assert load_error(path).problem == (
        "not a valid Ignition config: key 'version' appears twice in one object"
    )


@pytest.mark.parametrize(
    ("version", "hint_end"),
    [
        ("2.2.0", "translate it to spec 3 (ign-converter), or write Butane and translate it"),
        ("3.2.0", "stays valid with its ignition.version raised to 3.3.0"),
        ("3.5.0-experimental", "supported: 3.3.0, 3.4.0"),
    ],
)
def test_load_error_unsupported_version(tmp_path: Path, version: str, hint_end: str) -> None:
    path = tmp_path / "config.ign"
    config = json.loads((DATA / "flatcar-etcd-member.ign").read_text())
    config["ignition"]["version"] = version
    path.write_text(json.dumps(config))
    error = load_error(path)
    assert (
        error.problem == f"ignition.version is {version!r}, a spec pytest-coreos does not support"
    )
    assert error.hint.startswith("supported: 3.3.0, 3.4.0")
    assert error.hint.endswith(hint_end)


def test_load_error_spec_2_sample() -> None:
    error = load_error(DATA / "spec-2.ign")
    assert error.problem == "ignition.version is '2.2.0', a spec pytest-coreos does not support"


@pytest.mark.parametrize(
    ("systemd", "problem"),
    [
        ({"units": {}}, "systemd.units is not an array"),
        ({"units": [{"contents": "[Service]\n"}]}, "systemd.units[0] is not an object with a name"),
        ({"units": [{"name": "a.service", "contents": ["x"]}]}, "contents is not a string"),
        ({"units": [{"name": "a.service", "enabled": "yes"}]}, "enabled is not a boolean"),
        ({"units": [{"name": "a.service", "dropins": [{"contents": "x"}]}]}, "dropins[0] is not"),
    ],
)
def test_load_error_malformed_units(tmp_path: Path, systemd: Any, problem: str) -> None:
    path = tmp_path / "config.ign"
    path.write_text(json.dumps({"ignition": {"version": "3.4.0"}, "systemd": systemd}))
    error = load_error(path)
    assert error.problem.startswith("not a valid Ignition config: ")
    assert problem in error.problem


def test_load_error_no_etcd_unit() -> None:
    error = load_error(DATA / "no-etcd.ign")
    assert error.problem == "no unit runs etcd, so there is nowhere to inject the discovery URL"
    assert "etcd-member.service" in error.hint
    assert "ignition.config.merge" in error.hint


def test_load_error_masked_etcd_unit_is_no_etcd_unit(tmp_path: Path) -> None:
    path = tmp_path / "config.ign"
    config = json.loads((DATA / "no-discovery.ign").read_text())
    config["systemd"]["units"][0]["mask"] = True
    path.write_text(json.dumps(config))
    assert load_error(path).problem.startswith("no unit runs etcd")


def test_load_error_two_units_run_etcd(tmp_path: Path) -> None:
    path = tmp_path / "config.ign"
    units = [
        {"name": f"etcd-{n}.service", "contents": "[Service]\nExecStart=/usr/local/bin/etcd\n"}
        for n in (1, 2)
    ]
    path.write_text(json.dumps({"ignition": {"version": "3.4.0"}, "systemd": {"units": units}}))
    assert load_error(path).problem == "several units run etcd: etcd-1.service, etcd-2.service"


# --- discovery injection -------------------------------------------------------------------


def dropin_contents(config: dict[str, Any], unit: str, dropin: str) -> str:
    return str(
        next(d["contents"] for d in etcd_unit(config, unit)["dropins"] if d["name"] == dropin)
    )


def assert_only_discovery_changed(before: dict[str, Any], after: dict[str, Any], old: str) -> None:
    """The injected config equals the user's with the discovery URL put back."""
    assert json.loads(json.dumps(after).replace(DISCOVERY_URL, old)) == before


def test_inject_into_an_environment_line(validators: dict[str, jsonschema.Draft4Validator]) -> None:
    config = load_ignition(DATA / "flatcar-etcd-member.ign")
    before = copy.deepcopy(config)
    injected = inject_discovery_ignition(config, DISCOVERY_URL)
    assert config == before  # a deep copy
    assert_valid(validators, injected)
    assert dropin_contents(injected, ETCD_MEMBER_UNIT, "20-etcd.conf").splitlines()[:2] == [
        "[Service]",
        f'Environment="ETCD_DISCOVERY={DISCOVERY_URL}"',
    ]
    assert_only_discovery_changed(before, injected, "https://discovery.etcd.io/<token>")


def test_inject_into_a_ct_style_flag(validators: dict[str, jsonschema.Draft4Validator]) -> None:
    config = load_ignition(DATA / "ct-etcd-member.ign")
    injected = inject_discovery_ignition(config, DISCOVERY_URL)
    assert_valid(validators, injected)
    contents = dropin_contents(injected, ETCD_MEMBER_UNIT, "20-clct-etcd-member.conf")
    assert contents.endswith(f'  --discovery="{DISCOVERY_URL}"')
    assert_only_discovery_changed(config, injected, "https://discovery.etcd.io/<token>")


def test_inject_into_docker_run_e(validators: dict[str, jsonschema.Draft4Validator]) -> None:
    config = load_ignition(DATA / "docker-etcd.ign")
    injected = inject_discovery_ignition(config, DISCOVERY_URL)
    assert_valid(validators, injected)
    assert (
        f'  -e "ETCD_DISCOVERY={DISCOVERY_URL}" \\\n'
        in etcd_unit(injected, "etcd-container.service")["contents"]
    )
    old = "https://discovery.etcd.io/<token>"
    restored = json.loads(
        json.dumps(injected).replace(
            f'\\"ETCD_DISCOVERY={DISCOVERY_URL}\\"', f"ETCD_DISCOVERY={old}"
        )
    )
    assert restored == config


def test_inject_where_none_is_set_adds_a_drop_in(
    validators: dict[str, jsonschema.Draft4Validator],
) -> None:
    config = load_ignition(DATA / "no-discovery.ign")
    injected = inject_discovery_ignition(config, DISCOVERY_URL)
    assert_valid(validators, injected)
    dropins = etcd_unit(injected)["dropins"]
    assert dropins[:-1] == config["systemd"]["units"][0]["dropins"]
    assert dropins[-1] == {
        "name": DISCOVERY_DROPIN,
        "contents": f'[Service]\nEnvironment="ETCD_DISCOVERY={DISCOVERY_URL}"\n',
    }
    # Injected again, the drop-in now set is the one replaced.
    again = inject_discovery_ignition(injected, DISCOVERY_URL + "0")
    assert etcd_unit(again)["dropins"][-1]["contents"].endswith(f'{DISCOVERY_URL}0"\n')
    assert len(etcd_unit(again)["dropins"]) == len(dropins)


def test_inject_replaces_every_setting_of_the_unit() -> None:
    unit = {
        "name": ETCD_MEMBER_UNIT,
        "contents": '[Service]\nEnvironment=ETCD_NAME=a "ETCD_DISCOVERY=http://old/1" B=2\n'
        "ExecStart=/usr/bin/etcd --discovery http://old/2 --discovery-fallback=exit\n",
        "dropins": [
            {"name": "a.conf", "contents": "[Unit]\nEnvironment=ETCD_DISCOVERY=kept\n"},
            {"name": "b.conf", "contents": "# Environment=ETCD_DISCOVERY=kept\n[Service]\n"},
            {
                "name": "c.conf",
                "contents": "[Service]\nEnvironment='ETCD_DISCOVERY=http://old/3'\n",
            },
        ],
    }
    config = {"ignition": {"version": "3.4.0"}, "systemd": {"units": [unit]}}
    injected = etcd_unit(inject_discovery_ignition(config, DISCOVERY_URL))
    assert injected["contents"] == (
        f'[Service]\nEnvironment=ETCD_NAME=a "ETCD_DISCOVERY={DISCOVERY_URL}" B=2\n'
        f'ExecStart=/usr/bin/etcd --discovery "{DISCOVERY_URL}" --discovery-fallback=exit\n'
    )
    assert [d["contents"] for d in injected["dropins"]] == [
        "[Unit]\nEnvironment=ETCD_DISCOVERY=kept\n",  # not in [Service]: systemd ignores it
        "# Environment=ETCD_DISCOVERY=kept\n[Service]\n",  # a comment
        f'[Service]\nEnvironment="ETCD_DISCOVERY={DISCOVERY_URL}"\n',
    ]


def test_inject_into_a_rendered_config(validators: dict[str, jsonschema.Draft4Validator]) -> None:
    rendered = render_ignition(etcd2_user_data(), ssh_public_key=SSH_KEY)
    injected = inject_discovery_ignition(rendered, DISCOVERY_URL)
    assert_valid(validators, injected)
    expected = render_ignition(
        cloud_config.inject_discovery(etcd2_user_data(), DISCOVERY_URL), ssh_public_key=SSH_KEY
    )
    assert injected == expected


def test_systemd_reads_an_injected_url_as_given(tmp_path: Path) -> None:
    url = 'http://127.0.0.1:8087/a%20b$c\\d"e'
    config = render_ignition(cloud_config.default_user_data(), ssh_public_key=SSH_KEY)
    injected = inject_discovery_ignition(config, url)
    environment, _ = systemd_reads(tmp_path / "env", etcd_unit(injected))
    assert f"ETCD_DISCOVERY={url}" in environment
    ct = inject_discovery_ignition(load_ignition(DATA / "ct-etcd-member.ign"), url)
    _, commands = systemd_reads(tmp_path / "ct", etcd_unit(ct))
    # As systemd shows it: \ and " escaped, $ shown as \$ (the $$ that stands for one $).
    assert commands[-1].endswith(r' "--discovery=http://127.0.0.1:8087/a%20b\$\$c\\d\"e"')


@pytest.mark.parametrize("url", ["", "http://a b", "http://a\nb"])
def test_inject_refuses_a_url_that_is_not_one_word(url: str) -> None:
    config = load_ignition(DATA / "no-discovery.ign")
    with pytest.raises(ValueError, match="discovery URL"):
        inject_discovery_ignition(config, url)


def test_inject_without_an_etcd_unit_fails() -> None:
    config = json.loads((DATA / "no-etcd.ign").read_text())
    with pytest.raises(ValueError, match="no unit runs etcd"):
        inject_discovery_ignition(config, DISCOVERY_URL)
