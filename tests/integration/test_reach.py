"""The test process's own clients against machines in a network lab (--coreos-network=netns
and the nspawn provider's containers): requests, this host's etcdctl and curl, and the
OpenSSH client reach each machine at the addresses the plugin prints, and nothing sent to
the lab's subnet leaves by another interface. Needs root, as CI is.

Nothing is sent to a lab address before ``ip route get`` says it goes into that lab.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from pytest_coreos import Cluster, Machine
from pytest_coreos.host.addresses import LAB_NETWORK
from pytest_coreos.host.netns import HOST_LINK_PREFIX, routes_taken

pytestmark = pytest.mark.needs_root("network labs")

SHAPES = {"netns": {"network": "netns"}, "nspawn": {"provider": "nspawn"}}


@pytest.fixture(scope="module", params=list(SHAPES))
def cluster(request: pytest.FixtureRequest, coreos_cluster_factory) -> Iterator[Cluster]:
    with coreos_cluster_factory(instances=3, **SHAPES[request.param]) as booted:
        yield booted


def host(url: str) -> str:
    hostname = requests.utils.urlparse(url).hostname
    assert hostname is not None
    return hostname


def lab_link(cluster: Cluster) -> tuple[str, ipaddress.IPv4Network]:
    """The host link every machine address routes to, and the lab's /24 (asked of the
    routing table: a lookup sends nothing)."""
    addresses = [machine.private_ipv4 for machine in cluster]
    links = set(routes_taken(addresses).values())
    assert len(links) == 1, links
    (link,) = links
    assert link.startswith(HOST_LINK_PREFIX)
    network = ipaddress.IPv4Network(f"{addresses[0]}/24", strict=False)
    assert network.subnet_of(LAB_NETWORK)
    return link, network


def assert_routed_into_the_lab(cluster: Cluster, *addresses: str) -> None:
    link, _ = lab_link(cluster)
    assert routes_taken(list(addresses)) == dict.fromkeys(addresses, link)


def session_key(cluster: Cluster) -> Path:
    """The private key the plugin logs in with, as its kept-cluster summary prints it."""
    key = cluster.workdir.parent / "id_ed25519"
    assert key.is_file()
    return key


def known_hosts(machines: list[Machine], path: Path) -> Path:
    """An OpenSSH known_hosts of the machines' pinned host keys."""
    path.write_text(
        "".join(
            f"{machine.ssh.host_key_name} {key.get_name()} {key.get_base64()}\n"
            for machine in machines
            for key in machine.ssh.host_keys
        )
    )
    return path


def openssh(cluster: Cluster, machine: Machine, known: Path, *command: str) -> str:
    """``command`` run on ``machine`` by this host's OpenSSH client, strictly checked."""
    assert_routed_into_the_lab(cluster, machine.ssh.host)
    result = subprocess.run(
        [
            "ssh",
            "-F",
            "/dev/null",
            "-i",
            str(session_key(cluster)),
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            f"UserKnownHostsFile={known}",
            "-o",
            "ConnectTimeout=10",
            "-p",
            str(machine.ssh.port),
            f"{machine.ssh.username}@{machine.ssh.host}",
            *command,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def etcdctl(cluster: Cluster, endpoints: list[str], *args: str) -> str:
    assert_routed_into_the_lab(cluster, *(host(url) for url in endpoints))
    result = subprocess.run(
        ["etcdctl", f"--endpoints={','.join(endpoints)}", "--dial-timeout=5s", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "ETCDCTL_API": "3"},
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout + result.stderr  # endpoint health reports on stderr


def curl(cluster: Cluster, *args: str, url: str) -> str:
    assert_routed_into_the_lab(cluster, host(url))
    result = subprocess.run(
        ["curl", "-sS", "--fail", "--noproxy", "*", "--max-time", "20", *args, url],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_the_machines_have_addresses_of_the_labs_subnet(cluster: Cluster) -> None:
    link, network = lab_link(cluster)
    for machine in cluster:
        assert ipaddress.ip_address(machine.private_ipv4) in network
        assert machine.ssh.host == machine.private_ipv4
        assert [host(url) for url in machine.etcd_endpoints] == [machine.private_ipv4]
    assert Path("/sys/class/net", link).exists()


def test_requests_reaches_every_machines_etcd(cluster: Cluster) -> None:
    for machine in cluster:
        (endpoint,) = machine.etcd_endpoints
        assert_routed_into_the_lab(cluster, host(endpoint))
        reply = requests.put(
            f"{endpoint}/v2/keys/reach/{machine.name}", data={"value": "1"}, timeout=10
        )
        assert reply.status_code in (200, 201), reply.text
        assert requests.get(f"{endpoint}/version", timeout=10).json()["etcdserver"]
    for machine in cluster:
        assert sorted(machine.etcd.ls("/reach")) == [f"/reach/{m.name}" for m in cluster]


def test_the_hosts_etcdctl_and_curl_reach_every_machine(cluster: Cluster) -> None:
    endpoints = [url for machine in cluster for url in machine.etcd_endpoints]
    etcdctl(cluster, endpoints, "put", "/reach/etcdctl", "from the host")
    for url in endpoints:
        assert etcdctl(cluster, [url], "get", "--print-value-only", "/reach/etcdctl") == (
            "from the host\n"
        )  # nothing on stderr either
    health = etcdctl(cluster, endpoints, "endpoint", "health")
    assert health.count("is healthy") == len(endpoints)
    for machine in cluster:
        (endpoint,) = machine.etcd_endpoints
        curl(
            cluster,
            "-X",
            "PUT",
            "-d",
            f"value={machine.name}",
            url=f"{endpoint}/v2/keys/reach/curl",
        )
        assert f'"value":"{machine.name}"' in curl(cluster, url=f"{endpoint}/v2/keys/reach/curl")


def test_the_openssh_client_logs_in_with_the_clusters_key_and_pinned_host_keys(
    cluster: Cluster, tmp_path: Path
) -> None:
    assert shutil.which("ssh")
    known = known_hosts(cluster.machines, tmp_path / "known_hosts")
    for machine in cluster:
        assert openssh(cluster, machine, known, "hostname") == f"{machine.name}\n"
    # A machine's key filed under another machine's name is refused: the check is real.
    first, second, *_ = cluster.machines
    swapped = tmp_path / "swapped"
    swapped.write_text(
        known.read_text()
        .replace(first.ssh.host_key_name + " ", "swap ")
        .replace(second.ssh.host_key_name + " ", first.ssh.host_key_name + " ")
    )
    result = subprocess.run(
        ["ssh", "-F", "/dev/null", "-i", str(session_key(cluster)), "-o", "BatchMode=yes",
         "-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={swapped}",
         "-p", str(first.ssh.port), f"{first.ssh.username}@{first.ssh.host}", "true"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )  # fmt: skip
    assert result.returncode == 255
    assert "host key" in result.stderr.lower()


@contextlib.contextmanager
def packet_counters(network: str, link: str) -> Iterator[Callable[[], dict[str, int]]]:
    """iptables counters of what this namespace sends to ``network``: through the lab's
    ``link``, to this host itself (its own lab address), and by any other interface, the
    last dropped as well as counted, so that nothing leaves even if the check fails."""
    tag = f"pytest-coreos-reach-{link}"
    rules = {
        "lab": (["-o", link], "ACCEPT"),
        "local": (["-o", "lo"], "ACCEPT"),
        "elsewhere": ([], "DROP"),
    }
    specs = {
        what: ["-d", network, *match, "-m", "comment", "--comment", f"{tag}-{what}", "-j", action]
        for what, (match, action) in rules.items()
    }
    added: list[list[str]] = []
    try:
        for spec in reversed(specs.values()):
            subprocess.run(["iptables", "-I", "OUTPUT", "1", *spec], check=True)
            added.append(spec)

        def read() -> dict[str, int]:
            listing = subprocess.run(
                ["iptables", "-nvxL", "OUTPUT"], capture_output=True, text=True, check=True
            ).stdout
            return {
                what: int(line.split()[0])
                for line in listing.splitlines()
                for what in specs
                if f"/* {tag}-{what} */" in line
            }

        yield read
    finally:
        for spec in added:
            subprocess.run(["iptables", "-D", "OUTPUT", *spec], check=False)


def test_nothing_sent_to_the_labs_subnet_leaves_by_another_interface(
    cluster: Cluster, tmp_path: Path
) -> None:
    link, network = lab_link(cluster)
    used = {machine.private_ipv4 for machine in cluster}
    unused = [str(address) for address in network.hosts() if str(address) not in used]
    # Every address but this host's own (.253) routes into the lab, used or not.
    assert_routed_into_the_lab(cluster, *used, *(a for a in unused if not a.endswith(".253")))
    known = known_hosts(cluster.machines, tmp_path / "known_hosts")
    with packet_counters(str(network), link) as counts:
        assert counts() == {"lab": 0, "local": 0, "elsewhere": 0}
        for machine in cluster:
            (endpoint,) = machine.etcd_endpoints
            requests.get(f"{endpoint}/health", timeout=10)
            curl(cluster, url=f"{endpoint}/version")
            openssh(cluster, machine, known, "true")
        for address in (unused[10], unused[100]):  # nothing answers there
            result = subprocess.run(
                ["curl", "-sS", "--noproxy", "*", "--connect-timeout", "2", f"http://{address}/"],
                capture_output=True,
                text=True,
                check=False,
            )
            assert result.returncode != 0
        seen = counts()
    assert seen["elsewhere"] == 0, seen
    assert seen["lab"] > 20, seen  # the counters count


def test_a_partition_cuts_machines_apart_but_not_off_the_test_process(
    cluster: Cluster, tmp_path: Path
) -> None:
    """A partition is between machines: the test process is in no group and keeps
    reaching each of them, as an operator's network would."""
    lonely, *majority = cluster.machines
    known = known_hosts(cluster.machines, tmp_path / "known_hosts")
    cluster.partition([lonely], majority)
    try:
        for machine in cluster:
            (endpoint,) = machine.etcd_endpoints
            assert_routed_into_the_lab(cluster, host(endpoint))
            assert requests.get(f"{endpoint}/version", timeout=10).ok
            assert openssh(cluster, machine, known, "hostname") == f"{machine.name}\n"
        # ...while the lonely member cannot reach the others (its SSH shell tries).
        peer = requests.utils.urlparse(majority[0].etcd_endpoints[0])
        probe = (
            f"timeout 3 bash -c 'echo > /dev/tcp/{peer.hostname}/{peer.port}' "
            "&& echo reached || echo cut"
        )
        assert openssh(cluster, lonely, known, probe).strip() == "cut"
        assert openssh(cluster, majority[1], known, probe).strip() == "reached"
    finally:
        cluster.heal()
        cluster.wait_until_healthy()


def test_the_host_link_goes_with_the_cluster(coreos_cluster_factory) -> None:
    with coreos_cluster_factory(instances=1, network="netns") as cluster:
        link, network = lab_link(cluster)
        record = cluster.describe()
        assert record["host_links"] == [link]
    assert not Path("/sys/class/net", link).exists()
    leftover = routes_taken([str(network.network_address + 1)])
    assert link not in leftover.values()
