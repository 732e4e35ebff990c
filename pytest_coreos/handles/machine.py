"""One machine of a cluster: its name, addresses, SSH, etcd and systemd handles, and the
faults a test can cause, carried out by its provider's :class:`MachineControl`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol

from pytest_coreos.handles.docker import Docker
from pytest_coreos.handles.etcd import EtcdClient
from pytest_coreos.handles.ssh import SSHClient
from pytest_coreos.handles.systemd import Systemd

if TYPE_CHECKING:
    import requests


class MachineControl(Protocol):
    """What a provider does to one of its machines; :class:`Machine` delegates to it."""

    @property
    def running(self) -> bool:
        """True while the machine runs."""

    def start(self) -> None:
        """Start the machine (again)."""

    def stop(self) -> None:
        """Stop the machine cleanly."""

    def kill(self) -> None:
        """Stop the machine at once, as a power cut would."""

    def pause(self) -> None:
        """Freeze the machine."""

    def resume(self) -> None:
        """Let a frozen machine run on."""

    def logs(self, lines: int) -> str:
        """The tail of the machine's etcd log."""

    def check_alive(self) -> None:
        """Raise :class:`ProcessError` if the machine's etcd has exited on its own."""


# The boot timeout's default: how long a machine's etcd handles ride out an election
# until its cluster gives them its own.
ETCD_DEADLINE = 60.0


class Machine:
    """One machine of a cluster: its name, addresses, SSH and etcd handles, and faults."""

    def __init__(
        self,
        name: str,
        *,
        private_ipv4: str,
        public_ipv4: str,
        ssh: SSHClient,
        etcd_endpoints: Sequence[str],
        control: MachineControl,
        http_session: Callable[[], requests.Session] | None = None,
        systemd: bool = True,
    ) -> None:
        self.name = name
        self.private_ipv4 = private_ipv4
        self.public_ipv4 = public_ipv4
        self.ssh = ssh
        # Where the machine is reached through something other than this host's own
        # network (a network lab's namespace), every HTTP session must come from here.
        self.http_session = http_session
        # How long its etcd handles ride out a member without a leader: the cluster sets
        # the boot timeout once the machine is its.
        self._etcd_deadline = ETCD_DEADLINE
        self.etcd = self.etcd_client(etcd_endpoints)
        # False where the machine runs no systemd of its own (the local provider's).
        self._has_systemd = systemd
        # Its Docker Engine (machines with systemd have one): images, reports, reset.
        self.docker = Docker(ssh, name)
        self._control = control
        self.on_change: Callable[[], None] = lambda: None  # its processes changed
        self.paused = False  # frozen through pause() and not resumed since
        # Seconds from the start of the last wait until its etcd served with every member
        # and until it first took an SSH login (None until then).
        self.etcd_ready_after: float | None = None
        self.ssh_ready_after: float | None = None

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<Machine {self.name} {self.private_ipv4} {state}>"

    @property
    def running(self) -> bool:
        """True while the machine's etcd runs."""
        return self._control.running

    @property
    def systemd(self) -> Systemd:
        """The machine's systemd: units' status, start/stop, journal, waits, unit files."""
        return Systemd(self.ssh, self.name, available=self._has_systemd)

    @property
    def etcd_endpoints(self) -> tuple[str, ...]:
        """The client URLs its etcd advertises."""
        return self.etcd.endpoints

    @property
    def etcd_deadline(self) -> float:
        """Seconds for which its etcd handles send key operations again while the cluster
        elects a leader (the boot timeout)."""
        return self._etcd_deadline

    @etcd_deadline.setter
    def etcd_deadline(self, seconds: float) -> None:
        self._etcd_deadline = seconds
        self.etcd.deadline = seconds

    def etcd_client(
        self, endpoints: Sequence[str], *, timeout: float = 5.0, deadline: float | None = None
    ) -> EtcdClient:
        """An etcd client over ``endpoints`` that reaches them the way this machine is
        reached (its own session where it lives in a network lab), riding out an election
        for ``deadline`` seconds (by default :attr:`etcd_deadline`; 0: not at all)."""
        session = self.http_session() if self.http_session is not None else None
        return EtcdClient(
            endpoints,
            timeout=timeout,
            name=self.name,
            session=session,
            owns_session=True,
            deadline=self._etcd_deadline if deadline is None else deadline,
        )

    def stop(self) -> None:
        """Stop the machine cleanly (SIGTERM, as systemd would on shutdown)."""
        self.ssh.close()
        self._control.stop()
        self.paused = False

    def start(self) -> None:
        """Start a stopped machine again; its etcd rejoins with its data."""
        self._control.start()
        self.paused = False
        self.on_change()

    def restart(self) -> None:
        """Stop the machine cleanly, then start it again."""
        self.stop()
        self.start()

    def kill(self) -> None:
        """Kill the machine at once, as a power cut would."""
        self.ssh.close()
        self._control.kill()
        self.paused = False

    def pause(self) -> None:
        """Freeze the machine: it keeps its sockets but answers nothing."""
        self._control.pause()
        self.paused = True

    def resume(self) -> None:
        """Let a paused machine run on."""
        self._control.resume()
        self.paused = False

    def logs(self, lines: int = 50) -> str:
        """The last ``lines`` lines of the machine's etcd log."""
        return self._control.logs(lines)

    def check_alive(self) -> None:
        """Raise :class:`ProcessError` if the machine's etcd has exited on its own."""
        self._control.check_alive()


def machine_names(count: int) -> list[str]:
    """``core-01``, ``core-02``...: the names coreos-vagrant gives its machines."""
    return [f"core-{index:02d}" for index in range(1, count + 1)]
