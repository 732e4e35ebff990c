"""Image archives given with --coreos-images, read from real archives built here (docker
archives by the package's own writer, OCI layouts as skopeo writes them), and image names
normalised as Docker does."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from pathlib import Path

import pytest

from pytest_coreos.config.images import (
    ImageArchive,
    docker_hub_reference,
    parse_reference,
)
from pytest_coreos.config.registry import registry_config
from pytest_coreos.errors import ConfigError
from pytest_coreos.host.images import read_archive
from pytest_coreos.image.archive import write_docker_archive


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("busybox", "library/busybox:latest"),
        ("busybox:1.36", "library/busybox:1.36"),
        ("library/busybox:latest", "library/busybox:latest"),
        ("docker.io/library/busybox", "library/busybox:latest"),
        ("docker.io/busybox", "library/busybox:latest"),
        ("index.docker.io/x/y:tag", "x/y:tag"),
        ("index.docker.io/busybox", "library/busybox:latest"),
        ("myorg/app", "myorg/app:latest"),
        ("myorg/team/app:v1.2-rc", "myorg/team/app:v1.2-rc"),
        ("busybox@sha256:" + "a" * 64, "library/busybox@sha256:" + "a" * 64),
        ("busybox:1.36@sha256:" + "b" * 64, "library/busybox:1.36@sha256:" + "b" * 64),
        ("quay.io/coreos/etcd:v2", None),
        ("localhost:5000/x", None),
        ("localhost/x", None),
        ("registry.example.com/app", None),
        ("127.0.0.1:5000/app:1", None),
        ("Registry/app", None),  # an upper-case first part is a host, as Docker has it
    ],
)
def test_docker_hub_reference_follows_dockers_normalisation(
    name: str, expected: str | None
) -> None:
    assert docker_hub_reference(name) == expected


def test_a_reference_of_another_registry_keeps_its_domain_and_path() -> None:
    reference = parse_reference("localhost:5000/team/app")
    assert (reference.domain, reference.path, reference.tag) == (
        "localhost:5000",
        "team/app",
        "latest",
    )
    assert str(parse_reference("busybox")) == "docker.io/library/busybox:latest"


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("BusyBox", "lowercase"),
        ("myorg/App:1", "lowercase"),
        ("a" * 64, "image ID"),
        ("busybox:bad tag", "not a valid"),
        ("-busybox", "not a valid"),
        ("busybox:", "not a valid"),
        ("busybox@sha256:abc", "not a valid"),
        ("", "not a valid"),
    ],
)
def test_a_bad_name_says_why(name: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_reference(name)


# -- archives -----------------------------------------------------------------------------


def docker_archive(tmp_path: Path, *names: str, filename: str = "image.tar") -> Path:
    return write_docker_archive(
        tmp_path / filename,
        names[0],
        {"hello": b"hello\n"},
        extra_names=names[1:],
    )


def tar_of(path: Path, members: dict[str, bytes], *, compress: bool = False) -> Path:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    path.write_bytes(gzip.compress(buffer.getvalue()) if compress else buffer.getvalue())
    return path


def oci_archive(path: Path, *annotations: dict[str, str]) -> Path:
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": "sha256:" + f"{n:064x}",
                "size": 400,
                **({"annotations": a} if a else {}),
            }
            for n, a in enumerate(annotations)
        ],
    }
    return tar_of(
        path,
        {
            "oci-layout": b'{"imageLayoutVersion": "1.0.0"}',
            "index.json": json.dumps(index).encode(),
        },
    )


def test_a_docker_archive_holds_its_names_as_given(tmp_path: Path) -> None:
    path = docker_archive(tmp_path, "busybox:latest", "quay.io/coreos/etcd:v2", "myorg/app:1")
    archive = read_archive(path)
    assert archive == ImageArchive(
        path, "docker-archive", ("busybox:latest", "quay.io/coreos/etcd:v2", "myorg/app:1")
    )
    assert archive.hub_names() == [
        ("busybox:latest", "library/busybox:latest"),
        ("myorg/app:1", "myorg/app:1"),
    ]
    assert archive.other_names() == ["quay.io/coreos/etcd:v2"]
    assert archive.source("busybox:latest") == f"docker-archive:{path}:busybox:latest"


def test_a_relative_path_is_made_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    docker_archive(tmp_path, "busybox")
    monkeypatch.chdir(tmp_path)
    assert read_archive("image.tar").path == tmp_path / "image.tar"


def test_a_gzipped_docker_archive_is_read(tmp_path: Path) -> None:
    path = docker_archive(tmp_path, "busybox:1.36")
    packed = tmp_path / "image.tar.gz"
    packed.write_bytes(gzip.compress(path.read_bytes()))
    assert read_archive(packed).names == ("busybox:1.36",)


def test_an_oci_archive_is_named_by_containerd_or_a_whole_ref_name(tmp_path: Path) -> None:
    path = oci_archive(
        tmp_path / "oci.tar",
        {
            "io.containerd.image.name": "docker.io/library/busybox:latest",
            "org.opencontainers.image.ref.name": "latest",
        },
        {"org.opencontainers.image.ref.name": "quay.io/coreos/etcd:v2"},
        {"org.opencontainers.image.ref.name": "only-a-tag"},
        {},
    )
    archive = read_archive(path)
    assert archive.kind == "oci-archive"
    assert archive.names == ("docker.io/library/busybox:latest", "quay.io/coreos/etcd:v2")
    assert archive.source("docker.io/library/busybox:latest") == f"oci-archive:{path}:latest"
    assert archive.source("quay.io/coreos/etcd:v2") == f"oci-archive:{path}:quay.io/coreos/etcd:v2"


def test_an_oci_archive_only_image_without_ref_name_is_picked_by_skopeo(tmp_path: Path) -> None:
    path = oci_archive(tmp_path / "oci.tar", {"io.containerd.image.name": "busybox:latest"})
    assert read_archive(path).source("busybox:latest") == f"oci-archive:{path}"


def assert_config_error(path: Path | str, *words: str) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        read_archive(path)
    error = caught.value
    assert error.source == "--coreos-images"
    assert str(Path(path).absolute()) in error.problem
    for word in words:
        assert word in str(error)
    return error


def test_a_missing_file(tmp_path: Path) -> None:
    assert_config_error(tmp_path / "nope.tar", "no such file")


def test_a_directory(tmp_path: Path) -> None:
    assert_config_error(tmp_path, "not a file")


@pytest.mark.parametrize("content", [b"", b"this is text, not a tar\n" * 40])
def test_a_file_that_is_not_a_tar(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "image.tar"
    path.write_bytes(content)
    error = assert_config_error(path, "not a tar archive")
    assert "docker save NAME:TAG" in error.hint


def test_a_gzip_that_is_not_a_tar(tmp_path: Path) -> None:
    path = tmp_path / "image.tar.gz"
    path.write_bytes(gzip.compress(b"not a tar at all\n" * 100))
    assert_config_error(path, "tar")


def test_a_tar_of_neither_kind(tmp_path: Path) -> None:
    path = tar_of(tmp_path / "other.tar", {"hello.txt": b"hi", "index.json": b"{}"})
    assert_config_error(path, "no image archive", "manifest.json", "oci-layout")


def test_a_manifest_that_is_not_json(tmp_path: Path) -> None:
    path = tar_of(tmp_path / "bad.tar", {"manifest.json": b"{not json"})
    assert_config_error(path, "manifest.json is not JSON")


def test_an_archive_saved_by_image_id_has_no_name(tmp_path: Path) -> None:
    """What `docker save IMAGE_ID` writes: RepoTags null."""
    source = docker_archive(tmp_path, "busybox:latest")
    members: dict[str, bytes] = {}
    with tarfile.open(source) as tar:
        for member in tar.getmembers():
            handle = tar.extractfile(member)
            if handle is not None:
                members[member.name] = handle.read()
    manifest = json.loads(members["manifest.json"])
    manifest[0]["RepoTags"] = None
    members["manifest.json"] = json.dumps(manifest).encode()
    del members["repositories"]
    error = assert_config_error(tar_of(tmp_path / "by-id.tar", members), "has no image name")
    assert "docker save NAME:TAG" in error.hint


def test_an_oci_archive_without_names(tmp_path: Path) -> None:
    path = oci_archive(tmp_path / "oci.tar", {"org.opencontainers.image.ref.name": "latest"}, {})
    error = assert_config_error(path, "has no image name")
    assert "oci-archive:FILE:NAME:TAG" in error.hint


def test_a_name_docker_would_refuse(tmp_path: Path) -> None:
    path = oci_archive(tmp_path / "oci.tar", {"io.containerd.image.name": "BusyBox:latest"})
    assert_config_error(path, "'BusyBox:latest' cannot be used", "lowercase")


def test_a_path_with_a_colon_cannot_go_to_skopeo(tmp_path: Path) -> None:
    path = docker_archive(tmp_path, "busybox", filename="a:b.tar")
    error = assert_config_error(path, "colon")
    assert "rename" in error.hint


# -- the registry's configuration -------------------------------------------------------


def test_the_registry_listens_on_the_one_address_it_is_given() -> None:
    config = json.loads(registry_config("/srv/storage", "127.1.2.3", 5001, "s3cret"))
    assert config["version"] == "0.1"
    assert config["http"]["addr"] == "127.1.2.3:5001"
    assert config["storage"]["filesystem"] == {"rootdirectory": "/srv/storage"}
    assert config["storage"]["delete"] == {"enabled": False}
    assert config["log"]["level"] == "warn"
    assert config["health"]["storagedriver"]["enabled"] is False
    assert "auth" not in config
