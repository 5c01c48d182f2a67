"""Opening one authenticated SSH connection to a host: its key or password (never logged), the
known_hosts files and the policy for a host key they lack, a TCP socket without Nagle's delay,
and an error that says which of these failed. ``SshTransport`` runs commands and moves files
over what this opens."""

from __future__ import annotations

import base64
import getpass
import hashlib
import io
import os
import socket
import threading
from collections.abc import Callable
from pathlib import Path

import paramiko

from orch.transport.base import Host, HostKeyError, HostKeyPolicy, TransportError

DEFAULT_KNOWN_HOSTS = "~/.ssh/known_hosts"
_KEY_CLASSES = ("Ed25519Key", "ECDSAKey", "RSAKey")
_KNOWN_HOSTS_WRITE = threading.Lock()


def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH's SHA256 fingerprint of a host key."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


class _Connection:
    """One authenticated SSH connection, its lazily opened SFTP client and cached home."""

    def __init__(self, client: paramiko.SSHClient):
        self.client = client
        transport = client.get_transport()
        assert transport is not None
        self.transport: paramiko.Transport = transport
        self.sftp: paramiko.SFTPClient | None = None
        # paramiko's SFTP client is one request stream: one thread at a time
        self.sftp_lock = threading.Lock()
        self.home: str | None = None

    def alive(self) -> bool:
        return self.transport.is_active()

    def close(self) -> None:
        try:
            if self.sftp is not None:
                self.sftp.close()
        except Exception:  # the connection may be gone already
            pass
        self.client.close()


class _MissingKeyPolicy(paramiko.MissingHostKeyPolicy):
    """Unknown host key: refuse with instructions, or (accept_new) record it and go on."""

    def __init__(self, owner: SshConnector):
        self.owner = owner

    def missing_host_key(self, client, hostname, key) -> None:
        owner = self.owner
        policy = owner.policy
        if not policy.accept_new:
            where = ", ".join(owner.known_hosts_files()) or DEFAULT_KNOWN_HOSTS
            raise HostKeyError(
                f"{owner.host}: unknown SSH host key {key.get_name()} {fingerprint(key)} for "
                f"{hostname} (not in {where}). If this is the right host, accept it with "
                f"--accept-new-host-keys, or add it yourself: "
                f"ssh-keyscan -p {owner.target.port} {owner.target.address} >> ~/.ssh/known_hosts",
                host=owner.host,
            )
        path = Path(os.path.expanduser(policy.known_hosts_file or DEFAULT_KNOWN_HOSTS))
        line = f"{hostname} {key.get_name()} {key.get_base64()}\n"
        with _KNOWN_HOSTS_WRITE:
            try:
                path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
                with os.fdopen(fd, "a") as handle:
                    handle.write(line)
            except OSError as exc:
                raise HostKeyError(
                    f"{owner.host}: cannot record the new host key in {path}: "
                    f"{exc.strerror or exc}", host=owner.host,
                ) from exc


def _load_key_text(text: str) -> paramiko.PKey | None:
    for name in _KEY_CLASSES:
        cls = getattr(paramiko, name)
        try:
            return cls.from_private_key(io.StringIO(text))
        except (paramiko.SSHException, ValueError, TypeError, IndexError):
            continue
    return None


class SshConnector:
    """How to open a connection to ``target``: credentials, host keys, timeouts."""

    def __init__(self, target: Host, policy: HostKeyPolicy, connect_timeout: float = 10.0,
                 on_connect: Callable[[], None] | None = None):
        self.target = target
        self.policy = policy
        self.connect_timeout = connect_timeout
        self.user = target.user or getpass.getuser()
        self.host = f"{self.user}@{target.address}:{target.port}"
        self._on_connect = on_connect


    def known_hosts_files(self) -> list[str]:
        files = list(self.policy.known_hosts_files) or [DEFAULT_KNOWN_HOSTS]
        if self.target.known_hosts:
            files.insert(0, self.target.known_hosts)
        if self.policy.accept_new:
            files.append(self.policy.known_hosts_file or DEFAULT_KNOWN_HOSTS)
        return [os.path.expanduser(f) for f in dict.fromkeys(files)]

    def _error(self, cause: str, started: bool = False) -> TransportError:
        return TransportError(f"{self.host}: {cause}", host=self.host, started=started)

    def _auth(self) -> tuple[dict, str]:
        """paramiko's auth arguments, and how they are described in errors (no secrets)."""
        target = self.target
        kwargs: dict = {}
        means: list[str] = []
        if target.identity_file:
            path = os.path.expanduser(target.identity_file)
            try:
                kwargs["pkey"] = paramiko.PKey.from_path(path)
            except paramiko.PasswordRequiredException:
                raise self._error(f"key {path} is protected by a passphrase; "
                                  "load it in an SSH agent instead") from None
            except (OSError, paramiko.SSHException, ValueError) as exc:
                cause = exc.strerror if isinstance(exc, OSError) and exc.strerror else "unreadable"
                raise self._error(f"cannot read key {path}: {cause}") from None
            means.append(f"key {path}")
        elif target.private_key:
            key = _load_key_text(target.private_key)
            if key is None:
                raise self._error("the private key given for this host is not an unencrypted "
                                  "Ed25519, ECDSA or RSA key")
            kwargs["pkey"] = key
            means.append("the given private key")
        if target.password:
            kwargs["password"] = target.password
            means.append("the given password")
        if means:
            kwargs.update(allow_agent=False, look_for_keys=False)
            return kwargs, " and ".join(means)
        kwargs.update(allow_agent=True, look_for_keys=True)
        return kwargs, "the SSH agent and the default keys in ~/.ssh"

    def _socket(self) -> socket.socket:
        """A TCP connection with Nagle off: paramiko leaves it on, and Nagle with delayed ACKs
        costs ~40 ms on each channel open."""
        sock = socket.create_connection((self.target.address, self.target.port),
                                        timeout=self.connect_timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    def open(self) -> _Connection:
        auth, means = self._auth()
        client = paramiko.SSHClient()
        for path in self.known_hosts_files():
            if os.path.isfile(path):
                try:
                    client.load_system_host_keys(path)
                except UnicodeDecodeError:
                    raise HostKeyError(f"{self.host}: cannot read known_hosts {path}: it is not "
                                       "UTF-8 text (a known_hosts file is one line per host key)",
                                       host=self.host) from None
                except (OSError, ValueError, paramiko.SSHException) as exc:
                    raise HostKeyError(f"{self.host}: cannot read known_hosts {path}: {exc}",
                                       host=self.host) from None
        client.set_missing_host_key_policy(_MissingKeyPolicy(self))
        timeout = self.connect_timeout
        try:
            sock = self._socket()
            client.connect(
                self.target.address, self.target.port, username=self.user, timeout=timeout,
                banner_timeout=timeout, auth_timeout=timeout, sock=sock, **auth,
            )
        except HostKeyError:
            client.close()
            raise
        except paramiko.BadHostKeyException as exc:
            client.close()
            raise HostKeyError(
                f"{self.host}: HOST KEY CHANGED! The host presents {exc.key.get_name()} "
                f"{fingerprint(exc.key)} but known_hosts has {exc.expected_key.get_name()} "
                f"{fingerprint(exc.expected_key)}. Someone may be intercepting the connection, "
                "or the host was reinstalled; check with its administrators, then remove the "
                "old entry (ssh-keygen -R) yourself. orch never replaces a known key.",
                host=self.host,
            ) from None
        except paramiko.AuthenticationException:
            client.close()
            raise self._error(f"authentication failed for user {self.user} with {means}") from None
        except ConnectionRefusedError:
            client.close()
            raise self._error("connection refused") from None
        except TimeoutError:
            client.close()
            raise self._error(f"connection timed out after {timeout:g} s") from None
        except socket.gaierror:
            client.close()
            raise self._error(f"cannot resolve host name {self.target.address}") from None
        except (paramiko.SSHException, EOFError) as exc:
            client.close()
            raise self._error(f"SSH handshake failed: {exc or type(exc).__name__}") from None
        except OSError as exc:
            client.close()
            raise self._error(f"cannot connect: {exc.strerror or exc}") from None
        conn = _Connection(client)
        conn.transport.set_keepalive(30)
        if self._on_connect is not None:
            self._on_connect()
        return conn
