"""fleet's configuration: the user-data's coreos.fleet section as fleetd's environment
(the pure mapping the stand-in's agent applies), and --coreos-fleet, the release the
machines get (a tarball, its URL, or a folder), with bad values as usage errors."""

from __future__ import annotations

import functools
import http.server
import io
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_coreos.config import cloud_config as render
from pytest_coreos.config import fleet_env
from pytest_coreos.errors import ConfigError, UserDataError
from pytest_coreos.handles.fleet import default_timeout
from pytest_coreos.host import fleet_release
from pytest_coreos.options import ClusterSpec, validate_spec

SEED_FLEET = Path(__file__).resolve().parents[2] / "examples" / "fleet" / "user-data"


# -- coreos.fleet as FLEET_* ---------------------------------------------------------------


def test_every_fleet_key_becomes_its_fleet_variable_with_addresses_replaced() -> None:
    data = render.load_user_data(SEED_FLEET)
    env = fleet_env.fleet_environment(
        data,
        private_ipv4="10.0.0.2",
        public_ipv4="192.0.2.2",
        etcd_client_urls=["http://10.0.0.2:4001"],
    )
    assert env == {
        "FLEET_PUBLIC_IP": "192.0.2.2",
        "FLEET_METADATA": "role=worker,address=192.0.2.2",
        "FLEET_AGENT_TTL": "10s",
        # Not in the section: the machine's own etcd.
        "FLEET_ETCD_SERVERS": "http://10.0.0.2:4001",
    }
    assert fleet_env.starts_fleet(data)
    assert fleet_env.agent_ttl_seconds(data) == 10.0


def test_keys_values_and_given_etcd_servers_map_as_coreos_cloudinit_wrote_them() -> None:
    data = {
        "coreos": {
            "fleet": {
                "etcd_servers": ["http://$private_ipv4:2379", "http://10.0.0.9:2379"],
                "engine-reconcile-interval": 0.5,
                "verbosity": 1,
                "disable-watches": False,
                "etcd-key-prefix": "/prefix",
                "metadata": "",  # empty: nothing set
                "public-ip": "\\$public_ipv4",  # a backslash keeps the placeholder
            }
        }
    }
    env = fleet_env.fleet_environment(
        data, private_ipv4="10.0.0.1", public_ipv4="192.0.2.1", etcd_client_urls=["http://x"]
    )
    assert env == {
        "FLEET_ETCD_SERVERS": "http://10.0.0.1:2379,http://10.0.0.9:2379",
        "FLEET_ENGINE_RECONCILE_INTERVAL": "0.5",
        "FLEET_VERBOSITY": "1",
        "FLEET_DISABLE_WATCHES": "false",
        "FLEET_ETCD_KEY_PREFIX": "/prefix",
        "FLEET_PUBLIC_IP": "$public_ipv4",
    }
    assert not fleet_env.starts_fleet(data)
    assert fleet_env.agent_ttl_seconds(data) == 30.0  # fleet's default
    assert fleet_env.agent_ttl_seconds({"coreos": {"fleet": {"agent-ttl": "1m30s"}}}) == 90.0


def test_the_seeds_default_user_data_starts_fleet() -> None:
    data = render.default_user_data()
    assert fleet_env.starts_fleet(data)
    assert fleet_env.fleet_environment(
        data, private_ipv4="10.0.0.1", public_ipv4="10.0.0.1", etcd_client_urls=[]
    ) == {"FLEET_PUBLIC_IP": "10.0.0.1"}


def test_an_unknown_fleet_key_is_refused_naming_the_known_ones(tmp_path: Path) -> None:
    path = tmp_path / "user-data"
    path.write_text(
        "#cloud-config\ncoreos:\n  etcd2:\n    name: x\n  fleet:\n    public_ip: $public_ipv4\n"
        "    metdata: role=web\n"
    )
    with pytest.raises(UserDataError) as raised:
        render.load_user_data(path)
    message = str(raised.value)
    assert message.startswith(f"--coreos-user-data {path}: unknown key in coreos.fleet: metdata")
    assert "did you mean metadata?" in message
    assert "known keys: agent-ttl, disable-engine," in message
    assert "fleetd ignores an unknown FLEET_* variable" in message


@pytest.mark.parametrize(
    ("fleet", "problem"),
    [
        ("public-ip", "coreos.fleet is a string, not a mapping"),
        ({"public-ip": "a", "public_ip": "b"}, "sets the same key twice: public-ip and public_ip"),
        ({"metadata": {"role": "web"}}, "coreos.fleet.metadata: a dict cannot be a fleet setting"),
    ],
)
def test_a_fleet_section_fleet_cannot_read_is_refused(fleet: object, problem: str) -> None:
    with pytest.raises(UserDataError, match=problem):
        fleet_env.check_fleet_section({"fleet": fleet}, "user-data")


# -- --coreos-fleet ------------------------------------------------------------------------


def make_tarball(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as archive:
        for name, content in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            info.mode = 0o755
            archive.addfile(info, io.BytesIO(content))
    return path


RELEASE = {
    "fleet-v9.9.9-linux-amd64/fleetd": b"#!/bin/sh\necho fleetd\n",
    "fleet-v9.9.9-linux-amd64/fleetctl": b"#!/bin/sh\necho fleetctl\n",
    "fleet-v9.9.9-linux-amd64/README.md": b"not extracted\n",
}


def test_a_release_tarball_is_unpacked_once_into_the_cache(tmp_path: Path) -> None:
    tarball = make_tarball(tmp_path / "fleet.tar.gz", RELEASE)
    cache = tmp_path / "cache"
    release = fleet_release.prepare(str(tarball), cache)
    assert release.fleetd.read_bytes() == RELEASE["fleet-v9.9.9-linux-amd64/fleetd"]
    assert release.fleetctl.stat().st_mode & 0o777 == 0o755
    assert sorted(p.name for p in release.folder.iterdir()) == ["fleetctl", "fleetd"]
    mtime = release.fleetd.stat().st_mtime_ns
    assert fleet_release.prepare(str(tarball), cache) == release
    assert release.fleetd.stat().st_mtime_ns == mtime  # not unpacked again
    # A folder holding both binaries is used as it is.
    assert fleet_release.prepare(str(release.folder), cache).folder == release.folder


def test_a_shared_copy_is_readable_by_every_user(tmp_path: Path) -> None:
    """What a VM's 9p share serves: the cache's folder is its owner's alone (0700), the
    shared copy every user's, as the machines' core user runs fleetctl."""
    release = fleet_release.prepare(str(make_tarball(tmp_path / "f.tar.gz", RELEASE)), tmp_path)
    release.folder.chmod(0o700)
    shared = release.shared_copy(tmp_path / "session" / "fleet")
    assert shared.stat().st_mode & 0o777 == 0o755
    assert sorted(p.name for p in shared.iterdir()) == ["fleetctl", "fleetd"]
    for name in ("fleetd", "fleetctl"):
        assert (shared / name).stat().st_mode & 0o777 == 0o755
        assert (shared / name).read_bytes() == RELEASE[f"fleet-v9.9.9-linux-amd64/{name}"]
    assert release.shared_copy(shared) == shared  # again, over the first copy


@pytest.fixture
def http_server(tmp_path: Path) -> Iterator[tuple[str, list[str]]]:
    """An HTTP server on 127.0.0.1 serving ``tmp_path/www``; the paths it was asked for."""
    root = tmp_path / "www"
    root.mkdir()
    requests: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            requests.append(self.path)

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Handler, directory=str(root))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", requests
    finally:
        server.shutdown()
        server.server_close()


def test_a_release_url_is_downloaded_once(tmp_path: Path, http_server) -> None:
    url, requests = http_server
    make_tarball(tmp_path / "www" / "fleet-v9.9.9-linux-amd64.tar.gz", RELEASE)
    cache = tmp_path / "cache"
    release = fleet_release.prepare(f"{url}/fleet-v9.9.9-linux-amd64.tar.gz", cache)
    assert release.fleetctl.read_bytes() == RELEASE["fleet-v9.9.9-linux-amd64/fleetctl"]
    again = fleet_release.prepare(f"{url}/fleet-v9.9.9-linux-amd64.tar.gz", cache)
    assert again == release
    assert requests == ["/fleet-v9.9.9-linux-amd64.tar.gz"]
    with pytest.raises(ConfigError, match=r"--coreos-fleet: .*/missing.tar.gz: cannot be down"):
        fleet_release.prepare(f"{url}/missing.tar.gz", cache)


def test_bad_fleet_releases_are_errors_naming_the_option(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    with pytest.raises(ConfigError, match=r"^--coreos-fleet: .*/nothing: no such file or folder"):
        fleet_release.prepare(str(tmp_path / "nothing"), cache)
    no_fleetctl = make_tarball(
        tmp_path / "half.tar.gz", {"fleet-v1/fleetd": b"x", "fleet-v1/deep/er/fleetctl": b"x"}
    )
    with pytest.raises(ConfigError) as raised:
        fleet_release.prepare(str(no_fleetctl), cache)
    assert "the tarball has no fleetctl (expected fleet-vX-linux-amd64/fleetd" in str(raised.value)
    assert "--coreos-fleet=PATH|URL" in str(raised.value)
    not_tar = tmp_path / "fleet.tar.gz"
    not_tar.write_text("not a tarball")
    with pytest.raises(ConfigError, match="not a readable tarball"):
        fleet_release.prepare(str(not_tar), cache)
    with pytest.raises(ConfigError, match="has no executable fleetd or fleetctl"):
        fleet_release.prepare(str(tmp_path), cache)
    assert not list(cache.glob("**/fleetd"))  # nothing half-unpacked is left


def test_fleet_is_refused_where_no_machine_could_run_it() -> None:
    refused = r"^--coreos-fleet: applies to the vagrant, nspawn and qemu providers only, not to "
    with pytest.raises(ConfigError, match=refused + "local"):
        validate_spec(ClusterSpec(fleet="/fleet.tar.gz"))
    with pytest.raises(ConfigError, match=refused + "ssh"):
        validate_spec(ClusterSpec(provider="ssh", fleet="/fleet.tar.gz"))
    assert validate_spec(ClusterSpec(provider="nspawn", fleet="/fleet.tar.gz")).fleet


def test_a_bad_fleet_option_stops_the_run_before_any_test(
    pytester: pytest.Pytester, tmp_path: Path
) -> None:
    pytester.makepyfile("def test_nothing(): pass")
    result = pytester.runpytest_subprocess(
        "--coreos-provider=nspawn", f"--coreos-fleet={tmp_path / 'fleet.tar.gz'}"
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--coreos-fleet: */fleet.tar.gz: no such file or folder*"])
    ini = pytester.makeini(f"[pytest]\ncoreos_fleet = {tmp_path}\n")
    assert ini.exists()
    result = pytester.runpytest_subprocess("--coreos-provider=vagrant")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--coreos-fleet: the folder * has no executable fleetd*"])


def test_binaries_are_put_where_a_provisioner_uploads_them(tmp_path: Path) -> None:
    tarball = make_tarball(tmp_path / "fleet.tar.gz", RELEASE)
    release = fleet_release.prepare(str(tarball), tmp_path / "cache")
    machine = tmp_path / "machines" / "core-01"
    fleet_release.copy_binaries(release, machine)
    fleet_release.copy_binaries(release, machine)  # again: replaced, not an error
    assert (machine / "fleetd").read_bytes() == release.fleetd.read_bytes()
    assert (machine / "fleetctl").stat().st_mode & 0o777 == 0o755


def test_fleets_waits_allow_for_its_agent_ttl() -> None:
    """fleet drops the state of a unit no agent reports any more only when the agent TTL
    runs out: a wait on a cluster with a long TTL (emulated VMs) waits that much longer."""
    assert default_timeout({"coreos": {"fleet": {"agent-ttl": "60s"}}}) == 120.0
    assert default_timeout({"coreos": {"fleet": {"agent-ttl": "10s"}}}) == 70.0
    assert default_timeout({}) == 90.0  # fleet's own TTL, 30 s
    assert default_timeout({"coreos": {"fleet": {"agent-ttl": "soon"}}}) == 90.0
