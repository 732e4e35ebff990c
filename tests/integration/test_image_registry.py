"""The session's image registry: a real docker-registry on loopback, filled by a real
skopeo from the busybox archive the package builds, checked over the registry's HTTP API.
Nothing of either is left afterwards: no process, no folder, nothing in /var/tmp or in
skopeo's system-wide cache."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import socket
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from pytest_coreos.config.images import ImageArchive
from pytest_coreos.errors import ProcessError
from pytest_coreos.host.image_registry import ImageRegistry, skopeo_environment
from pytest_coreos.host.images import read_archive
from pytest_coreos.host.process import is_same_process
from pytest_coreos.image.archive import busybox_image, write_docker_archive

SCHEMA2 = "application/vnd.docker.distribution.manifest.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
SYSTEM_CACHE = Path("/var/lib/containers")


@pytest.fixture(scope="module")
def busybox(tmp_path_factory: pytest.TempPathFactory) -> ImageArchive:
    return read_archive(busybox_image(tmp_path_factory.mktemp("images") / "busybox.tar"))


def _leftovers() -> tuple[set[str], bool]:
    return set(os.listdir("/var/tmp")), SYSTEM_CACHE.exists()


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[ImageRegistry]:
    before = _leftovers()
    service = ImageRegistry(tmp_path / "registry")
    try:
        service.start(timeout=15)
        yield service
    finally:
        records = service.describe()
        service.close()
    assert not (tmp_path / "registry").exists()
    assert not any(is_same_process(r["pid"], r["start_time"]) for r in records)  # type: ignore[arg-type]
    assert _leftovers() == before


def _config_digest(archive: ImageArchive) -> str:
    with tarfile.open(archive.path) as tar:
        manifest = tar.extractfile("manifest.json")
        assert manifest is not None
        config: str = json.loads(manifest.read())[0]["Config"]
    return "sha256:" + config.removesuffix(".json")


def test_a_filled_registry_serves_busybox_as_docker_hub_would(
    registry: ImageRegistry, busybox: ImageArchive
) -> None:
    assert registry.url.startswith("http://127.")
    assert registry.url.endswith(":5000")
    assert registry.fill([busybox]) == ["library/busybox:latest"]
    catalog = requests.get(f"{registry.url}/v2/_catalog", timeout=5)
    assert catalog.json() == {"repositories": ["library/busybox"]}
    answer = requests.get(
        f"{registry.url}/v2/library/busybox/manifests/latest",
        headers={"Accept": SCHEMA2},
        timeout=5,
    )
    assert answer.status_code == 200
    assert answer.headers["Content-Type"] == SCHEMA2
    manifest = answer.json()
    assert manifest["config"]["digest"] == _config_digest(busybox)
    # The layer went in compressed: unpacked, it is the layer the config names.
    (layer,) = manifest["layers"]
    blob = requests.get(f"{registry.url}/v2/library/busybox/blobs/{layer['digest']}", timeout=5)
    assert blob.status_code == 200
    config = requests.get(
        f"{registry.url}/v2/library/busybox/blobs/{manifest['config']['digest']}", timeout=5
    ).json()
    assert config["rootfs"]["diff_ids"] == [
        "sha256:" + hashlib.sha256(gzip.decompress(blob.content)).hexdigest()
    ]


def test_a_name_never_given_is_unknown(registry: ImageRegistry, busybox: ImageArchive) -> None:
    registry.fill([busybox])
    for path in ("library/alpine/manifests/latest", "library/busybox/manifests/1.36"):
        answer = requests.get(f"{registry.url}/v2/{path}", headers={"Accept": SCHEMA2}, timeout=5)
        assert answer.status_code == 404
        assert answer.json()["errors"][0]["code"] in ("MANIFEST_UNKNOWN", "NAME_UNKNOWN")


def test_only_docker_hub_names_are_pushed(
    registry: ImageRegistry, tmp_path: Path, busybox: ImageArchive
) -> None:
    path = write_docker_archive(
        tmp_path / "several.tar",
        "myorg/app:1",
        {"hello": b"hello\n"},
        cmd=["/hello"],
        extra_names=["quay.io/coreos/etcd:v2", "docker.io/library/hello:2"],
    )
    several = read_archive(path)
    assert sorted(registry.fill([several, busybox])) == [
        "library/busybox:latest",
        "library/hello:2",
        "myorg/app:1",
    ]
    catalog = requests.get(f"{registry.url}/v2/_catalog", timeout=5).json()
    assert catalog == {"repositories": ["library/busybox", "library/hello", "myorg/app"]}
    assert several.other_names() == ["quay.io/coreos/etcd:v2"]


def test_an_oci_archive_is_pushed_too(registry: ImageRegistry, busybox: ImageArchive) -> None:
    registry.fill([busybox])
    oci = registry.directory.parent / "oci.tar"
    # The registry's own copy back out, as skopeo writes any OCI archive.
    subprocess.run(
        [
            "skopeo",
            "--insecure-policy",
            "copy",
            "--quiet",
            "--src-tls-verify=false",
            f"docker://{registry.host}/library/busybox:latest",
            f"oci-archive:{oci}:myorg/tool:3",
        ],
        check=True,
        env=skopeo_environment(registry.directory / "out"),
    )
    archive = read_archive(oci)
    assert archive.names == ("myorg/tool:3",)
    assert registry.fill([archive]) == ["myorg/tool:3"]
    answer = requests.get(
        f"{registry.url}/v2/myorg/tool/manifests/3",
        headers={"Accept": f"{SCHEMA2}, {OCI_MANIFEST}"},
        timeout=5,
    )
    assert answer.status_code == 200


def test_it_listens_on_its_own_address_only(registry: ImageRegistry) -> None:
    assert registry.address is not None
    neighbour = registry.address.rpartition(".")[0] + ".2"
    with socket.socket() as probe:
        probe.settimeout(2)
        with pytest.raises(ConnectionRefusedError):
            probe.connect((neighbour, registry.port))
    config = json.loads((registry.directory / "config.yml").read_text())
    assert config["http"]["addr"] == registry.host


def test_a_registry_that_exits_says_so_with_its_log(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        service = ImageRegistry(tmp_path / "registry", "127.0.0.1", port=port)
        try:
            with pytest.raises(ProcessError, match="exited with status") as caught:
                service.start(timeout=15)
            assert "address already in use" in caught.value.log_tail
            assert not service.processes[0].running
        finally:
            service.close()
    assert not (tmp_path / "registry").exists()


def test_a_copy_that_fails_names_the_image(registry: ImageRegistry, tmp_path: Path) -> None:
    path = write_docker_archive(tmp_path / "gone.tar", "busybox:gone", {"x": b"x"})
    archive = read_archive(path)
    path.write_bytes(b"")  # gone bad after it was checked
    with pytest.raises(ProcessError, match=r"skopeo copy busybox:gone .* exited with status"):
        registry.fill([archive])
    assert not (registry.directory / "skopeo").exists()


def test_a_command_prefix_runs_the_registry_and_skopeo_alike(
    tmp_path: Path, busybox: ImageArchive
) -> None:
    """What a lab's hub namespace does (``nsenter --net=HUB --``), with ``env`` standing in
    for it: the same prefix starts the registry and each skopeo copy."""
    seen: list[list[str]] = []

    def through_env(argv: list[str]) -> list[str]:
        seen.append(argv)
        return ["env", *argv]

    service = ImageRegistry(tmp_path / "registry", "127.0.0.1", port=0, command=through_env)
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        service.port = free.getsockname()[1]
    try:
        service.start(timeout=15)
        assert service.processes[0].argv[:2] == ["env", seen[0][0]]
        assert service.fill([busybox]) == ["library/busybox:latest"]
    finally:
        service.close()
    assert [argv[0].rpartition("/")[2] for argv in seen] == ["docker-registry", "skopeo"]
    assert not (tmp_path / "registry").exists()
