"""The one exception tree of pytest-coreos.

Every error the plugin raises is a :class:`CoreOSError`. Each carries the objects it is
about and builds its message from them, so a caller can both read and inspect it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pytest_coreos.handles.ssh import CommandResult
    from pytest_coreos.handles.systemd import UnitStatus


class CoreOSError(Exception):
    """Root of every error raised by pytest-coreos."""


class ConfigError(CoreOSError):
    """A value given to the plugin (an option, a file) cannot be used.

    ``source`` names where the value came from (``--coreos-instances``, a file path) so
    the message can tell the user exactly what to change.
    """

    def __init__(self, source: str, problem: str, hint: str = "") -> None:
        self.source = source
        self.problem = problem
        self.hint = hint
        message = f"{source}: {problem}"
        if hint:
            message += f" ({hint})"
        super().__init__(message)


class UserDataError(ConfigError):
    """The user's cloud-config cannot be used as the cluster's user-data."""

    def __init__(self, path: Path | str, problem: str, hint: str = "") -> None:
        self.path = Path(path)
        super().__init__(f"--coreos-user-data {path}", problem, hint)


class IgnitionError(ConfigError):
    """The user's Ignition config (``--coreos-ignition``) cannot be used."""

    def __init__(self, path: Path | str, problem: str, hint: str = "") -> None:
        self.path = Path(path)
        super().__init__(f"--coreos-ignition {path}", problem, hint)


class BinaryNotFoundError(CoreOSError):
    """A program the plugin needs (etcd, sshd, ...) is not installed."""

    def __init__(self, program: str, searched: Sequence[str], install_hint: str) -> None:
        self.program = program
        self.searched = list(searched)
        self.install_hint = install_hint
        where = ", ".join(self.searched) if self.searched else "nowhere"
        super().__init__(f"{program} not found (looked in: {where}); {install_hint}")


class DiscoveryError(CoreOSError):
    """The discovery service could not be started or did not hand out a token."""

    def __init__(self, url: str, problem: str) -> None:
        self.url = url
        self.problem = problem
        super().__init__(f"discovery service {url}: {problem}")


class ProcessError(CoreOSError):
    """A process of the cluster exited or could not be started."""

    def __init__(self, name: str, problem: str, log_tail: str = "") -> None:
        self.name = name
        self.problem = problem
        self.log_tail = log_tail
        message = f"{name}: {problem}"
        if log_tail:
            message += f"\n--- last lines of its log ---\n{log_tail}"
        super().__init__(message)


class BootTimeoutError(CoreOSError):
    """The cluster was not ready within the boot timeout."""

    def __init__(self, what: str, seconds: float, last_state: str, hint: str = "") -> None:
        self.what = what
        self.seconds = seconds
        self.last_state = last_state
        self.hint = hint
        message = f"timed out after {seconds:.1f}s waiting for {what}; last seen: {last_state}"
        if hint:
            message += f"\nhint: {hint}"
        super().__init__(message)


class ResetError(CoreOSError):
    """A cluster could not be returned to its state at ready (:meth:`Cluster.reset`).
    What it left is no pristine cluster: it is closed, never handed to a test as one."""

    def __init__(self, cluster: str, problem: str) -> None:
        self.cluster = cluster
        self.problem = problem
        super().__init__(f"resetting {cluster} failed: {problem}")


class ImagesError(CoreOSError):
    """The images of ``--coreos-images`` could not be served to a cluster's machines."""

    def __init__(self, cluster: str, problem: str) -> None:
        self.cluster = cluster
        self.problem = problem
        super().__init__(f"serving --coreos-images to {cluster} failed: {problem}")


class EtcdError(CoreOSError):
    """An etcd request failed: connection refused, timeout, or an etcd error code."""

    def __init__(
        self,
        endpoint: str,
        problem: str,
        error_code: int | None = None,
        status_code: int | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.problem = problem
        self.error_code = error_code
        self.status_code = status_code
        code = f" (etcd error {error_code})" if error_code is not None else ""
        super().__init__(f"etcd {endpoint}: {problem}{code}")


class EtcdKeyNotFoundError(EtcdError):
    """The key asked for does not exist (etcd error code 100)."""


class EtcdOutcomeUnknownError(EtcdError):
    """A conditional write (compare-and-swap, create-only, a v3 transaction) was sent but
    got no answer: etcd may or may not have applied it. Such a write is not sent again
    blindly, as etcd's own clients do not: read the key to learn what happened."""

    def __init__(self, endpoint: str, request: str, problem: str) -> None:
        self.request = request
        super().__init__(
            endpoint,
            f"{request}: outcome unknown, it may or may not have been applied ({problem}); "
            "a conditional write is not sent again blindly: read the key to find out",
        )


class SSHError(CoreOSError):
    """An SSH connection to a machine could not be made or was lost."""

    def __init__(self, target: str, problem: str) -> None:
        self.target = target
        self.problem = problem
        super().__init__(f"ssh {target}: {problem}")


class SSHHostKeyError(SSHError):
    """The machine presented a host key that is not the one pinned or known for it: never
    retried, as it will not change by waiting (and would be a reason not to talk to it)."""


class SSHCommandError(SSHError):
    """A command run over SSH with ``check=True`` exited non-zero."""

    def __init__(self, target: str, result: CommandResult) -> None:
        self.result = result
        tail = "\n".join(result.stderr.splitlines()[-10:])
        problem = f"command {result.command!r} exited with status {result.exit_status}"
        if tail:
            problem += f"; stderr:\n{tail}"
        super().__init__(target, problem)


class UnitError(CoreOSError):
    """A systemd unit did not reach the state asked for, or cannot be managed on a machine
    (the local provider runs no systemd). ``unit`` and ``status`` (its last
    :class:`~pytest_coreos.handles.systemd.UnitStatus`) are set where known."""

    def __init__(
        self,
        machine: str,
        problem: str,
        journal: str = "",
        *,
        unit: str = "",
        status: UnitStatus | None = None,
    ) -> None:
        self.machine = machine
        self.problem = problem
        self.journal = journal
        self.unit = unit
        self.status = status
        message = f"{machine}: {problem}"
        if journal:
            message += f"\n--- journal (last lines) ---\n{journal.rstrip()}"
        super().__init__(message)


class UnitsError(UnitError):
    """A unit failed on some machines of a cluster (``cluster.units``): ``errors`` holds
    each machine's own :class:`UnitError`, and the message shows every one of them."""

    def __init__(self, unit: str, action: str, machines: int, errors: Sequence[UnitError]) -> None:
        self.errors = list(errors)
        names = ", ".join(error.machine for error in self.errors)
        problem = f"{action} failed on {len(self.errors)} of {machines} machine(s)"
        journal = "\n".join(
            f"--- {error.machine} ---\n{error.journal.rstrip()}"
            for error in self.errors
            if error.journal
        )
        self.machine = names
        self.problem = problem
        self.journal = journal
        self.unit = unit
        self.status = None
        # Not UnitError's message: each machine's error in full, under one line.
        CoreOSError.__init__(
            self, f"{problem}: {names}\n" + "\n".join(str(error) for error in self.errors)
        )


class FleetError(CoreOSError):
    """A fleetctl command failed, its output could not be read, or the machine has no
    fleetctl at all."""

    def __init__(self, machine: str, problem: str) -> None:
        self.machine = machine
        self.problem = problem
        super().__init__(f"fleet on {machine}: {problem}")
