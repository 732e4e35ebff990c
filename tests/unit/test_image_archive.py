"""The busybox test image, written without Docker: its structure, digests and
reproducibility, and skopeo (a real reader of docker archives, installed by
scripts/bootstrap) accepting it."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from pytest_coreos.host.image_registry import skopeo_environment
from pytest_coreos.host.images import read_archive
from pytest_coreos.image.archive import (
    BUSYBOX_APPLETS_NEEDED,
    ImageBuildError,
    busybox_image,
    static_busybox,
    tagged,
    write_docker_archive,
)

BUILD_IMAGE = Path(__file__).resolve().parents[2] / "examples" / "containers" / "build-image"


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return busybox_image(tmp_path_factory.mktemp("image") / "busybox.tar")


def members(path: Path) -> dict[str, bytes]:
    with tarfile.open(path) as tar:
        return {
            member.name: handle.read()
            for member in tar.getmembers()
            if (handle := tar.extractfile(member)) is not None
        }


def test_the_archive_is_laid_out_as_docker_save_writes_it(image: Path) -> None:
    files = members(image)
    manifest = json.loads(files["manifest.json"])
    assert len(manifest) == 1
    assert manifest[0]["RepoTags"] == ["busybox:latest"]
    (layer_path,) = manifest[0]["Layers"]
    layer = files[layer_path]
    layer_id = hashlib.sha256(layer).hexdigest()
    assert layer_path == f"{layer_id}/layer.tar"
    config_bytes = files[manifest[0]["Config"]]
    assert manifest[0]["Config"] == f"{hashlib.sha256(config_bytes).hexdigest()}.json"
    config = json.loads(config_bytes)
    assert config["rootfs"] == {"type": "layers", "diff_ids": [f"sha256:{layer_id}"]}
    assert (config["architecture"], config["os"]) == ("amd64", "linux")
    assert config["config"]["Cmd"] == ["sh"]
    assert len(config["history"]) == 1
    assert json.loads(files["repositories"]) == {"busybox": {"latest": layer_id}}


def test_the_layer_holds_busybox_its_applets_and_a_little_of_etc(image: Path) -> None:
    files = members(image)
    (layer_path,) = json.loads(files["manifest.json"])[0]["Layers"]
    with tarfile.open(fileobj=io.BytesIO(files[layer_path])) as layer:
        entries = layer.getmembers()
        names = [entry.name for entry in entries]
        by_name = {entry.name: entry for entry in entries}
        busybox = layer.extractfile("bin/busybox")
        assert busybox is not None
        assert busybox.read() == Path("/bin/busybox").read_bytes()
        passwd = layer.extractfile("etc/passwd")
        assert passwd is not None
        assert passwd.read().startswith(b"root:x:0:0:")
    assert names == sorted(names)
    assert all(e.mtime == 0 and e.uid == 0 and e.gid == 0 for e in entries)
    assert by_name["bin/busybox"].mode == 0o755
    assert by_name["tmp"].isdir()
    assert by_name["tmp"].mode == 0o1777
    assert by_name["var/www"].isdir()
    applets = {name.rpartition("/")[2] for name, e in by_name.items() if e.issym()}
    assert set(BUSYBOX_APPLETS_NEEDED) <= applets
    assert by_name["bin/sh"].linkname == "/bin/busybox"
    assert by_name["usr/bin/wget"].linkname == "/bin/busybox"
    every_parent = {name.rpartition("/")[0] for name in names} - {""}
    assert every_parent <= {name for name, e in by_name.items() if e.isdir()}


def test_two_builds_are_byte_identical(image: Path, tmp_path: Path) -> None:
    again = busybox_image(tmp_path / "again.tar")
    assert again.read_bytes() == image.read_bytes()
    assert not list(tmp_path.glob(".*partial"))


def test_the_plugin_reads_the_image_it_built(image: Path) -> None:
    archive = read_archive(image)
    assert (archive.kind, archive.names) == ("docker-archive", ("busybox:latest",))


def test_skopeo_accepts_the_archive(image: Path, tmp_path: Path) -> None:
    inspected = subprocess.run(
        ["skopeo", "inspect", f"docker-archive:{image}"],
        capture_output=True,
        text=True,
        check=True,
        env=skopeo_environment(tmp_path / "skopeo"),
    )
    facts = json.loads(inspected.stdout)
    config = json.loads(members(image)[json.loads(members(image)["manifest.json"])[0]["Config"]])
    assert facts["Architecture"] == "amd64"
    assert facts["Os"] == "linux"
    assert facts["Layers"] == config["rootfs"]["diff_ids"]
    oci = tmp_path / "busybox-oci.tar"
    subprocess.run(
        [
            "skopeo",
            "--insecure-policy",
            "copy",
            "--quiet",
            f"docker-archive:{image}:busybox:latest",
            f"oci-archive:{oci}:busybox:latest",
        ],
        check=True,
        env=skopeo_environment(tmp_path / "skopeo"),
    )
    converted = read_archive(oci)
    assert (converted.kind, converted.names) == ("oci-archive", ("busybox:latest",))


def test_files_keep_their_mode_and_names_get_a_tag(tmp_path: Path) -> None:
    script = tmp_path / "run.sh"
    script.write_bytes(b"#!/bin/sh\necho hi\n")
    script.chmod(0o750)
    out = write_docker_archive(
        tmp_path / "out" / "app.tar",
        "myorg/app",
        {"/usr/local/bin/run.sh": script, "etc/motd": b"hi\n"},
        {"bin/run": "/usr/local/bin/run.sh"},
        ["/usr/local/bin/run.sh"],
        extra_names=["localhost:5000/app:2"],
    )
    files = members(out)
    manifest = json.loads(files["manifest.json"])
    assert manifest[0]["RepoTags"] == ["myorg/app:latest", "localhost:5000/app:2"]
    with tarfile.open(fileobj=io.BytesIO(files[manifest[0]["Layers"][0]])) as layer:
        assert layer.getmember("usr/local/bin/run.sh").mode == 0o750
        assert layer.getmember("etc/motd").mode == 0o644
        assert layer.getmember("bin/run").linkname == "/usr/local/bin/run.sh"
        assert layer.getmember("usr/local").isdir()


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("busybox", "busybox:latest"),
        ("busybox:1.36", "busybox:1.36"),
        ("localhost:5000/app", "localhost:5000/app:latest"),
        ("localhost:5000/app:2", "localhost:5000/app:2"),
    ],
)
def test_tagged(name: str, expected: str) -> None:
    assert tagged(name) == expected


def test_a_name_by_digest_cannot_name_an_archive() -> None:
    with pytest.raises(ImageBuildError, match="by tag, not by digest"):
        tagged("busybox@sha256:" + "a" * 64)


def test_a_missing_busybox_names_the_package(tmp_path: Path) -> None:
    with pytest.raises(ImageBuildError, match="apt-get install busybox-static"):
        static_busybox(tmp_path / "busybox")


def test_a_dynamic_busybox_is_refused() -> None:
    dynamic = Path(sys.executable).resolve()  # Python itself: a dynamically linked ELF
    with pytest.raises(ImageBuildError, match="not a statically linked busybox"):
        static_busybox(dynamic)


def test_the_debian_busybox_is_static() -> None:
    assert static_busybox() == (Path("/bin/busybox"), "amd64")


def test_the_build_image_script_writes_the_same_image(image: Path, tmp_path: Path) -> None:
    assert os.access(BUILD_IMAGE, os.X_OK)
    out = tmp_path / "script.tar"
    done = subprocess.run([str(BUILD_IMAGE), str(out)], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == str(out)
    assert out.read_bytes() == image.read_bytes()
    usage = subprocess.run([str(BUILD_IMAGE)], capture_output=True, text=True, check=False)
    assert usage.returncode == 2
    assert "OUT.tar [NAME]" in usage.stderr
