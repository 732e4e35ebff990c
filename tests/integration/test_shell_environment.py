"""Commands over ``machine.ssh`` see the machine's environment, not the login user's
interactive set-up: bash started by sshd does not read ``~/.bashrc`` on any provider the
plugin boots (the Vagrant VMs are checked in tests/e2e/vagrant_machines.py)."""

from __future__ import annotations

import pytest

from pytest_coreos import Cluster


def assert_bashrc_is_not_read(cluster: Cluster, *, edit_bashrc: bool) -> None:
    """``echo $SHLVL`` prints 2 (sshd's SHLVL=1, counted up by the command's bash), and
    with a noisy ``~/.bashrc`` on the machine (``edit_bashrc``) nothing of it shows."""
    for machine in cluster:
        if edit_bashrc:
            machine.ssh.run(
                "cp -p ~/.bashrc ~/.bashrc.before 2>/dev/null; echo 'echo NOISE >&2' >> ~/.bashrc"
            )
        try:
            result = machine.ssh.run("echo $SHLVL")
            assert (result.stdout, result.stderr) == ("2\n", ""), machine.name
        finally:
            if edit_bashrc:
                machine.ssh.run(
                    "if [ -e ~/.bashrc.before ]; then mv ~/.bashrc.before ~/.bashrc; "
                    "else rm ~/.bashrc; fi"
                )


def test_local_machines_skip_bashrc(coreos_cluster_factory) -> None:
    # The local machines' login is this host's own user: its ~/.bashrc is not the test's
    # to change, so SHLVL alone says whether bash would read it.
    with coreos_cluster_factory(instances=1) as cluster:
        assert_bashrc_is_not_read(cluster, edit_bashrc=False)


@pytest.mark.needs_root
def test_nspawn_machines_skip_bashrc(coreos_cluster_factory) -> None:
    with coreos_cluster_factory(instances=1, provider="nspawn") as cluster:
        assert_bashrc_is_not_read(cluster, edit_bashrc=True)
