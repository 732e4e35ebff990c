"""What the local provider needs to give each machine its own real OpenSSH sshd.

Keys, the sshd configuration and the command line are built here; starting, waiting for
and stopping the process is the provider's job. Everything but key generation, the version
probe and the privilege separation directory is pure.
"""

from __future__ import annotations

import functools
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import paramiko
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

ROOT_SSH_PORT = 22
# An unprivileged process may only bind ports >= 1024.
UNPRIVILEGED_SSH_PORT = 2222
PRIVILEGE_SEPARATION_DIR = Path("/run/sshd")
# OpenSSH 9.8 added per-source penalties, on by default: a few failed logins or connections
# closed before authentication (a host key check that fails, a port probe) make sshd refuse
# every new connection from that address for a while, which would fail unrelated tests.
PER_SOURCE_PENALTIES_SINCE = (9, 8)
# High enough for parallel test use: many clients connecting at once (MaxStartups) and many
# threads opening channels on one connection (MaxSessions, 10 by default).
MAX_STARTUPS = 100
MAX_SESSIONS = 100


def _write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` readable by its owner only, whatever was there before."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        # The mode given to open() only applies to a new file; an existing one keeps its own.
        os.fchmod(handle.fileno(), 0o600)
        handle.write(data)


def generate_ed25519_key(path: Path, comment: str = "pytest-coreos") -> paramiko.Ed25519Key:
    """Create a new Ed25519 key at ``path`` (OpenSSH format, 0600) and ``path``.pub.

    The key is made in-process with ``cryptography`` (already paramiko's dependency), which
    takes microseconds where ``ssh-keygen`` would cost a process per key.
    """
    private_key = Ed25519PrivateKey.generate()
    private_bytes = private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    _write_private(path, private_bytes)
    key = paramiko.Ed25519Key(filename=str(path))
    public_path = path.with_name(path.name + ".pub")
    public_path.write_text(public_key_line(key, comment) + "\n", encoding="ascii")
    return key


def public_key_line(key: paramiko.PKey, comment: str = "pytest-coreos") -> str:
    """The key as one ``authorized_keys`` / ``.pub`` line: ``ssh-ed25519 AAAA... comment``."""
    return f"{key.get_name()} {key.get_base64()} {comment}".rstrip()


@dataclass(frozen=True)
class SshdSettings:
    """Where one machine's sshd listens, which keys it uses and who may log in.

    ``openssh_version`` is the sshd's version when known (see :func:`openssh_version`), so
    that options only newer versions understand, and need, can be set.
    """

    address: str
    port: int
    host_key: Path
    authorized_keys: Path
    login_user: str
    pid_file: Path
    openssh_version: tuple[int, int] | None = None


def _config_value(value: str | Path) -> str:
    """``value`` as one sshd_config argument, double-quoted when it holds whitespace."""
    text = str(value)
    if '"' in text or "\n" in text or "\r" in text:
        raise ValueError(f"sshd_config cannot hold {text!r}: it contains a quote or newline")
    return f'"{text}"' if any(character.isspace() for character in text) else text


def _listen_address(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def render_sshd_config(settings: SshdSettings) -> str:
    """The sshd_config text for one machine: key-only logins for one user on one address."""
    # AuthorizedKeysFile expands %-tokens (%h, %u); a literal % must be doubled.
    authorized_keys = str(settings.authorized_keys.absolute()).replace("%", "%%")
    options: list[tuple[str, str]] = [
        ("ListenAddress", _listen_address(settings.address, settings.port)),
        ("HostKey", _config_value(settings.host_key.absolute())),
        ("PidFile", _config_value(settings.pid_file.absolute())),
        ("AuthorizedKeysFile", _config_value(authorized_keys)),
        ("AllowUsers", settings.login_user),
        ("PubkeyAuthentication", "yes"),
        ("PasswordAuthentication", "no"),
        ("KbdInteractiveAuthentication", "no"),
        # PAM would need the system's login stack, and root to use it.
        ("UsePAM", "no"),
        ("PermitRootLogin", "prohibit-password"),
        # The keys live under the test's temporary directory, whose parents (/tmp) are
        # world-writable; strict modes would refuse them.
        ("StrictModes", "no"),
        ("UseDNS", "no"),
        ("MaxStartups", str(MAX_STARTUPS)),
        ("MaxSessions", str(MAX_SESSIONS)),
        # Built into sshd, so no sftp-server binary has to be found.
        ("Subsystem", "sftp internal-sftp"),
        ("LogLevel", "VERBOSE"),
        # bash started by sshd reads ~/.bashrc unless it runs nested (SHLVL>=1): commands
        # on a machine must not depend on, or wait for, the user's interactive shell setup.
        ("SetEnv", "SHLVL=1"),
    ]
    version = settings.openssh_version
    if version is not None and version >= PER_SOURCE_PENALTIES_SINCE:
        options.append(("PerSourcePenalties", "no"))
    lines = ["# Written by pytest-coreos for one machine of a test cluster."]
    lines += [f"{keyword} {value}" for keyword, value in options]
    return "\n".join(lines) + "\n"


def sshd_command(sshd: Path, config: Path, log_file: Path) -> list[str]:
    """The command line running ``sshd`` in the foreground with ``config``, logging to a file.

    Paths are made absolute because sshd re-executes itself for every connection and
    refuses to start from a relative path.
    """
    return [
        str(sshd.absolute()),
        "-D",  # stay in the foreground, so the provider owns the process
        "-f",
        str(config.absolute()),
        "-E",
        str(log_file.absolute()),
    ]


def parse_openssh_version(output: str) -> tuple[int, int]:
    """Read ``OpenSSH_9.2p1, OpenSSL ...`` (from ``sshd -V``) into ``(9, 2)``."""
    match = re.search(r"OpenSSH_(\d+)\.(\d+)", output)
    if match is None:
        raise ValueError(f"no OpenSSH version in {output[:200]!r}")
    return (int(match.group(1)), int(match.group(2)))


@functools.lru_cache(maxsize=8)
def openssh_version(sshd: Path) -> tuple[int, int] | None:
    """The version of the ``sshd`` at that path, or None when it does not say.

    sshd before 9.0 has no ``-V`` but prints its version in the usage text it shows instead.
    """
    try:
        completed = subprocess.run(
            [str(sshd), "-V"], capture_output=True, text=True, timeout=30, check=False
        )
        return parse_openssh_version(completed.stdout + completed.stderr)
    except (OSError, ValueError, subprocess.SubprocessError):
        return None


def ssh_port_for_current_user() -> int:
    """22 when root; otherwise 2222, since an unprivileged sshd cannot bind below 1024."""
    return ROOT_SSH_PORT if os.geteuid() == 0 else UNPRIVILEGED_SSH_PORT


def ensure_privilege_separation_dir(path: Path = PRIVILEGE_SEPARATION_DIR) -> None:
    """Create the directory a root sshd chroots its unprivileged child into (mode 0755).

    A root sshd refuses to start without it, and it is missing on machines (containers,
    CI runners) where the system's ssh service never ran. An unprivileged sshd does not
    use it, so this does nothing unless root.
    """
    if os.geteuid() != 0:
        return
    path.mkdir(mode=0o755, parents=True, exist_ok=True)
    # sshd also refuses the directory when group or others may write to it.
    path.chmod(0o755)
