"""The SSH handle and the sshd helpers, against a real OpenSSH sshd on a loopback address.

One sshd serves the module; it listens on a random 127.x.y.z address, so no traffic leaves
loopback, and it is killed, with every connection process it forked, at the end.
"""

from __future__ import annotations

import base64
import contextlib
import os
import random
import shlex
import signal
import socket
import stat
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import paramiko
import pytest

from pytest_coreos.errors import CoreOSError, SSHCommandError, SSHError
from pytest_coreos.handles.ssh import CommandResult, SSHClient
from pytest_coreos.host.binaries import find_sshd
from pytest_coreos.host.sshd import (
    SshdSettings,
    ensure_privilege_separation_dir,
    generate_ed25519_key,
    openssh_version,
    parse_openssh_version,
    public_key_line,
    render_sshd_config,
    ssh_port_for_current_user,
    sshd_command,
)

LOGIN_USER = "root" if os.geteuid() == 0 else os.environ.get("USER", "")
SSHD_START_TIMEOUT = 10.0


# -- a real sshd ------------------------------------------------------------------------


def _random_loopback_address() -> str:
    # Never 127.0.0.x: other tests and services like to live there.
    return f"127.{random.randint(1, 254)}.{random.randint(0, 255)}.{random.randint(1, 254)}"


def _can_bind(address: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((address, port))
        except OSError:
            return False
    return True


def _free_loopback_endpoint() -> tuple[str, int]:
    """A loopback address where the provider's port (22 as root) is free.

    Should a wildcard listener (a system sshd on 0.0.0.0:22) hold that port everywhere,
    fall back to a free high port so the tests still run.
    """
    port = ssh_port_for_current_user()
    for _ in range(20):
        address = _random_loopback_address()
        if _can_bind(address, port):
            return address, port
    address = _random_loopback_address()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((address, 0))
        return address, int(probe.getsockname()[1])


def _parent_pids() -> dict[int, int]:
    """Every live (non-zombie) process of the system, mapped to its parent."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        state, parent = fields[0], int(fields[1])
        if state != "Z":
            parents[int(entry.name)] = parent
    return parents


def _descendants(pid: int) -> set[int]:
    parents = _parent_pids()
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        children = {child for child, parent in parents.items() if parent in frontier}
        frontier = children - found
        found |= children
    return found


def _is_running(pid: int) -> bool:
    return pid in _parent_pids()


@dataclass
class RunningSshd:
    """A real sshd started for the tests, with the keys to reach it."""

    address: str
    port: int
    host_key: paramiko.Ed25519Key
    user_key: paramiko.Ed25519Key
    directory: Path
    config: Path
    log: Path
    process: subprocess.Popen[bytes]

    def client(
        self,
        *,
        host_keys: tuple[paramiko.PKey, ...] | None = None,
        known_hosts: Path | None = None,
        name: str = "core-01",
        connect_timeout: float = 10.0,
    ) -> SSHClient:
        return SSHClient(
            self.address,
            self.port,
            LOGIN_USER,
            self.user_key,
            host_keys=(self.host_key,) if host_keys is None else host_keys,
            known_hosts=known_hosts,
            name=name,
            connect_timeout=connect_timeout,
        )

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def start_sshd(directory: Path) -> RunningSshd:
    """Keys, config and a foreground sshd in its own session, ready to accept a login."""
    directory.mkdir(parents=True, exist_ok=True)
    sshd = find_sshd()
    host_key = generate_ed25519_key(directory / "ssh_host_ed25519_key")
    user_key = generate_ed25519_key(directory / "id_ed25519")
    authorized_keys = directory / "authorized_keys"
    authorized_keys.write_text(public_key_line(user_key) + "\n")
    address, port = _free_loopback_endpoint()
    settings = SshdSettings(
        address=address,
        port=port,
        host_key=directory / "ssh_host_ed25519_key",
        authorized_keys=authorized_keys,
        login_user=LOGIN_USER,
        pid_file=directory / "sshd.pid",
        openssh_version=openssh_version(sshd),
    )
    config = directory / "sshd_config"
    config.write_text(render_sshd_config(settings))
    log = directory / "sshd.log"
    ensure_privilege_separation_dir()
    process = subprocess.Popen(
        sshd_command(sshd, config, log),
        start_new_session=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    server = RunningSshd(address, port, host_key, user_key, directory, config, log, process)
    try:
        _wait_for_login(server)
    except BaseException:
        stop_sshd(server)
        raise
    return server


def _wait_for_login(server: RunningSshd) -> None:
    deadline = time.monotonic() + SSHD_START_TIMEOUT
    with server.client(connect_timeout=2.0) as probe:
        while not probe.can_login():
            if server.process.poll() is not None:
                pytest.fail(f"sshd exited with {server.process.returncode}:\n{server.log_text()}")
            if time.monotonic() > deadline:
                pytest.fail(
                    f"sshd accepted no login within {SSHD_START_TIMEOUT}s "
                    f"({probe.last_login_error}):\n{server.log_text()}"
                )
            time.sleep(0.01)


def stop_sshd(server: RunningSshd) -> set[int]:
    """Kill sshd and everything it forked; the pids it had, to check they are gone.

    Connection processes call setsid(), so killing the listener's process group misses
    them: those of closed clients get a moment to finish (their parent reaps them), and
    whatever is still there is then killed by pid.
    """
    listener = server.process.pid
    deadline = time.monotonic() + 1.0
    while _descendants(listener) and time.monotonic() < deadline:
        time.sleep(0.01)
    leftovers = _descendants(listener)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(listener, signal.SIGKILL)
    server.process.wait(timeout=10)
    for pid in leftovers:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return leftovers | {listener}


def _remaining_processes(pids: set[int], config: Path) -> list[str]:
    """What of ``pids``, or of any sshd using ``config``, still runs."""
    deadline = time.monotonic() + 2.0
    while True:
        alive = sorted(pid for pid in pids if _is_running(pid))
        found = subprocess.run(
            ["pgrep", "-af", f"sshd.*-f {config}"], capture_output=True, text=True, check=False
        ).stdout.splitlines()
        if (not alive and not found) or time.monotonic() > deadline:
            return [f"pid {pid}" for pid in alive] + found
        time.sleep(0.02)


@pytest.fixture(scope="module")
def sshd_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSshd]:
    server = start_sshd(tmp_path_factory.mktemp("sshd"))
    try:
        yield server
    finally:
        pids = stop_sshd(server)
        remaining = _remaining_processes(pids, server.config)
        assert not remaining, f"sshd processes left behind: {remaining}"


@pytest.fixture
def client(sshd_server: RunningSshd) -> Iterator[SSHClient]:
    with sshd_server.client() as ssh:
        yield ssh


def _wait_until_gone(pattern: str, timeout: float = 5.0) -> list[str]:
    deadline = time.monotonic() + timeout
    while True:
        found = subprocess.run(
            ["pgrep", "-af", pattern], capture_output=True, text=True, check=False
        ).stdout.splitlines()
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.02)


# -- running commands -------------------------------------------------------------------


def test_a_string_command_is_run_by_the_remote_shell(client: SSHClient) -> None:
    result = client.run("echo $((6 * 7)) | tr 4 X")

    assert result == CommandResult("echo $((6 * 7)) | tr 4 X", 0, "X2\n", "")
    assert result.ok


def test_a_list_command_quotes_each_part(client: SSHClient) -> None:
    parts = ["two words", "it's", '"double"', "$HOME", "a;b", "*", "`id`", ""]

    result = client.run(["printf", "[%s]\\n", *parts])

    assert result.stdout == "".join(f"[{part}]\n" for part in parts)
    assert result.command == shlex.join(["printf", "[%s]\\n", *parts])


def test_an_empty_command_list_is_refused(client: SSHClient) -> None:
    with pytest.raises(ValueError, match="needs a command"):
        client.run([])


def test_exit_status_stdout_and_stderr_without_check(client: SSHClient) -> None:
    result = client.run("echo out; echo err >&2; exit 3", check=False)

    assert (result.exit_status, result.stdout, result.stderr) == (3, "out\n", "err\n")
    assert not result.ok


def test_check_raises_a_command_error_showing_command_status_and_stderr_tail(
    client: SSHClient,
) -> None:
    command = "for i in $(seq 1 20); do echo line$i >&2; done; exit 7"

    with pytest.raises(SSHCommandError) as caught:
        client.run(command)

    error = caught.value
    assert isinstance(error, SSHError)
    assert isinstance(error, CoreOSError)
    assert error.result.exit_status == 7
    assert error.result.stderr.splitlines()[0] == "line1"
    assert error.target == client.target == f"{LOGIN_USER}@{client.host}:{client.port}"
    message = str(error)
    assert client.target in message
    assert repr(command) in message
    assert "status 7" in message
    assert "line20" in message
    assert "line11" in message
    assert "line10\n" not in message


def test_undecodable_output_is_replaced_not_raised(client: SSHClient) -> None:
    result = client.run(r"printf 'caf\303\251 \377\n'")

    assert result.stdout == "café \ufffd\n"


def test_input_becomes_the_commands_stdin(client: SSHClient) -> None:
    assert client.run("cat", input="héllo\nwörld").stdout == "héllo\nwörld"


def test_without_input_stdin_is_closed_at_once(client: SSHClient) -> None:
    assert client.run("cat; echo done", timeout=10).stdout == "done\n"


def test_large_input_echoed_back_does_not_deadlock(client: SSHClient) -> None:
    # Larger than the SSH window, so the command fills its output while we still send.
    text = "0123456789abcdef\n" * 300_000

    result = client.run("cat", input=text, timeout=60)

    assert len(result.stdout) == len(text)
    assert result.stdout == text


def test_large_output_on_both_streams_is_read_fully(client: SSHClient) -> None:
    # Stderr first: reading stdout to its end before stderr would wait forever.
    command = (
        "head -c 3000000 /dev/zero | tr '\\0' e >&2; "
        "head -c 3000000 /dev/zero | tr '\\0' o; "
        "for i in $(seq 1 2000); do echo out$i; echo err$i >&2; done"
    )

    result = client.run(command, timeout=60)

    assert result.stderr.startswith("e" * 3_000_000 + "err1\n")
    assert result.stdout.startswith("o" * 3_000_000 + "out1\n")
    assert result.stdout.endswith("out2000\n")
    assert result.stderr.endswith("err2000\n")
    assert len(result.stdout) == 3_000_000 + sum(len(f"out{i}\n") for i in range(1, 2001))


def test_a_timeout_raises_and_kills_the_remote_command(client: SSHClient) -> None:
    marker = f"{random.randint(1000, 9999)}.{random.randint(100, 999)}"
    command = f"echo started; echo warming up >&2; sleep {marker}; echo never"

    started = time.monotonic()
    # Long enough for a loaded machine's login shell to print its first lines.
    with pytest.raises(SSHError) as caught:
        client.run(command, timeout=3)
    elapsed = time.monotonic() - started

    assert not isinstance(caught.value, SSHCommandError)
    assert repr(command) in str(caught.value)
    assert "did not finish within 3s" in str(caught.value)
    notes = "\n".join(caught.value.__notes__)
    assert "started" in notes
    assert "warming up" in notes
    assert "pytest-coreos-pid" not in notes
    assert elapsed < 30  # the timeout, not the 1000 s; speed: benchmarks/reaction.py
    # The whole command was killed, not only abandoned (sshd runs it on this machine).
    assert _wait_until_gone(f"sleep {marker}") == []
    assert client.run("echo still usable").stdout == "still usable\n"


def test_a_command_finishing_within_its_timeout_shows_only_its_own_stderr(
    client: SSHClient,
) -> None:
    result = client.run("echo out; echo err >&2", timeout=10)

    assert (result.stdout, result.stderr) == ("out\n", "err\n")


def test_concurrent_runs_from_threads_share_one_connection(
    sshd_server: RunningSshd, client: SSHClient
) -> None:
    logins_before = sshd_server.log_text().count("Accepted publickey")

    def echo(number: int) -> str:
        return client.run(["sh", "-c", 'echo "$1"; echo "e$1" >&2', "-", str(number)]).stdout

    # More threads than sshd's default MaxSessions (10) open channels at the same time.
    with ThreadPoolExecutor(max_workers=12) as pool:
        outputs = list(pool.map(echo, range(36)))

    assert outputs == [f"{number}\n" for number in range(36)]
    assert sshd_server.log_text().count("Accepted publickey") == logins_before + 1


def test_connect_is_idempotent(sshd_server: RunningSshd, client: SSHClient) -> None:
    logins_before = sshd_server.log_text().count("Accepted publickey")

    client.connect()
    client.connect()
    client.run("true")

    assert sshd_server.log_text().count("Accepted publickey") == logins_before + 1


def test_a_dropped_connection_is_reopened(client: SSHClient) -> None:
    first_shell_parent = client.run("echo $PPID").stdout
    # The shell's parent is the sshd process serving this connection: killing it drops it.
    with pytest.raises(SSHError, match="connection lost"):
        client.run("kill -9 $PPID", timeout=10)

    assert client.run("echo $PPID").stdout != first_shell_parent


def test_close_then_run_connects_again(client: SSHClient) -> None:
    client.run("true")
    client.close()
    client.close()

    assert client.run("echo again").stdout == "again\n"


# -- files ------------------------------------------------------------------------------


def test_put_and_get_copy_files_both_ways(client: SSHClient, tmp_path: Path) -> None:
    payload = os.urandom(300_000)
    local = tmp_path / "payload.bin"
    local.write_bytes(payload)
    remote = str(tmp_path / "remote-copy.bin")

    client.put(local, remote)
    fetched = tmp_path / "fetched.bin"
    client.get(remote, str(fetched))

    assert fetched.read_bytes() == payload
    assert client.run(["cmp", str(local), remote]).ok


def test_write_text_and_read_text(client: SSHClient, tmp_path: Path) -> None:
    remote = str(tmp_path / "greeting.txt")

    client.write_text(remote, "grüße\n")

    assert client.read_text(remote) == "grüße\n"
    assert client.run(["cat", remote]).stdout == "grüße\n"


def test_write_text_sets_the_mode(client: SSHClient, tmp_path: Path) -> None:
    remote = tmp_path / "secret.txt"

    client.write_text(str(remote), "s3cret", mode=0o600)
    client.write_text(str(tmp_path / "script.sh"), "#!/bin/sh\necho ran\n", mode=0o755)

    assert stat.S_IMODE(remote.stat().st_mode) == 0o600
    assert client.run(["stat", "-c", "%a", str(remote)]).stdout == "600\n"
    assert client.run([str(tmp_path / "script.sh")]).stdout == "ran\n"


def test_reading_a_missing_file_names_it(client: SSHClient, tmp_path: Path) -> None:
    missing = str(tmp_path / "missing.txt")

    with pytest.raises(SSHError, match=r"missing\.txt") as caught:
        client.read_text(missing)

    assert client.target in str(caught.value)
    assert isinstance(caught.value.__cause__, FileNotFoundError)


def test_file_transfers_from_threads(client: SSHClient, tmp_path: Path) -> None:
    def round_trip(number: int) -> str:
        remote = str(tmp_path / f"file-{number}.txt")
        client.write_text(remote, f"content {number}")
        return client.read_text(remote)

    with ThreadPoolExecutor(max_workers=8) as pool:
        contents = list(pool.map(round_trip, range(24)))

    assert contents == [f"content {number}" for number in range(24)]


# -- host keys, authentication, reachability --------------------------------------------


def test_a_host_key_is_required(tmp_path: Path) -> None:
    user_key = generate_ed25519_key(tmp_path / "id_ed25519")

    with pytest.raises(ValueError, match="host key"):
        SSHClient("127.0.0.1", 22, "root", user_key)


def test_a_different_host_key_is_rejected(sshd_server: RunningSshd, tmp_path: Path) -> None:
    impostor_key = generate_ed25519_key(tmp_path / "other_host_key")

    with sshd_server.client(host_keys=(impostor_key,)) as ssh:
        with pytest.raises(SSHError, match="host key mismatch") as caught:
            ssh.connect()
        assert sshd_server.host_key.fingerprint in str(caught.value)
        assert impostor_key.fingerprint in str(caught.value)
        assert not ssh.can_login()
        assert "host key mismatch" in str(ssh.last_login_error)


def test_known_hosts_pins_the_host_key(sshd_server: RunningSshd, tmp_path: Path) -> None:
    known_hosts = tmp_path / "known_hosts"
    pinned = sshd_server.client().host_key_name
    known_hosts.write_text(f"{pinned} {public_key_line(sshd_server.host_key)}\n")

    with sshd_server.client(host_keys=(), known_hosts=known_hosts) as ssh:
        assert ssh.run("echo pinned").stdout == "pinned\n"


def test_a_host_missing_from_known_hosts_is_rejected(
    sshd_server: RunningSshd, tmp_path: Path
) -> None:
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(f"127.9.9.9 {public_key_line(sshd_server.host_key)}\n")

    with (
        sshd_server.client(host_keys=(), known_hosts=known_hosts) as ssh,
        pytest.raises(SSHError, match="host key not pinned"),
    ):
        ssh.connect()


def test_a_wrong_user_key_fails_authentication(sshd_server: RunningSshd, tmp_path: Path) -> None:
    stranger_key = generate_ed25519_key(tmp_path / "stranger")
    ssh = SSHClient(
        sshd_server.address,
        sshd_server.port,
        LOGIN_USER,
        stranger_key,
        host_keys=[sshd_server.host_key],
    )

    with ssh, pytest.raises(SSHError, match="authentication failed") as caught:
        ssh.connect()

    assert stranger_key.fingerprint in str(caught.value)
    assert not ssh.can_login()


def test_can_login(client: SSHClient) -> None:
    assert client.can_login()
    assert client.last_login_error is None


def test_can_login_is_false_against_a_closed_port(sshd_server: RunningSshd) -> None:
    address, port = _free_loopback_endpoint()
    ssh = SSHClient(
        address, port, LOGIN_USER, sshd_server.user_key, host_keys=[sshd_server.host_key]
    )

    with ssh:
        assert not ssh.can_login()

    assert "connection refused" in str(ssh.last_login_error)
    with pytest.raises(SSHError, match="connection refused"):
        ssh.connect()


def test_the_client_names_its_target(sshd_server: RunningSshd) -> None:
    ssh = sshd_server.client(name="core-07")

    assert (ssh.name, ssh.host, ssh.port, ssh.username) == (
        "core-07",
        sshd_server.address,
        sshd_server.port,
        LOGIN_USER,
    )
    assert ssh.target == f"{LOGIN_USER}@{sshd_server.address}:{sshd_server.port}"
    if sshd_server.port == 22:
        assert ssh.host_key_name == sshd_server.address
    else:
        assert ssh.host_key_name == f"[{sshd_server.address}]:{sshd_server.port}"


# -- sshd helpers -----------------------------------------------------------------------


def test_render_sshd_config_exact_text() -> None:
    settings = SshdSettings(
        address="127.1.2.3",
        port=2222,
        host_key=Path("/tmp/core-01/ssh_host_ed25519_key"),
        authorized_keys=Path("/tmp/core-01/authorized_keys"),
        login_user="core",
        pid_file=Path("/tmp/core-01/sshd.pid"),
    )

    assert render_sshd_config(settings) == (
        "# Written by pytest-coreos for one machine of a test cluster.\n"
        "ListenAddress 127.1.2.3:2222\n"
        "HostKey /tmp/core-01/ssh_host_ed25519_key\n"
        "PidFile /tmp/core-01/sshd.pid\n"
        "AuthorizedKeysFile /tmp/core-01/authorized_keys\n"
        "AllowUsers core\n"
        "PubkeyAuthentication yes\n"
        "PasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\n"
        "UsePAM no\n"
        "PermitRootLogin prohibit-password\n"
        "StrictModes no\n"
        "UseDNS no\n"
        "MaxStartups 100\n"
        "MaxSessions 100\n"
        "Subsystem sftp internal-sftp\n"
        "LogLevel VERBOSE\n"
        "SetEnv SHLVL=1\n"
    )


def test_render_sshd_config_turns_off_penalties_where_sshd_has_them() -> None:
    settings = SshdSettings(
        "127.1.2.3", 22, Path("/k"), Path("/a"), "root", Path("/p"), openssh_version=(9, 8)
    )
    older = SshdSettings(
        "127.1.2.3", 22, Path("/k"), Path("/a"), "root", Path("/p"), openssh_version=(9, 7)
    )

    assert render_sshd_config(settings).endswith("SetEnv SHLVL=1\nPerSourcePenalties no\n")
    assert "PerSourcePenalties" not in render_sshd_config(older)


def test_rendered_config_with_awkward_paths_is_accepted_by_sshd(tmp_path: Path) -> None:
    directory = tmp_path / "with space" / "100%"
    directory.mkdir(parents=True)
    generate_ed25519_key(directory / "host key")
    settings = SshdSettings(
        address="127.1.2.3",
        port=2222,
        host_key=directory / "host key",
        authorized_keys=directory / "authorized keys",
        login_user=LOGIN_USER,
        pid_file=directory / "sshd.pid",
        openssh_version=openssh_version(find_sshd()),
    )
    config = directory / "sshd_config"
    config.write_text(render_sshd_config(settings))
    ensure_privilege_separation_dir()

    checked = subprocess.run(
        [str(find_sshd()), "-T", "-f", str(config)], capture_output=True, text=True, check=False
    )

    assert checked.returncode == 0, checked.stderr
    assert f"authorizedkeysfile {directory}/authorized keys" in checked.stdout.replace("%%", "%")
    assert f"hostkey {directory}/host key" in checked.stdout


def test_a_config_value_with_a_quote_is_refused() -> None:
    settings = SshdSettings(
        "127.1.2.3", 22, Path('/tmp/"quoted"/key'), Path("/a"), "root", Path("/p")
    )

    with pytest.raises(ValueError, match="quote"):
        render_sshd_config(settings)


def test_sshd_command_runs_in_the_foreground_logging_to_a_file() -> None:
    assert sshd_command(Path("/usr/sbin/sshd"), Path("/w/sshd_config"), Path("/w/sshd.log")) == [
        "/usr/sbin/sshd",
        "-D",
        "-f",
        "/w/sshd_config",
        "-E",
        "/w/sshd.log",
    ]


def test_ssh_port_for_current_user() -> None:
    assert ssh_port_for_current_user() == (22 if os.geteuid() == 0 else 2222)


def test_ensure_privilege_separation_dir(tmp_path: Path) -> None:
    directory = tmp_path / "run" / "sshd"

    ensure_privilege_separation_dir(directory)
    ensure_privilege_separation_dir(directory)

    if os.geteuid() == 0:
        assert stat.S_IMODE(directory.stat().st_mode) == 0o755
    else:
        assert not directory.exists()


def test_generated_key_is_a_private_openssh_key_with_its_public_line(tmp_path: Path) -> None:
    path = tmp_path / "id_ed25519"

    key = generate_ed25519_key(path)

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text().startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
    public_line = (tmp_path / "id_ed25519.pub").read_text()
    assert public_line == public_key_line(key) + "\n"
    assert public_line.startswith("ssh-ed25519 AAAA")
    assert public_line.endswith(" pytest-coreos\n")
    # OpenSSH's own tool reads the private key and derives the same public key.
    derived = subprocess.run(
        ["ssh-keygen", "-y", "-f", str(path)], capture_output=True, text=True, check=True
    ).stdout
    assert derived.split()[:2] == public_line.split()[:2]
    assert paramiko.Ed25519Key(filename=str(path)) == key


def test_regenerating_a_key_replaces_it_and_keeps_it_private(tmp_path: Path) -> None:
    path = tmp_path / "id_ed25519"
    path.write_text("old")
    path.chmod(0o644)

    key = generate_ed25519_key(path)

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert paramiko.Ed25519Key(filename=str(path)) == key


def test_public_key_line(tmp_path: Path) -> None:
    key = generate_ed25519_key(tmp_path / "id_ed25519")
    blob = base64.b64encode(key.asbytes()).decode()

    assert public_key_line(key, "core@core-01") == f"ssh-ed25519 {blob} core@core-01"
    assert public_key_line(key) == f"ssh-ed25519 {blob} pytest-coreos"


def test_parse_openssh_version() -> None:
    assert parse_openssh_version("OpenSSH_9.2p1 Debian-2+deb12u3, OpenSSL 3.0.15") == (9, 2)
    assert parse_openssh_version("unknown option -- V\nOpenSSH_8.2p1 Ubuntu") == (8, 2)
    with pytest.raises(ValueError, match="no OpenSSH version"):
        parse_openssh_version("sshd: command not found")


def test_stopping_sshd_leaves_no_process_behind(tmp_path: Path) -> None:
    server = start_sshd(tmp_path / "own-sshd")
    # A connection still open when sshd stops must not outlive it either.
    still_open = server.client()
    try:
        with server.client() as ssh:
            assert ssh.run(["echo", "up"]).stdout == "up\n"
        still_open.connect()
    finally:
        pids = stop_sshd(server)
        still_open.close()

    assert len(pids) >= 2
    assert _remaining_processes(pids, server.config) == []
