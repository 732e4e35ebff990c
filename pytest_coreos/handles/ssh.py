"""The SSH handle tests use to reach a machine: run commands and move files (paramiko).

The server's host key is always pinned: a machine that presents another key is refused,
never trusted on first use, so a test cannot end up talking to the wrong machine.
"""

from __future__ import annotations

import re
import select
import shlex
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Never, Self

import paramiko

from pytest_coreos.errors import SSHCommandError, SSHError, SSHHostKeyError

DEFAULT_SSH_PORT = 22
READ_CHUNK = 32768
# Lines of output a timeout error shows, so the reader sees where the command got stuck.
OUTPUT_TAIL_LINES = 10
# A command run with a timeout first reports its shell's pid on stderr (the line is removed
# from the result). sshd starts each command in a new session, so that pid is also its
# process group, which lets a timeout kill the whole command. Closing the channel would not:
# a command that prints nothing would keep running on the machine, and sshd's own "signal"
# request is refused for root logins.
PID_MARKER = "pytest-coreos-pid:"
# A command run without input reads /dev/null rather than waiting for the channel's EOF.
# paramiko builds an EOF under the channel's lock but sends it after letting go, so the
# EOF of a command that ends at once can follow the CLOSE paramiko sent back for it; sshd
# then drops the whole connection, with every other command on it ("ieof packet referred
# to nonexistent channel", paramiko issue #1115). With no EOF sent, there is no race.
_NO_STDIN = "exec </dev/null"
_PID_LINE = re.compile(rb"^" + re.escape(PID_MARKER.encode()) + rb"(\d+)\n", re.MULTILINE)


@dataclass(frozen=True)
class CommandResult:
    """What a command run over SSH did: its exit status and everything it printed.

    ``exit_status`` is -1 when the server reported none (the command was killed by a
    signal, or the connection closed first).
    """

    command: str
    exit_status: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.exit_status == 0


@dataclass
class Deployed:
    """What tests put on a machine through its handles: the files its SSH handle created
    (``put``, ``write_text``; a file that existed before and was overwritten is not
    among them) and the unit files its systemd handle installed. ``Cluster.reset``
    removes them."""

    files: set[str] = field(default_factory=set)
    units: set[str] = field(default_factory=set)


class _UnpinnedHostKeyError(paramiko.SSHException):
    """The server's host name has no pinned key at all."""

    def __init__(self, hostname: str, key: paramiko.PKey) -> None:
        self.hostname = hostname
        self.key = key
        super().__init__(f"no host key pinned for {hostname}")


class _RejectUnpinnedHostKey(paramiko.RejectPolicy):
    """Paramiko's RejectPolicy, raising an error that carries the key the server offered."""

    def missing_host_key(
        self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey
    ) -> Never:
        raise _UnpinnedHostKeyError(hostname, key)


def _describe_key(key: paramiko.PKey) -> str:
    return f"{key.get_name()} {key.fingerprint}"


def _tail(text: str) -> str:
    return "\n".join(text.splitlines()[-OUTPUT_TAIL_LINES:])


def _feed_stdin(channel: paramiko.Channel, data: bytes) -> None:
    """Send ``data`` as the command's stdin, then end it; runs beside the output reader.

    A separate thread, because a command may fill its output window before it has read
    all of its input: sending and reading in turn in one thread could then wait forever.
    """
    try:
        channel.sendall(data)
        # A command that exited without reading to the end needs no EOF, and one sent
        # after its channel closed would cost the connection (see _NO_STDIN).
        if not channel.exit_status_ready():
            channel.shutdown_write()
    except (OSError, EOFError, paramiko.SSHException):
        # The command exited, or closed stdin, before reading everything: its exit
        # status tells the story.
        pass


class SSHClient:
    """An SSH connection to one machine, opened on first use and reopened if it dropped.

    One paramiko transport per client; ``connect`` is guarded by a lock and commands may
    run from several threads at once, each on its own channel of that transport.
    """

    def __init__(
        self,
        host: str,
        port: int,
        username: str,
        private_key: paramiko.PKey,
        *,
        host_keys: Sequence[paramiko.PKey] = (),
        known_hosts: Path | None = None,
        identity_file: Path | None = None,
        name: str | None = None,
        connect_timeout: float = 10.0,
        sock_factory: Callable[[str, int, float], socket.socket] | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.username = username
        self.name = name if name is not None else host
        self.private_key = private_key
        self.host_keys = tuple(host_keys)
        self.known_hosts = known_hosts
        # Where ``private_key`` lives, for a person's own ssh client (see access.py).
        self.identity_file = identity_file
        self.connect_timeout = connect_timeout
        # Opens the TCP connection instead of paramiko (host, port, timeout): for machines
        # in a network lab, NetworkLab.connect, whose sockets are bound to the lab's link.
        self.sock_factory = sock_factory
        self.last_login_error: SSHError | None = None
        self.deployed = Deployed()
        self._lock = threading.Lock()
        self._client: paramiko.SSHClient | None = None
        if not self.host_keys and known_hosts is None:
            raise ValueError(
                f"SSHClient for {self.target} needs the server's host key: pass host_keys "
                "or known_hosts (keys are pinned, never trusted on first use)"
            )

    @property
    def target(self) -> str:
        """``user@host:port``, how errors name this connection."""
        return f"{self.username}@{self.host}:{self.port}"

    @property
    def host_key_name(self) -> str:
        """The name the host keys are filed under, as in OpenSSH's known_hosts."""
        if self.port == DEFAULT_SSH_PORT:
            return self.host
        return f"[{self.host}]:{self.port}"

    def __repr__(self) -> str:
        return f"SSHClient({self.name!r}, {self.target!r})"

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # -- connection -----------------------------------------------------------------------

    def connect(self) -> None:
        """Log in, unless already logged in over a live transport; SSHError says why not."""
        self._transport()

    def _transport(self) -> paramiko.Transport:
        with self._lock:
            if self._client is not None:
                transport = self._client.get_transport()
                if transport is not None and transport.is_active():
                    return transport
                self._client.close()
                self._client = None
            client = self._new_client()
            try:
                self._login(client)
            except BaseException:
                client.close()
                raise
            transport = client.get_transport()
            if transport is None:  # pragma: no cover - paramiko sets it in connect()
                client.close()
                raise SSHError(self.target, "connected, but paramiko has no transport")
            self._client = client
            return transport

    def _new_client(self) -> paramiko.SSHClient:
        client = paramiko.SSHClient()
        pinned = client.get_host_keys()
        if self.known_hosts is not None:
            try:
                pinned.load(str(self.known_hosts))
            except OSError as error:
                raise SSHError(
                    self.target, f"cannot read known_hosts {self.known_hosts}: {error}"
                ) from error
        for key in self.host_keys:
            pinned.add(self.host_key_name, key.get_name(), key)
        client.set_missing_host_key_policy(_RejectUnpinnedHostKey())
        return client

    def _pinned_description(self) -> str:
        described = [_describe_key(key) for key in self.host_keys]
        if self.known_hosts is not None:
            described.append(f"the keys in {self.known_hosts}")
        return ", ".join(described)

    def _login(self, client: paramiko.SSHClient) -> None:
        timeout = self.connect_timeout
        try:
            if self.sock_factory is not None:
                sock = self.sock_factory(self.host, self.port, timeout)
            else:
                sock = socket.create_connection((self.host, self.port), timeout)
            # SSH's small key-exchange and authentication packets wait for delayed ACKs
            # otherwise: a login takes ~60 ms instead of ~20.
            if sock.family in (socket.AF_INET, socket.AF_INET6):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            client.connect(
                self.host,
                self.port,
                sock=sock,
                username=self.username,
                pkey=self.private_key,
                timeout=timeout,
                banner_timeout=timeout,
                auth_timeout=timeout,
                channel_timeout=timeout,
                # Only the key we were given: an agent or ~/.ssh keys of the person running
                # the tests must neither be offered to test machines nor change the outcome.
                look_for_keys=False,
                allow_agent=False,
            )
        except paramiko.BadHostKeyException as error:
            raise SSHHostKeyError(
                self.target,
                f"host key mismatch: the server presented {_describe_key(error.key)}, "
                f"but {self.host_key_name} is pinned to {self._pinned_description()}",
            ) from error
        except _UnpinnedHostKeyError as error:
            raise SSHHostKeyError(
                self.target,
                f"host key not pinned: the server presented {_describe_key(error.key)}, "
                f"and no key is pinned for {error.hostname} "
                f"(pinned: {self._pinned_description()})",
            ) from error
        except paramiko.AuthenticationException as error:
            raise SSHError(
                self.target,
                f"authentication failed for user {self.username!r} with key "
                f"{_describe_key(self.private_key)}: {error}",
            ) from error
        except TimeoutError as error:
            raise SSHError(
                self.target, f"no answer within {timeout:g}s while connecting: {error}"
            ) from error
        except ConnectionRefusedError as error:
            raise SSHError(
                self.target, "connection refused (is sshd running and listening there?)"
            ) from error
        except (OSError, EOFError, paramiko.SSHException) as error:
            raise SSHError(
                self.target, f"cannot connect: {type(error).__name__}: {error}"
            ) from error

    def can_login(self) -> bool:
        """True if logging in works now: one attempt, no exception (for boot waits).

        The reason of a failure is kept in ``last_login_error``, so a wait that gives up
        can say why; a successful login stays open for the commands that follow.
        """
        try:
            self.connect()
        except SSHError as error:
            self.last_login_error = error
            return False
        self.last_login_error = None
        return True

    def close(self) -> None:
        """Close the connection; a later call that needs it connects again."""
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    # -- commands -------------------------------------------------------------------------

    def _open_channel(self, timeout: float | None = None) -> paramiko.Channel:
        """A new session channel, reconnecting once if the transport died meanwhile."""
        open_timeout = self.connect_timeout if timeout is None else timeout
        for attempt in (1, 2):
            transport = self._transport()
            try:
                return transport.open_session(timeout=open_timeout)
            except (OSError, EOFError, paramiko.SSHException) as error:
                if transport.is_active() or attempt == 2:
                    raise SSHError(
                        self.target, f"cannot open a session channel: {error}"
                    ) from error
        raise AssertionError("unreachable")  # pragma: no cover

    def run(
        self,
        command: str | Sequence[str],
        *,
        check: bool = True,
        timeout: float | None = None,
        input: str | None = None,  # the name subprocess.run uses
    ) -> CommandResult:
        """Run ``command`` on the machine and wait for it to finish.

        A string goes to the remote shell as is (pipes, globs, ``$VAR`` work); a sequence
        is one argument per item, each quoted, so nothing in it is interpreted. ``input``
        becomes the command's stdin, which is otherwise closed at once. After ``timeout``
        seconds the command's process group is killed and SSHError raised; with ``check``,
        a non-zero exit raises SSHCommandError carrying the result.
        """
        if isinstance(command, str):
            command_text = command
        else:
            if not command:
                raise ValueError("run() needs a command; got an empty sequence")
            command_text = shlex.join(command)
        deadline = None
        remote_text = command_text
        if input is None:
            remote_text = f"{_NO_STDIN}\n{remote_text}"
        if timeout is not None:
            deadline = time.monotonic() + timeout
            # On a line of its own, so the command is parsed exactly as it would be alone.
            remote_text = f"echo {PID_MARKER}$$ >&2\n{remote_text}"
        output = _Output()
        # A machine that stopped answering (paused) must not hold a timed command longer.
        channel = self._open_channel(
            None if timeout is None else min(timeout, self.connect_timeout)
        )
        try:
            exit_status = self._run_on_channel(channel, remote_text, input, deadline, output)
        except _DeadlinePassedError:
            channel.close()
            process_group = output.take_pid()
            if process_group is not None:
                self._kill_process_group(process_group)
            problem = f"command {command_text!r} did not finish within {timeout:g}s"
            timeout_error = SSHError(self.target, problem)
            for stream, text in (("stdout", output.stdout_text), ("stderr", output.stderr_text)):
                if text:
                    timeout_error.add_note(f"last {stream} lines:\n{_tail(text)}")
            raise timeout_error from None
        except (OSError, EOFError, paramiko.SSHException) as error:
            raise SSHError(
                self.target, f"command {command_text!r} failed: {type(error).__name__}: {error}"
            ) from error
        finally:
            channel.close()
        if timeout is not None:
            output.take_pid()
        result = CommandResult(
            command=command_text,
            exit_status=exit_status,
            stdout=output.stdout_text,
            stderr=output.stderr_text,
        )
        if check and not result.ok:
            raise SSHCommandError(self.target, result)
        return result

    def _kill_process_group(self, process_group: int) -> None:
        """Kill a timed-out command, best effort: the timeout error matters more."""
        try:
            channel = self._open_channel()
        except SSHError:
            return
        try:
            deadline = time.monotonic() + self.connect_timeout
            self._run_on_channel(channel, f"kill -9 -{process_group}", None, deadline, _Output())
        except (_DeadlinePassedError, SSHError, OSError, EOFError, paramiko.SSHException):
            pass
        finally:
            channel.close()

    def _run_on_channel(
        self,
        channel: paramiko.Channel,
        remote_text: str,
        input_text: str | None,
        deadline: float | None,
        output: _Output,
    ) -> int:
        """Run ``remote_text`` on ``channel``, collecting into ``output``; its exit status."""

        def remaining() -> float | None:
            if deadline is None:
                return None
            left = deadline - time.monotonic()
            if left <= 0:
                raise _DeadlinePassedError
            return left

        def read_available() -> None:
            while channel.recv_ready():
                output.stdout.extend(channel.recv(READ_CHUNK))
            while channel.recv_stderr_ready():
                output.stderr.extend(channel.recv_stderr(READ_CHUNK))

        channel.exec_command(remote_text)
        feeder: threading.Thread | None = None
        if input_text is not None:
            feeder = threading.Thread(
                target=_feed_stdin,
                args=(channel, input_text.encode("utf-8")),
                name=f"ssh-stdin-{self.name}",
                daemon=True,
            )
            feeder.start()
        # Both streams are read as data arrives: they share one flow-control window, so
        # reading one to its end first would stall a command that fills the other.
        # The channel's fileno() becomes readable when either stream has data or ends.
        readable = channel.fileno()
        while not (channel.eof_received or channel.closed):
            # An empty answer means the wait timed out; remaining() raises once the
            # deadline has really passed.
            select.select([readable], [], [], remaining())
            read_available()
        # The exit status may follow the end of the output; a closed channel sets it too.
        while not channel.status_event.wait(remaining()):
            pass
        read_available()
        if feeder is not None:
            feeder.join(remaining())
        exit_status = channel.recv_exit_status()
        transport = channel.transport
        # A dying transport closes its channels before it reports itself inactive; a
        # missing end-of-output tells the same story earlier.
        connection_lost = not channel.eof_received or transport is None or not transport.is_active()
        if exit_status == -1 and connection_lost:
            raise SSHError(
                self.target,
                f"connection lost while running {remote_text!r} (no exit status received)",
            )
        return exit_status

    # -- files ----------------------------------------------------------------------------

    @contextmanager
    def _sftp(self, action: str) -> Iterator[paramiko.SFTPClient]:
        """An SFTP session for one operation; its errors become SSHError naming ``action``.

        A session per operation keeps concurrent callers apart: each gets its own channel.
        """
        channel = self._open_channel()
        try:
            channel.invoke_subsystem("sftp")
            sftp = paramiko.SFTPClient(channel)
        except (OSError, EOFError, paramiko.SSHException) as error:
            channel.close()
            raise SSHError(self.target, f"{action}: cannot start sftp: {error}") from error
        try:
            yield sftp
        except (OSError, EOFError, paramiko.SSHException) as error:
            raise SSHError(self.target, f"{action}: {type(error).__name__}: {error}") from error
        finally:
            sftp.close()

    def put(self, local: Path | str, remote: str) -> None:
        """Copy the local file ``local`` to ``remote`` on the machine."""
        with self._sftp(f"put {local} -> {remote}") as sftp:
            created = not _exists(sftp, remote)
            sftp.put(str(local), remote)
        if created:
            self.deployed.files.add(remote)

    def get(self, remote: str, local: Path | str) -> None:
        """Copy the machine's file ``remote`` to the local path ``local``."""
        with self._sftp(f"get {remote} -> {local}") as sftp:
            sftp.get(remote, str(local))

    def read_text(self, remote: str) -> str:
        """The content of the machine's file ``remote``, decoded as UTF-8."""
        with self._sftp(f"read {remote}") as sftp, sftp.open(remote, "rb") as handle:
            data = handle.read()
        return data.decode("utf-8", errors="replace")

    def write_text(self, remote: str, text: str, *, mode: int | None = None) -> None:
        """Write ``text`` (UTF-8) to the machine's file ``remote``, then set ``mode`` if given.

        The mode is set on the open file before anything is written, so a secret is never
        readable under the server's default permissions.
        """
        with self._sftp(f"write {remote}") as sftp:
            created = not _exists(sftp, remote)
            with sftp.open(remote, "wb") as handle:
                if mode is not None:
                    handle.chmod(mode)
                handle.write(text.encode("utf-8"))
        if created:
            self.deployed.files.add(remote)


def _exists(sftp: paramiko.SFTPClient, remote: str) -> bool:
    try:
        sftp.lstat(remote)
    except FileNotFoundError:
        return False
    return True


class _DeadlinePassedError(Exception):
    """The timeout of a command passed before it finished."""


class _Output:
    """What a command printed so far, as the raw bytes of each stream."""

    def __init__(self) -> None:
        self.stdout = bytearray()
        self.stderr = bytearray()

    def take_pid(self) -> int | None:
        """Remove the pid line a timed command starts with from stderr, and return the pid."""
        match = _PID_LINE.search(self.stderr)
        if match is None:
            return None
        pid = int(match.group(1))
        del self.stderr[match.start() : match.end()]
        return pid

    @property
    def stdout_text(self) -> str:
        return self.stdout.decode("utf-8", errors="replace")

    @property
    def stderr_text(self) -> str:
        return self.stderr.decode("utf-8", errors="replace")
