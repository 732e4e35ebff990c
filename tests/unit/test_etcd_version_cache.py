"""etcd's version is asked once per etcd build: the plugin's report header names it on
every run, and starting etcd would cost a run that uses no cluster more than the rest of
the plugin. The programs here are small scripts standing in for etcd's ``--version``."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_coreos.host import binaries
from pytest_coreos.host.cache import CACHE_ENVIRONMENT


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    cache = tmp_path / "cache"
    monkeypatch.setenv(CACHE_ENVIRONMENT, str(cache))
    binaries._etcd_version.cache_clear()
    yield cache
    binaries._etcd_version.cache_clear()


def stand_in_etcd(folder: Path, version: str) -> tuple[Path, Path]:
    """A script that answers ``--version`` like etcd and counts how often it was asked."""
    calls = folder / "calls"
    script = folder / "etcd"
    script.write_text(
        f"#!/bin/sh\necho asked >> {calls}\n"
        f"echo 'etcd Version: {version}'\necho 'Go Version: go1.19'\n"
    )
    script.chmod(0o755)
    return script, calls


def asked(calls: Path) -> int:
    return len(calls.read_text().splitlines()) if calls.exists() else 0


def test_a_second_run_reads_the_version_from_the_cache(tmp_path: Path) -> None:
    script, calls = stand_in_etcd(tmp_path, "3.4.23")
    assert binaries.find_etcd(script).version == (3, 4, 23)
    binaries._etcd_version.cache_clear()  # what a new pytest process starts with
    assert binaries.find_etcd(script).version_text == "3.4.23"
    assert asked(calls) == 1


def test_a_replaced_binary_is_asked_again(tmp_path: Path) -> None:
    script, calls = stand_in_etcd(tmp_path, "3.4.23")
    assert binaries.find_etcd(script).version == (3, 4, 23)
    binaries._etcd_version.cache_clear()
    stand_in_etcd(tmp_path, "3.5.17")  # an upgrade: new content, size and time
    os.utime(script, ns=(1, 1))
    assert binaries.find_etcd(script).version == (3, 5, 17)
    assert asked(calls) == 2


def test_a_corrupt_cache_file_is_ignored_and_replaced(tmp_path: Path, private_cache: Path) -> None:
    private_cache.mkdir()
    (private_cache / binaries.VERSIONS_CACHE).write_text("{not json")
    script, calls = stand_in_etcd(tmp_path, "3.5.1")
    assert binaries.find_etcd(script).version == (3, 5, 1)
    assert "3.5.1" in (private_cache / binaries.VERSIONS_CACHE).read_text()
    assert asked(calls) == 1


def test_a_cache_that_cannot_be_written_costs_only_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    monkeypatch.setenv(CACHE_ENVIRONMENT, str(blocked / "cache"))  # under a file: no folder
    script, calls = stand_in_etcd(tmp_path, "3.4.23")
    for _ in range(2):
        binaries._etcd_version.cache_clear()
        assert binaries.find_etcd(script).version == (3, 4, 23)
    assert asked(calls) == 2


def test_the_cache_keeps_a_bounded_number_of_builds(tmp_path: Path, private_cache: Path) -> None:
    for number in range(binaries.VERSIONS_KEPT + 5):
        folder = tmp_path / f"build-{number}"
        folder.mkdir()
        script, _ = stand_in_etcd(folder, f"3.5.{number}")
        assert binaries.find_etcd(script).version == (3, 5, number)
    kept = (private_cache / binaries.VERSIONS_CACHE).read_text()
    assert kept.count("etcd Version") == binaries.VERSIONS_KEPT
    assert f"3.5.{binaries.VERSIONS_KEPT + 4}" in kept
    assert '"etcd Version: 3.5.0"' not in kept
