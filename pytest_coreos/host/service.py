"""What a session's own services share: the discovery service and the image registry
each run processes of this host's (wrapped to run where the machines reach them), on an
address block they may claim, reached over an HTTP session; closing one kills its
processes, closes its session and releases its block."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Self

import requests

from pytest_coreos.errors import ProcessError
from pytest_coreos.host.addresses import AddressBlock
from pytest_coreos.host.process import ManagedProcess, kill_all

# How a service's programs are run: a prefix (``["ip", "netns", "exec", HUB]``) or a
# function that wraps an argv (a lab's ``hub_command``).
Command = Callable[[list[str]], list[str]] | Sequence[str]


def as_wrapper(command: Command | None) -> Callable[[list[str]], list[str]]:
    """``command`` as a function from an argv to the argv that runs it (None: as is)."""
    if command is None:
        return lambda argv: argv
    if callable(command):
        return command
    prefix = list(command)
    return lambda argv: [*prefix, *argv]


class LocalService:
    """The processes, address block and HTTP session of one of the session's services;
    a subclass starts them in ``start()``."""

    def __init__(
        self,
        *,
        command: Command | None,
        session: requests.Session | None,
        die_with_parent: bool,
    ) -> None:
        self._command = as_wrapper(command)
        self.die_with_parent = die_with_parent
        self.block: AddressBlock | None = None
        self.processes: list[ManagedProcess] = []
        if session is None:
            session = requests.Session()
            session.trust_env = False  # a proxy from the environment would send it away
        self._session = session

    def start(self, timeout: float = 30.0) -> None:
        raise NotImplementedError

    def _check_running(self) -> None:
        """While starting: a process that already exited is a ProcessError, with its log."""
        for process in self.processes:
            if not process.running:
                raise ProcessError(
                    process.name,
                    f"exited with status {process.exit_status} while starting",
                    process.log_tail(),
                )

    def describe(self) -> list[dict[str, object]]:
        """The state records of its processes, for reaping."""
        return [process.to_record() for process in self.processes if process.started]

    def close(self) -> None:
        """Kill the processes, close the session and release the address block."""
        kill_all(self.processes)
        self.processes.clear()
        self._session.close()
        if self.block is not None:
            self.block.close()
            self.block = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
