"""Container images given with ``--coreos-images``: what an archive holds, and image names.

An archive is either what ``docker save NAME:TAG`` writes (``manifest.json``, whose
entries list ``RepoTags``) or an OCI image layout in a tar (``oci-layout`` and
``index.json``, names in the manifests' annotations). Reading the tar is the host's
(:mod:`pytest_coreos.host.images`); this module only makes sense of its JSON members, and
normalises image names the way Docker does (distribution/reference's
``ParseNormalizedNamed``), so that the session knows which names its registry serves in
Docker Hub's place and which the machines must load directly.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

from pytest_coreos.errors import ConfigError

OPTION = "--coreos-images"
DOCKER_ARCHIVE: Final = "docker-archive"
OCI_ARCHIVE: Final = "oci-archive"
ArchiveKind = Literal["docker-archive", "oci-archive"]

DOCKER_HUB = "docker.io"
_LEGACY_DOCKER_HUB = "index.docker.io"
_OFFICIAL_PREFIX = "library/"
# Annotations an OCI index names its images with: containerd's (and docker's) full
# reference, then the OCI one, which may also be only a tag ("latest").
CONTAINERD_NAME = "io.containerd.image.name"
OCI_REF_NAME = "org.opencontainers.image.ref.name"

# distribution/reference's grammar (reference/regexp.go).
_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_PATH_COMPONENT = rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
_REFERENCE = re.compile(
    rf"(?P<name>(?:(?P<domain>{_DOMAIN})/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*)"
    rf"(?::(?P<tag>{_TAG}))?(?:@(?P<digest>{_DIGEST}))?"
)
_IMAGE_ID = re.compile(r"[a-f0-9]{64}")
_NAME_MAX = 255


@dataclass(frozen=True)
class ImageReference:
    """A normalised image name: ``docker.io``, ``library/busybox``, ``latest``, no digest."""

    domain: str
    path: str
    tag: str | None
    digest: str | None

    @property
    def on_docker_hub(self) -> bool:
        return self.domain == DOCKER_HUB

    @property
    def in_registry(self) -> str:
        """The repository path with its tag and digest, as a registry serves it."""
        text = self.path
        if self.tag is not None:
            text += f":{self.tag}"
        if self.digest is not None:
            text += f"@{self.digest}"
        return text

    def __str__(self) -> str:
        return f"{self.domain}/{self.in_registry}"


def parse_reference(name: str) -> ImageReference:
    """Normalise ``name`` as Docker does: no domain means Docker Hub (``index.docker.io``
    is its old name), a one-part Hub path is an official image (``library/``), and a name
    with neither tag nor digest is ``:latest``. ``ValueError`` says why a name is not one."""
    if _IMAGE_ID.fullmatch(name):
        raise ValueError(f"{name!r} is an image ID (64 hex digits), not a name")
    slash = name.find("/")
    first = name[:slash]
    if slash == -1 or (
        not any(mark in first for mark in ".:") and first != "localhost" and first == first.lower()
    ):
        domain, remainder = DOCKER_HUB, name
    else:
        domain, remainder = first, name[slash + 1 :]
    if domain == _LEGACY_DOCKER_HUB:
        domain = DOCKER_HUB
    if domain == DOCKER_HUB and "/" not in remainder:
        remainder = _OFFICIAL_PREFIX + remainder
    repository = remainder.partition(":")[0]  # Docker's own check: up to the first colon
    if repository.lower() != repository:
        raise ValueError(f"{name!r}: a repository name must be lowercase")
    match = _REFERENCE.fullmatch(f"{domain}/{remainder}")
    if match is None:
        raise ValueError(f"{name!r} is not a valid image name")
    if len(match["name"]) > _NAME_MAX:
        raise ValueError(f"{name!r}: a repository name is at most {_NAME_MAX} characters")
    tag, digest = match["tag"], match["digest"]
    path = match["name"][len(domain) + 1 :]
    if tag is None and digest is None:
        tag = "latest"
    return ImageReference(domain, path, tag, digest)


def docker_hub_reference(name: str) -> str | None:
    """Where a Docker Hub name lives in a registry (``busybox`` ->
    ``library/busybox:latest``, ``myorg/app`` -> ``myorg/app:latest``); None for a name of
    another registry (``quay.io/coreos/etcd:v2``, ``localhost:5000/x``)."""
    reference = parse_reference(name)
    return reference.in_registry if reference.on_docker_hub else None


@dataclass(frozen=True)
class ImageArchive:
    """An image archive given to the plugin: what kind, and the names it holds (as given)."""

    path: Path
    kind: ArchiveKind
    names: tuple[str, ...]
    # How skopeo picks each name's image out of the archive (parallel to ``names``): the
    # name itself in a docker archive, the ``ref.name`` annotation in an OCI one ("" for
    # an OCI archive's only image).
    selectors: tuple[str, ...] = ()

    def source(self, name: str) -> str:
        """skopeo's name for the image ``name`` of the archive (``docker-archive:PATH:NAME``)."""
        selector = self.selectors[self.names.index(name)] if self.selectors else name
        return f"{self.kind}:{self.path}:{selector}" if selector else f"{self.kind}:{self.path}"

    def hub_names(self) -> list[tuple[str, str]]:
        """(name as given, path and tag in a registry) for each Docker Hub name."""
        found = []
        for name in self.names:
            in_registry = docker_hub_reference(name)
            if in_registry is not None:
                found.append((name, in_registry))
        return found

    def other_names(self) -> list[str]:
        """The names of other registries: the machines load those from the archive."""
        return [name for name in self.names if docker_hub_reference(name) is None]


def _load_json(data: bytes, source: str, member: str) -> Any:
    try:
        return json.loads(data)
    except ValueError as error:
        raise ConfigError(
            OPTION,
            f"{source}: its {member} is not JSON ({error})",
            "give an archive written by `docker save NAME:TAG` or `skopeo copy ... oci-archive:`",
        ) from error


def _checked_names(names: list[str], source: str) -> list[str]:
    for name in names:
        try:
            parse_reference(name)
        except ValueError as error:
            raise ConfigError(
                OPTION, f"{source}: image name {name!r} cannot be used: {error}"
            ) from error
    return names


def _checked_path(path: Path) -> str:
    # skopeo reads "docker-archive:PATH:NAME" up to the first colon as the path.
    if ":" in str(path):
        raise ConfigError(
            OPTION,
            f"{path}: a path with a colon cannot be handed to skopeo",
            "rename the file or link to it from a path without one",
        )
    return str(path)


def docker_archive(path: Path, manifest: bytes) -> ImageArchive:
    """The archive ``docker save`` wrote at ``path``, from its ``manifest.json``."""
    source = _checked_path(path)
    entries = _load_json(manifest, source, "manifest.json")
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise ConfigError(
            OPTION,
            f"{source}: its manifest.json is not a list of images",
            "give an archive written by `docker save NAME:TAG`",
        )
    names: list[str] = []
    for entry in entries:
        tags = entry.get("RepoTags") or []
        if not isinstance(tags, list) or not all(isinstance(tag, str) for tag in tags):
            raise ConfigError(OPTION, f"{source}: RepoTags in its manifest.json is not a list")
        names += [tag for tag in tags if tag not in names]
    if not names:
        raise ConfigError(
            OPTION,
            f"{source}: the archive has no image name (RepoTags is empty: it was saved by "
            "image ID)",
            "save it by name, `docker save NAME:TAG -o FILE`, so the machines know what to call it",
        )
    return ImageArchive(path, DOCKER_ARCHIVE, tuple(_checked_names(names, source)))


def oci_archive(path: Path, index: bytes) -> ImageArchive:
    """The OCI layout archive at ``path``, from its ``index.json``. A manifest's name is
    containerd's full one where given, else the OCI ``ref.name`` when it is a whole name
    (``busybox:latest``) rather than only a tag (``latest``, which names no repository)."""
    source = _checked_path(path)
    document = _load_json(index, source, "index.json")
    manifests = document.get("manifests") if isinstance(document, dict) else None
    if not isinstance(manifests, list):
        raise ConfigError(
            OPTION,
            f"{source}: its index.json lists no manifests",
            "give an OCI archive written by `skopeo copy ... oci-archive:FILE:NAME:TAG`",
        )
    names: list[str] = []
    selectors: list[str] = []
    for manifest in manifests:
        annotations = manifest.get("annotations") if isinstance(manifest, dict) else None
        if not isinstance(annotations, dict):
            continue
        full = annotations.get(CONTAINERD_NAME)
        ref = annotations.get(OCI_REF_NAME)
        ref = ref if isinstance(ref, str) else ""
        if isinstance(full, str) and full:
            name = full
        elif any(mark in ref for mark in ":/@"):
            name = ref
        else:
            continue
        if name not in names:
            names.append(name)
            selectors.append(ref)
    if not names:
        raise ConfigError(
            OPTION,
            f"{source}: the archive has no image name (no manifest of its index.json is "
            f"annotated with {CONTAINERD_NAME} or a whole {OCI_REF_NAME})",
            "write it with a name, e.g. `skopeo copy docker-archive:IN.tar "
            "oci-archive:FILE:NAME:TAG`",
        )
    return ImageArchive(path, OCI_ARCHIVE, tuple(_checked_names(names, source)), tuple(selectors))


def docker_daemon_config(registry: str) -> str:
    """A machine's ``/etc/docker/daemon.json`` that takes the session's registry at
    ``registry`` (``ADDRESS:PORT``, plain HTTP) as its Docker Hub mirror."""
    settings = {"registry-mirrors": [f"http://{registry}"], "insecure-registries": [registry]}
    return json.dumps(settings, indent=2) + "\n"


_LOG_FIELD = re.compile(r'([\w.]+)=("(?:[^"\\]|\\.)*"|\S+)')


def unserved_pulls(registry_log: str) -> list[str]:
    """The images machines asked the session's registry for and did not find (a
    ``docker pull`` of an image no archive of ``--coreos-images`` holds), as
    ``NAME:TAG``, once each, from the registry's log; skopeo's own probes while it fills
    the registry are not among them."""
    found: list[str] = []
    for line in registry_log.splitlines():
        if "manifest unknown" not in line and "name unknown" not in line:
            continue
        fields = {key: value.strip('"') for key, value in _LOG_FIELD.findall(line)}
        if fields.get("err.code") not in ("manifest unknown", "name unknown"):
            continue
        if not fields.get("http.request.useragent", "").startswith("docker/"):
            continue
        name = fields.get("vars.name", "")
        reference = fields.get("vars.reference", "latest")
        separator = "@" if reference.startswith("sha256:") else ":"
        image = f"{name.removeprefix('library/')}{separator}{reference}"
        if name and image not in found:
            found.append(image)
    return found
