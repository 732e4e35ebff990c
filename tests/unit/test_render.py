"""Unit tests of pytest_coreos.config's cloud_config, config_rb and etcd_env: cloud-config
in and out, config.rb, etcd's environment."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pytest_coreos.config.cloud_config import (
    default_user_data,
    inject_discovery,
    load_user_data,
    parse_user_data,
    render_user_data,
)
from pytest_coreos.config.config_rb import CHANNELS, render_config_rb
from pytest_coreos.config.etcd_env import (
    ETCD04_IMPLIED_ETCD2,
    ETCD04_KEYS,
    ETCD04_TO_ETCD2,
    ETCD2_KEYS,
    PRIVATE_IPV4,
    PUBLIC_IPV4,
    EtcdEnvironment,
    etcd_environment,
    etcd_section,
    substitute,
)
from pytest_coreos.errors import UserDataError

DISCOVERY_URL = "http://127.0.0.1:8087/0123456789abcdef0123456789abcdef"
PRIVATE = "10.0.0.5"
PUBLIC = "172.17.8.101"

# coreos-vagrant's user-data sample of 2014, with etcd 0.4.
ETCD04_USER_DATA = """\
#cloud-config

coreos:
  etcd:
      # generate a new token for each unique cluster from https://discovery.etcd.io/new
      discovery: https://discovery.etcd.io/<token>
      addr: $public_ipv4:4001
      peer-addr: $public_ipv4:7001
  fleet:
      public-ip: $public_ipv4
  update:
      reboot-strategy: off
  units:
    - name: etcd.service
      command: start
    - name: fleet.service
      command: start
"""

# The same cluster as CoreOS documented it for etcd2, with a few other top-level keys.
ETCD2_USER_DATA = (Path(__file__).parents[1] / "data" / "etcd2-user-data").read_text()


def write(tmp_path: Path, text: str, name: str = "user-data") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# --- default data and the round trip ------------------------------------------------------


def test_default_user_data_renders_as_coreos_vagrant_sample() -> None:
    assert render_user_data(default_user_data()) == (
        "#cloud-config\n"
        "\n"
        "coreos:\n"
        "  etcd:\n"
        "    discovery: https://discovery.etcd.io/<token>\n"
        "    addr: $public_ipv4:4001\n"
        "    peer-addr: $public_ipv4:7001\n"
        "  fleet:\n"
        "    public-ip: $public_ipv4\n"
        "  units:\n"
        "    - name: etcd.service\n"
        "      command: start\n"
        "    - name: fleet.service\n"
        "      command: start\n"
    )


def test_default_user_data_loads_back(tmp_path: Path) -> None:
    data = default_user_data()
    assert load_user_data(write(tmp_path, render_user_data(data))) == data


def test_default_user_data_is_fresh_each_time() -> None:
    first = default_user_data()
    first["coreos"]["etcd"]["addr"] = "changed"
    assert default_user_data()["coreos"]["etcd"]["addr"] == "$public_ipv4:4001"


@pytest.mark.parametrize(
    ("text", "section_name"),
    [(ETCD04_USER_DATA, "etcd"), (ETCD2_USER_DATA, "etcd2")],
    ids=["etcd-0.4", "etcd2"],
)
def test_load_inject_render_load(tmp_path: Path, text: str, section_name: str) -> None:
    loaded = load_user_data(write(tmp_path, text))
    injected = inject_discovery(loaded, DISCOVERY_URL)
    reloaded = load_user_data(write(tmp_path, render_user_data(injected), "rendered"))

    assert reloaded == injected
    assert etcd_section(reloaded) == (
        section_name,
        {**loaded["coreos"][section_name], "discovery": DISCOVERY_URL},
    )
    # Only the discovery URL changed, and the user's data was not touched.
    assert {**injected, "coreos": None} == {**loaded, "coreos": None}
    assert {**injected["coreos"], section_name: None} == {**loaded["coreos"], section_name: None}
    assert loaded["coreos"][section_name]["discovery"] == "https://discovery.etcd.io/<token>"
    assert list(reloaded["coreos"][section_name]) == list(loaded["coreos"][section_name])


def test_etcd2_round_trip_keeps_values_as_written(tmp_path: Path) -> None:
    loaded = load_user_data(write(tmp_path, ETCD2_USER_DATA))
    rendered = render_user_data(loaded)

    assert loaded["write_files"][0] == {
        "path": "/etc/motd.d/test.conf",
        "permissions": "0644",
        "content": "hello\nfrom cloud-config\n",
    }
    assert loaded["coreos"]["etcd2"]["proxy"] == "off"
    assert "    proxy: 'off'\n" in rendered
    assert "    permissions: '0644'\n" in rendered
    assert "    content: |\n      hello\n      from cloud-config\n" in rendered


def test_inject_discovery_adds_a_missing_discovery_key() -> None:
    data = {"coreos": {"etcd2": {"name": "core-01"}}}
    assert inject_discovery(data, DISCOVERY_URL) == {
        "coreos": {"etcd2": {"name": "core-01", "discovery": DISCOVERY_URL}}
    }
    assert data == {"coreos": {"etcd2": {"name": "core-01"}}}


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"coreos": "etcd"},
        {"coreos": {"fleet": {}}},
        {"coreos": {"etcd": None}},
        {"coreos": {"etcd": {}, "etcd2": {}}},
    ],
    ids=["no-coreos", "coreos-not-mapping", "no-etcd", "etcd-null", "both"],
)
def test_etcd_section_needs_exactly_one_section(data: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=r"coreos"):
        etcd_section(data)
    with pytest.raises(ValueError, match=r"coreos"):
        inject_discovery(data, DISCOVERY_URL)


# --- reading values as written ------------------------------------------------------------


@pytest.mark.parametrize(
    ("written", "value"),
    [
        ("off", "off"),
        ("on", "on"),
        ("yes", "yes"),
        ("no", "no"),
        ("Off", "Off"),
        ("y", "y"),
        ("0644", "0644"),
        ("0x1F", "0x1F"),
        ("1_000", "1_000"),
        ("1:30", "1:30"),
        ("2015-01-01", "2015-01-01"),
        ("=", "="),
        ("true", True),
        ("False", False),
        ("4001", 4001),
        ("-1", -1),
        ("0", 0),
        ("1.5", 1.5),
        ("~", None),
        ("null", None),
        ("", None),
        ("'yes'", "yes"),
    ],
)
def test_values_stay_as_written(written: str, value: object) -> None:
    text = f"#cloud-config\nvalue: {written}\ncoreos:\n  etcd2:\n    name: x\n"
    loaded = parse_user_data(text, "user-data")["value"]
    assert loaded == value
    assert type(loaded) is type(value)


def test_reboot_strategy_off_stays_off(tmp_path: Path) -> None:
    loaded = load_user_data(write(tmp_path, ETCD04_USER_DATA))
    assert loaded["coreos"]["update"] == {"reboot-strategy": "off"}


@pytest.mark.parametrize(
    "value",
    ["off", "ON", "yes", "No", "y", "1.0", "1e3", "4001", "0644", "1:30", "null", "~", "",
     "2015-01-01", "=", "<<", "true", ".inf", " leading space", "a: b", "#not a comment",
     "line\nbreak\n", "trailing space \nx", "tab\tand unicode é", "$public_ipv4:4001"],
)  # fmt: skip
def test_rendered_strings_read_back_as_the_same_strings(tmp_path: Path, value: str) -> None:
    data = {"coreos": {"etcd2": {"name": value}}, value: [value, {"key": value}]}
    assert load_user_data(write(tmp_path, render_user_data(data))) == data


@pytest.mark.parametrize(
    "value", [True, False, None, 0, 4001, -7, 1.5, [], {}, ["a", 1, True, None]]
)
def test_rendered_non_strings_read_back_unchanged(tmp_path: Path, value: object) -> None:
    data = {"coreos": {"etcd2": {"name": "x"}}, "value": value}
    assert load_user_data(write(tmp_path, render_user_data(data))) == data


def test_rendered_yaml_has_no_aliases_and_no_folded_lines() -> None:
    shared = {"command": "start"}
    long_key = "ssh-rsa " + "A" * 300
    data = {"coreos": {"etcd2": {}, "units": [shared, shared]}, "ssh_authorized_keys": [long_key]}
    rendered = render_user_data(data)
    assert "&" not in rendered
    assert "*" not in rendered
    assert f"  - {long_key}\n" in rendered


# --- errors in the user's file ------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "the file is empty"),
        ("\n#cloud-config\n", "the first line is '', not '#cloud-config'"),
        ("#!/bin/bash\necho hi\n", "the first line is '#!/bin/bash', not '#cloud-config'"),
        (" #cloud-config\ncoreos: {}\n", "the first line is ' #cloud-config'"),
        ("#cloud-config: yes\n", "the first line is '#cloud-config: yes'"),
        ("coreos:\n  etcd2: {}\n", "the first line is 'coreos:'"),
        ("#cloud-config\ncoreos:\n  etcd2: [\n", "not valid YAML at line 4"),
        ("#cloud-config\ncoreos:\n  etcd2:\n    name: a\n   bad: b\n", "not valid YAML at line 5"),
        ("#cloud-config\n", "nothing follows the #cloud-config line"),
        ("#cloud-config\n- coreos\n", "the document is a list, not a mapping"),
        ("#cloud-config\njust text\n", "the document is a string, not a mapping"),
        ("#cloud-config\nhostname: core-01\n", "has no coreos section"),
        ("#cloud-config\ncoreos: [etcd2]\n", "coreos is not a mapping"),
        (
            "#cloud-config\ncoreos:\n  fleet: {}\n",
            "has neither coreos.etcd nor coreos.etcd2, so the machines would start no etcd",
        ),
        (
            "#cloud-config\ncoreos:\n  etcd2:\n",
            "coreos.etcd2 is empty, so the machines would start no etcd",
        ),
        ("#cloud-config\ncoreos:\n  etcd: [addr]\n", "coreos.etcd is a list, not a mapping"),
        (
            "#cloud-config\ncoreos:\n  etcd: {addr: a}\n  etcd2: {name: b}\n",
            "has both coreos.etcd and coreos.etcd2",
        ),
        (
            "#cloud-config\ncoreos:\n  etcd2:\n    advertise-client-url: http://a:2379\n",
            "unknown key in coreos.etcd2: advertise-client-url "
            "(advertise-client-url: did you mean advertise-client-urls?)",
        ),
        (
            "#cloud-config\ncoreos:\n  etcd2:\n    peer-addr: a:7001\n    zzz: 1\n",
            "unknown keys in coreos.etcd2: peer-addr, zzz "
            "(peer-addr belongs in coreos.etcd, for etcd 0.4)",
        ),
        (
            "#cloud-config\ncoreos:\n  etcd:\n    listen-client-urls: http://a:2379\n",
            "unknown key in coreos.etcd: listen-client-urls "
            "(listen-client-urls belongs in coreos.etcd2)",
        ),
        (
            "#cloud-config\ncoreos:\n  etcd2:\n    name: a\n    name: b\n    1: x\n",
            "unknown key in coreos.etcd2: 1",
        ),
        (
            "#cloud-config\ncoreos:\n  etcd:\n    peer-addr: a:7001\n    peer_addr: b:7001\n",
            "coreos.etcd sets the same key twice: peer-addr and peer_addr",
        ),
    ],
    ids=[
        "empty",
        "blank-first-line",
        "shell-script",
        "leading-space",
        "header-with-more",
        "no-header",
        "unclosed-flow",
        "bad-indent",
        "header-only",
        "list",
        "scalar",
        "no-coreos",
        "coreos-list",
        "no-etcd",
        "etcd2-null",
        "etcd-list",
        "both-etcd",
        "typo",
        "unknown-and-etcd04-key",
        "etcd2-key-in-etcd",
        "non-string-key",
        "two-spellings",
    ],
)
def test_unusable_user_data(tmp_path: Path, text: str, problem: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(UserDataError) as caught:
        load_user_data(path)
    assert caught.value.path == path
    assert str(path) in str(caught.value)
    assert problem in caught.value.problem


def test_unknown_key_lists_the_sorted_known_keys(tmp_path: Path) -> None:
    path = write(tmp_path, "#cloud-config\ncoreos:\n  etcd:\n    adr: $public_ipv4:4001\n")
    with pytest.raises(UserDataError) as caught:
        load_user_data(path)
    assert caught.value.problem == "unknown key in coreos.etcd: adr (adr: did you mean addr?)"
    assert f"known keys: {', '.join(sorted(ETCD04_KEYS))};" in caught.value.hint
    assert "silently change nothing" in caught.value.hint


def test_yaml_error_names_the_yaml_problem(tmp_path: Path) -> None:
    path = write(tmp_path, "#cloud-config\ncoreos:\n  etcd2: {name: [}\n")
    with pytest.raises(UserDataError, match=r"not valid YAML at line 3, column \d+: .+") as caught:
        load_user_data(path)
    assert isinstance(caught.value.__cause__, Exception)


@pytest.mark.parametrize(
    ("make", "problem"),
    [
        (lambda tmp: tmp / "missing", "the file does not exist"),
        (lambda tmp: tmp, "is a directory"),
        (lambda tmp: write_bytes(tmp / "latin1", b"#cloud-config\nname: \xe9\n"), "not UTF-8"),
    ],
    ids=["missing", "directory", "not-utf8"],
)
def test_unreadable_user_data(tmp_path: Path, make: Any, problem: str) -> None:
    path = make(tmp_path)
    with pytest.raises(UserDataError) as caught:
        load_user_data(path)
    assert caught.value.path == path
    assert str(path) in str(caught.value)
    assert problem in caught.value.problem


def write_bytes(path: Path, content: bytes) -> Path:
    path.write_bytes(content)
    return path


@pytest.mark.parametrize(
    "text",
    [
        "#cloud-config\r\ncoreos:\r\n  etcd2:\r\n    name: a\r\n",
        "#cloud-config  \ncoreos:\n  etcd2:\n    name: a\n",
        "#cloud-config\ncoreos:\n  etcd2:\n    initial_cluster_token: a\n    name: a\n",
        "#cloud-config\ncoreos:\n  etcd:\n    peer_addr: a:7001\n    data_dir: /d\n",
    ],
    ids=["crlf", "trailing-space", "etcd2-underscores", "etcd04-underscores"],
)
def test_accepted_as_coreos_cloudinit_accepted(text: str) -> None:
    assert etcd_section(parse_user_data(text, "user-data"))[0] in {"etcd", "etcd2"}


# --- the key lists ------------------------------------------------------------------------


def test_key_lists_match_coreos_cloudinit() -> None:
    # config/etcd.go has 33 etcd 0.4 fields; config/etcd2.go has 41.
    assert len(ETCD04_KEYS) == 33
    assert len(ETCD2_KEYS) == 41
    assert {"addr", "peer-addr", "discovery", "cluster-active-size"} <= ETCD04_KEYS
    assert {"advertise-client-urls", "proxy", "wal-dir", "strict-reconfig-check"} <= ETCD2_KEYS
    translated = {key for key in ETCD04_TO_ETCD2.values() if key is not None}
    implied = {key for keys in ETCD04_IMPLIED_ETCD2.values() for key in keys}
    assert translated | implied <= ETCD2_KEYS


# --- etcd's environment -------------------------------------------------------------------


def test_etcd04_sample_environment(tmp_path: Path) -> None:
    data = inject_discovery(load_user_data(write(tmp_path, ETCD04_USER_DATA)), DISCOVERY_URL)
    assert etcd_environment(data, private_ipv4=PRIVATE, public_ipv4=PUBLIC) == EtcdEnvironment(
        env={
            "ETCD_DISCOVERY": DISCOVERY_URL,
            "ETCD_ADVERTISE_CLIENT_URLS": "http://172.17.8.101:4001",
            "ETCD_LISTEN_CLIENT_URLS": "http://0.0.0.0:4001",
            "ETCD_INITIAL_ADVERTISE_PEER_URLS": "http://172.17.8.101:7001",
            "ETCD_LISTEN_PEER_URLS": "http://0.0.0.0:7001",
        },
        dropped=(),
    )


def test_etcd2_sample_environment(tmp_path: Path) -> None:
    data = inject_discovery(load_user_data(write(tmp_path, ETCD2_USER_DATA)), DISCOVERY_URL)
    assert etcd_environment(data, private_ipv4=PRIVATE, public_ipv4=PUBLIC) == EtcdEnvironment(
        env={
            "ETCD_DISCOVERY": DISCOVERY_URL,
            "ETCD_ADVERTISE_CLIENT_URLS": "http://172.17.8.101:2379,http://172.17.8.101:4001",
            "ETCD_INITIAL_ADVERTISE_PEER_URLS": "http://10.0.0.5:2380",
            "ETCD_LISTEN_CLIENT_URLS": "http://0.0.0.0:2379,http://0.0.0.0:4001",
            "ETCD_LISTEN_PEER_URLS": "http://10.0.0.5:2380",
            "ETCD_HEARTBEAT_INTERVAL": "100",
            "ETCD_ELECTION_TIMEOUT": "1000",
            "ETCD_STRICT_RECONFIG_CHECK": "true",
            "ETCD_PROXY": "off",
        },
        dropped=(),
    )


@pytest.mark.parametrize(
    ("section", "env"),
    [
        ({"initial_cluster_token": "t"}, {"ETCD_INITIAL_CLUSTER_TOKEN": "t"}),
        ({"force-new-cluster": False}, {"ETCD_FORCE_NEW_CLUSTER": "false"}),
        ({"max-wals": 0}, {"ETCD_MAX_WALS": "0"}),
        (
            {"listen-client-urls": ["http://$private_ipv4:2379", "http://127.0.0.1:2379"]},
            {"ETCD_LISTEN_CLIENT_URLS": "http://10.0.0.5:2379,http://127.0.0.1:2379"},
        ),
        ({"name": "core-01", "discovery": None, "data-dir": ""}, {"ETCD_NAME": "core-01"}),
        ({"cors": r"\$public_ipv4"}, {"ETCD_CORS": "$public_ipv4"}),
    ],
    ids=["underscores", "bool", "zero", "list", "empty-values", "escaped-placeholder"],
)
def test_etcd2_environment(section: dict[str, Any], env: dict[str, str]) -> None:
    result = etcd_environment(
        {"coreos": {"etcd2": section}}, private_ipv4=PRIVATE, public_ipv4=PUBLIC
    )
    assert result == EtcdEnvironment(env=env, dropped=())


@pytest.mark.parametrize(
    ("section", "env"),
    [
        (
            {"addr": "$private_ipv4:4001", "bind-addr": "$private_ipv4"},
            {
                "ETCD_ADVERTISE_CLIENT_URLS": "http://10.0.0.5:4001",
                "ETCD_LISTEN_CLIENT_URLS": "http://10.0.0.5:4001",
            },
        ),
        (
            {"addr": "$public_ipv4:4001", "bind-addr": "0.0.0.0:14001"},
            {
                "ETCD_ADVERTISE_CLIENT_URLS": "http://172.17.8.101:4001",
                "ETCD_LISTEN_CLIENT_URLS": "http://0.0.0.0:14001",
            },
        ),
        (
            {"bind-addr": "127.0.0.1"},
            {"ETCD_LISTEN_CLIENT_URLS": "http://127.0.0.1:4001"},
        ),
        (
            {"addr": "$public_ipv4"},
            {
                "ETCD_ADVERTISE_CLIENT_URLS": "http://172.17.8.101:4001",
                "ETCD_LISTEN_CLIENT_URLS": "http://0.0.0.0:4001",
            },
        ),
        (
            {"peer-addr": "$private_ipv4:7001", "peer-bind-addr": "http://10.1.1.1:7002"},
            {
                "ETCD_INITIAL_ADVERTISE_PEER_URLS": "http://10.0.0.5:7001",
                "ETCD_LISTEN_PEER_URLS": "http://10.1.1.1:7002",
            },
        ),
        (
            {"addr": "https://$public_ipv4:4001", "peer-addr": "http://$public_ipv4"},
            {
                "ETCD_ADVERTISE_CLIENT_URLS": "https://172.17.8.101:4001",
                "ETCD_LISTEN_CLIENT_URLS": "https://0.0.0.0:4001",
                "ETCD_INITIAL_ADVERTISE_PEER_URLS": "http://172.17.8.101",
                "ETCD_LISTEN_PEER_URLS": "http://0.0.0.0:80",
            },
        ),
        (
            {"addr": "[fd00::1]:4001", "peer-bind-addr": "::"},
            {
                "ETCD_ADVERTISE_CLIENT_URLS": "http://[fd00::1]:4001",
                "ETCD_LISTEN_CLIENT_URLS": "http://0.0.0.0:4001",
                "ETCD_LISTEN_PEER_URLS": "http://[::]:7001",
            },
        ),
        (
            {
                "addr": "$public_ipv4:4001",
                "cert-file": "/c.crt",
                "key-file": "/c.key",
                "ca-file": "/ca.crt",
            },
            {
                "ETCD_ADVERTISE_CLIENT_URLS": "https://172.17.8.101:4001",
                "ETCD_LISTEN_CLIENT_URLS": "https://0.0.0.0:4001",
                "ETCD_CERT_FILE": "/c.crt",
                "ETCD_KEY_FILE": "/c.key",
                "ETCD_TRUSTED_CA_FILE": "/ca.crt",
                "ETCD_CLIENT_CERT_AUTH": "true",
            },
        ),
        (
            {
                "peer-addr": "$private_ipv4:7001",
                "peer-cert-file": "/p.crt",
                "peer-key-file": "/p.key",
                "peer-ca-file": "/pca.crt",
            },
            {
                "ETCD_INITIAL_ADVERTISE_PEER_URLS": "https://10.0.0.5:7001",
                "ETCD_LISTEN_PEER_URLS": "https://0.0.0.0:7001",
                "ETCD_PEER_CERT_FILE": "/p.crt",
                "ETCD_PEER_KEY_FILE": "/p.key",
                "ETCD_PEER_TRUSTED_CA_FILE": "/pca.crt",
                "ETCD_PEER_CLIENT_CERT_AUTH": "true",
            },
        ),
        (
            {
                "name": "core-01",
                "data_dir": "/var/lib/etcd",
                "snapshot-count": 5000,
                "cors": "*",
                "peer-election-timeout": 250,
                "peer-heartbeat-interval": 25,
            },
            {
                "ETCD_NAME": "core-01",
                "ETCD_DATA_DIR": "/var/lib/etcd",
                "ETCD_SNAPSHOT_COUNT": "5000",
                "ETCD_CORS": "*",
                "ETCD_ELECTION_TIMEOUT": "250",
                "ETCD_HEARTBEAT_INTERVAL": "25",
            },
        ),
    ],
    ids=[
        "bind-addr-without-port",
        "bind-addr-with-port",
        "bind-addr-alone",
        "addr-without-port",
        "peer-bind-addr-url",
        "schemes-kept",
        "ipv6",
        "client-tls",
        "peer-tls",
        "by-name",
    ],
)
def test_etcd04_environment(section: dict[str, Any], env: dict[str, str]) -> None:
    result = etcd_environment(
        {"coreos": {"etcd": section}}, private_ipv4=PRIVATE, public_ipv4=PUBLIC
    )
    assert result == EtcdEnvironment(env=env, dropped=())


def test_etcd04_keys_without_equivalent_are_dropped() -> None:
    section = {
        "peers": "10.0.0.1:7001,10.0.0.2:7001",
        "name": "core-01",
        "cluster-active-size": 9,
        "verbose": True,
        "peers_file": "/p",
        "snapshot": True,
    }
    result = etcd_environment(
        {"coreos": {"etcd": section}}, private_ipv4=PRIVATE, public_ipv4=PUBLIC
    )
    assert result == EtcdEnvironment(
        env={"ETCD_NAME": "core-01"},
        dropped=("peers", "cluster-active-size", "verbose", "peers-file", "snapshot"),
    )


@pytest.mark.parametrize(
    ("section_name", "section", "message"),
    [
        ("etcd2", {"name": {"nested": 1}}, "coreos.etcd2.name: a dict cannot be"),
        ("etcd2", {"cors": [["a"]]}, "coreos.etcd2.cors: a list cannot be"),
        ("etcd", {"addr": 4001}, "coreos.etcd.addr: expected host:port, got 4001"),
    ],
)
def test_etcd_environment_rejects_values_etcd_cannot_take(
    section_name: str, section: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        etcd_environment(
            {"coreos": {section_name: section}}, private_ipv4=PRIVATE, public_ipv4=PUBLIC
        )


# --- substitution -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("$private_ipv4", "10.0.0.5"),
        ("$public_ipv4:4001", "172.17.8.101:4001"),
        ("http://$private_ipv4:2380", "http://10.0.0.5:2380"),
        ("$private_ipv4,$public_ipv4", "10.0.0.5,172.17.8.101"),
        ("$public_ipv4$public_ipv4", "172.17.8.101172.17.8.101"),
        (r"\$private_ipv4", "$private_ipv4"),
        (r"a\$public_ipv4 $public_ipv4", "a$public_ipv4 172.17.8.101"),
        ("$private_ipv6", "$private_ipv6"),
        ("$PRIVATE_IPV4", "$PRIVATE_IPV4"),
        ("no placeholder", "no placeholder"),
    ],
)
def test_substitute(value: str, expected: str) -> None:
    assert substitute(value, PRIVATE, PUBLIC) == expected


def test_placeholders_are_coreos_names() -> None:
    assert (PRIVATE_IPV4, PUBLIC_IPV4) == ("$private_ipv4", "$public_ipv4")


def test_substitute_keeps_backslashes_in_addresses() -> None:
    assert substitute("$private_ipv4", r"\1\g<0>", PUBLIC) == r"\1\g<0>"


# --- config.rb ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ((3, "stable"), '$num_instances=3\n$update_channel="stable"\n'),
        ((1, "alpha", {}), '$num_instances=1\n$update_channel="alpha"\n'),
        (
            (
                5,
                "beta",
                {
                    "vm_memory": 2048,
                    "vm_gui": False,
                    "share_home": True,
                    "instance_name_prefix": "core",
                },
            ),
            "$num_instances=5\n"
            '$update_channel="beta"\n'
            "$vm_memory=2048\n"
            "$vm_gui=false\n"
            "$share_home=true\n"
            '$instance_name_prefix="core"\n',
        ),
        (
            (2, "stable", {"motd": 'say "hi"\\ #{`rm -rf /`} #$x #@y # ok\n\ttab\x1b'}),
            "$num_instances=2\n"
            '$update_channel="stable"\n'
            '$motd="say \\"hi\\"\\\\ \\#{`rm -rf /`} \\#$x \\#@y # ok\\n\\ttab\\x1B"\n',
        ),
    ],
    ids=["two-args", "empty-extra", "extras", "escaping"],
)
def test_render_config_rb(args: tuple[Any, ...], expected: str) -> None:
    assert render_config_rb(*args) == expected


@pytest.mark.parametrize("channel", CHANNELS)
def test_render_config_rb_takes_every_channel(channel: str) -> None:
    assert f'$update_channel="{channel}"\n' in render_config_rb(1, channel)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((0, "stable"), "num_instances must be an int of at least 1, not 0"),
        ((-2, "stable"), "num_instances must be an int of at least 1, not -2"),
        ((True, "stable"), "num_instances must be an int of at least 1, not True"),
        ((3, "Stable"), "update_channel must be one of stable, beta, alpha, not 'Stable'"),
        ((3, "edge"), "update_channel must be one of stable, beta, alpha, not 'edge'"),
        ((3, "stable", {"vm-memory": 1}), "'vm-memory' is not a Ruby identifier"),
        ((3, "stable", {"1st": 1}), "'1st' is not a Ruby identifier"),
        ((3, "stable", {"x\n": 1}), "is not a Ruby identifier"),
        ((3, "stable", {"": 1}), "'' is not a Ruby identifier"),
        ((3, "stable", {"num_instances": 4}), "'num_instances' is set by its own parameter"),
    ],
)
def test_render_config_rb_rejects(args: tuple[Any, ...], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        render_config_rb(*args)


def test_render_config_rb_rejects_other_value_types() -> None:
    with pytest.raises(TypeError, match="str, int or bool, not float"):
        render_config_rb(3, "stable", {"vm_cpus": 1.5})  # type: ignore[dict-item]
