"""What can be reset is declared: the providers that boot their machines can, the ssh
provider (machines it did not boot) cannot, and a request for a resettable cluster of
its is refused before anything boots, naming the provider."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_coreos import providers
from pytest_coreos.errors import ConfigError, ResetError
from pytest_coreos.host import datadir
from pytest_coreos.options import ClusterSpec
from pytest_coreos.session.factory import check_resettable


@pytest.mark.parametrize(
    ("name", "resets"), [("local", True), ("nspawn", True), ("ssh", False), ("vagrant", True)]
)
def test_each_provider_declares_whether_it_resets(name: str, resets: bool) -> None:
    assert providers.get_provider(name).capabilities.reset is resets


def test_a_resettable_cluster_of_a_provider_that_cannot_reset_is_refused() -> None:
    with pytest.raises(ConfigError, match="--coreos-provider: the ssh provider cannot reset"):
        check_resettable(ClusterSpec(provider="ssh"))


def test_the_ssh_deployment_refuses_every_step_of_a_reset() -> None:
    from pytest_coreos.providers.ssh.attached import SSHDeployment

    deployment = SSHDeployment.__new__(SSHDeployment)
    for step in (deployment.save_ready, deployment.revive, deployment.restore):
        with pytest.raises(ResetError, match="cannot be reset"):
            step()


def test_the_saved_copy_of_a_data_folder_holds_data_not_preallocated_space(
    tmp_path: Path,
) -> None:
    data = tmp_path / "etcd"
    (data / "member" / "wal").mkdir(parents=True)
    segment = data / "member" / "wal" / "0.wal"
    with open(segment, "wb") as handle:
        handle.write(b"record" * 100)
        handle.truncate(64_000_000)  # the rest never written, as etcd preallocates it
    (data / "member" / "db").write_bytes(b"bolt")
    copy = tmp_path / "copy"
    datadir.save(data, copy)
    copied = copy / "member" / "wal" / "0.wal"
    assert copied.stat().st_size == 64_000_000
    assert copied.stat().st_blocks * 512 < 1_000_000
    assert copied.read_bytes()[:600] == b"record" * 100
    # Restored over a data folder a test changed: its content is the copy's again, and
    # the folder itself is the same one (a container has it bind-mounted).
    inode = data.stat().st_ino
    (data / "member" / "db").write_bytes(b"changed")
    (data / "member" / "new").write_text("written since")
    datadir.swap_in(datadir.stage(copy, data), data)
    assert data.stat().st_ino == inode
    assert (data / "member" / "db").read_bytes() == b"bolt"
    assert not (data / "member" / "new").exists()
    assert not (tmp_path / "etcd.restoring").exists()


def test_restoring_without_a_saved_copy_fails_and_leaves_the_data_alone(tmp_path: Path) -> None:
    data = tmp_path / "etcd"
    data.mkdir()
    (data / "db").write_text("as it was")
    with pytest.raises(FileNotFoundError, match="no saved copy"):
        datadir.stage(tmp_path / "missing", data)
    assert (data / "db").read_text() == "as it was"
