"""The pure parts of containers on the machines: docker's configuration naming the
session's registry, the pulls the registry's log says it could not serve (real log lines
of Debian's docker-registry 2.8, captured here), ``--coreos-images``' paths, what the agent
gives etcdctl, and the usage errors of ``--coreos-images`` on the vagrant provider."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pytest_coreos.config.images import docker_daemon_config, unserved_pulls
from pytest_coreos.errors import ConfigError
from pytest_coreos.image.agent import coreos_agent as agent
from pytest_coreos.options import ClusterSpec, parse_images
from pytest_coreos.providers.vagrant.settings import check_images

DOCKER_MISS = (
    'time="2026-12-07T06:32:02.16Z" level=error msg="response completed with error" '
    'err.code="manifest unknown" err.detail="unknown tag=latest" err.message="manifest '
    'unknown" go.version=go1.19.8 http.request.host="198.18.102.254:5000" '
    'http.request.method=GET http.request.remoteaddr="198.18.102.1:58046" '
    "http.request.uri=/v2/library/alpine/manifests/latest "
    'http.request.useragent="docker/20.10.24+dfsg1 go/go1.19.8 git-commit/5d6db84 '
    'os/linux arch/amd64 UpstreamClient(Docker-Client/20.10.24+dfsg1 \\\\(linux\\\\))" '
    "http.response.status=404 vars.name=library/alpine vars.reference=latest"
)
SKOPEO_PROBE = (
    'time="2026-12-07T06:31:59.96Z" level=error msg="response completed with error" '
    'err.code="blob unknown" err.message="blob unknown to registry" '
    "http.request.method=HEAD http.request.useragent=skopeo/1.9.3 "
    "http.response.status=404 vars.name=library/busybox"
)


def test_docker_takes_the_registry_as_its_docker_hub_mirror_over_plain_http() -> None:
    settings = json.loads(docker_daemon_config("198.18.3.254:5000"))
    assert settings == {
        "registry-mirrors": ["http://198.18.3.254:5000"],
        "insecure-registries": ["198.18.3.254:5000"],
    }


def test_a_docker_pull_the_registry_could_not_serve_is_named_once() -> None:
    log = "\n".join([SKOPEO_PROBE, DOCKER_MISS, DOCKER_MISS.replace("HEAD", "GET")])
    assert unserved_pulls(log) == ["alpine:latest"]


def test_skopeos_own_probes_and_other_images_are_not_misses() -> None:
    other = DOCKER_MISS.replace("library/alpine", "myorg/app").replace(
        "vars.reference=latest", "vars.reference=1.2"
    )
    assert unserved_pulls(SKOPEO_PROBE) == []
    assert unserved_pulls(other) == ["myorg/app:1.2"]


def test_images_are_comma_separated_and_repeatable_and_relative_to_where_given() -> None:
    base = Path("/work")
    assert parse_images(["a.tar,b.tar", " c.tar "], "--coreos-images", base) == (
        base / "a.tar",
        base / "b.tar",
        base / "c.tar",
    )
    assert parse_images(None, "--coreos-images", base) == ()
    with pytest.raises(ConfigError, match="names no image archive"):
        parse_images([","], "--coreos-images", base)


def test_a_coreos_era_user_data_gives_etcdctl_v2_and_the_machines_member(tmp_path: Path) -> None:
    user_data = {
        "coreos": {
            "etcd": {"addr": "$public_ipv4:4001", "peer-addr": "$public_ipv4:7001"},
        }
    }
    settings = tmp_path / "etcdctl.env"
    plan = agent.plan(
        user_data,
        "198.18.0.1",
        "198.18.0.1",
        persistent=tmp_path / "etc",
        runtime=tmp_path / "run",
        etcdctl_settings=settings,
    )
    assert plan.files[settings] == "ETCDCTL_API=2\nETCDCTL_ENDPOINTS=http://198.18.0.1:4001\n"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            ClusterSpec(
                provider="vagrant", images=(Path("/i.tar"),), vagrant_provider="virtualbox"
            ),
            "only a local libvirt Vagrant provider makes beforehand (not virtualbox)",
        ),
        (
            ClusterSpec(provider="vagrant", images=(Path("/i.tar"),), reuse=True, keep=True),
            "does not go with --coreos-reuse",
        ),
    ],
)
def test_images_on_vagrant_need_a_local_libvirt_and_no_reuse(
    spec: ClusterSpec, message: str
) -> None:
    with pytest.raises(ConfigError, match="--coreos-images") as raised:
        check_images(spec)
    assert message in str(raised.value)
