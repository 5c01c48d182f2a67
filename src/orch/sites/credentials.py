"""SSH private keys kept by orch and named by a random token, as eFlows4HPC's execution API does.

A blueprint or a site names the token only; the key stays in one 0600 file of this machine
(``$ORCH_DATA_HOME``, else ``$XDG_DATA_HOME/orch``, else ``~/.local/share/orch``, then
``credentials/<token>/key``) and is read when a connection opens. So deployment state, logs and
blueprints never hold key material, and a key can be revoked by removing one folder.

Keys are made and read with ``cryptography`` (paramiko cannot generate Ed25519 keys) and stored
in OpenSSH format, which paramiko and OpenSSH both load.
"""

from __future__ import annotations

import base64
import contextlib
import getpass
import hashlib
import json
import os
import re
import secrets
import shutil
import socket
import stat
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from orch.tosca.loader import read_regular

TOKEN_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{15,127}\Z")
"""What a token looks like; anything else is refused before it reaches a file name. It never
starts with '-', which a command line would take for an option."""

KEY_FILE = "key"
PUBLIC_FILE = "key.pub"
META_FILE = "meta.json"
SUPPORTED = (
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "ssh-rsa",
)
"""Key types paramiko authenticates with (DSA is gone from OpenSSH and from orch)."""
MAX_KEY_BYTES = 1024 * 1024
"""A private key file (a 16384-bit RSA key is 12 KiB): anything larger is not a key."""
MAX_PUBLIC_BYTES = 64 * 1024


class CredentialError(Exception):
    """A credential cannot be made, imported, found or read; the message says why (never the
    key)."""


@dataclass(frozen=True)
class Credential:
    """What orch shows of a stored key: never the private part."""

    token: str
    key_type: str
    fingerprint: str
    comment: str
    created: str
    """ISO 8601, UTC."""
    public_key: str
    """The line for ``authorized_keys``: type, base64 blob, comment."""

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


def data_home(env: Mapping[str, str] = os.environ) -> Path:
    """orch's data folder: ``$ORCH_DATA_HOME`` (tests), else the XDG data home's ``orch``."""
    if env.get("ORCH_DATA_HOME"):
        return Path(env["ORCH_DATA_HOME"]).expanduser()
    xdg = env.get("XDG_DATA_HOME")
    if xdg and os.path.isabs(xdg):  # the XDG spec says to ignore relative values
        return Path(xdg) / "orch"
    home = Path(env["HOME"]) if env.get("HOME") else Path.home()
    return home / ".local" / "share" / "orch"


def fingerprint_of(public_line: str) -> str:
    """``SHA256:...`` as ``ssh-keygen -l`` prints it, from an ``authorized_keys`` line."""
    blob = base64.b64decode(public_line.split()[1])
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def check_token(token: str) -> str:
    if not TOKEN_PATTERN.match(token):
        raise CredentialError(
            f"'{token}' is not a credential token (16 to 128 letters, digits, '-' or '_', "
            "starting with a letter or digit; "
            "see `orch credentials list`)"
        )
    return token


def new_token() -> str:
    """A random URL-safe token (24 characters, about 140 random bits), unrelated to the key it
    names, starting with a letter or digit."""
    while True:
        token = secrets.token_urlsafe(18)
        if token[0].isalnum():
            return token


def default_comment() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "user"
    return f"orch {user}@{socket.gethostname()}"


# -- key material -----------------------------------------------------------------------------


def _openssh_private(key: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )


def _public_line(key: Any, comment: str) -> str:
    from cryptography.hazmat.primitives import serialization

    line = (
        key.public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        .decode()
    )
    comment = " ".join(comment.split())  # one line, whatever the user typed
    return f"{line} {comment}" if comment else line


def generate_ed25519() -> Any:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return Ed25519PrivateKey.generate()


def load_private_key(data: bytes, source: str) -> Any:
    """The private key in ``data`` (OpenSSH or PEM format); refuses public keys, keys under a
    passphrase and types orch cannot use, saying what to do instead."""
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization

    head = data.lstrip()[:64]
    if head.startswith((b"ssh-", b"ecdsa-", b"sk-")):
        raise CredentialError(
            f"{source} is a public key: give the private key file (usually the same name "
            "without .pub)"
        )
    try:
        if b"OPENSSH PRIVATE KEY" in head:
            key = serialization.load_ssh_private_key(data, password=None)
        else:
            key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise CredentialError(
            f"{source} is protected by a passphrase, and orch reads keys unattended: generate "
            "a key for orch (`orch credentials generate`) or import an unprotected copy "
            "(ssh-keygen -p -N '' -f COPY)"
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        raise CredentialError(
            f"{source} is not a private key orch can read (OpenSSH or PEM: Ed25519, ECDSA, RSA)"
        ) from None
    key_type = _public_line(key, "").split()[0] if _has_openssh_public(key) else "?"
    if key_type not in SUPPORTED:
        raise CredentialError(
            f"{source} holds a {key_type} key; orch uses Ed25519, ECDSA or RSA keys"
        )
    return key


def _has_openssh_public(key: Any) -> bool:
    try:
        _public_line(key, "")
    except (ValueError, TypeError, AttributeError):
        return False
    return True


# -- the store --------------------------------------------------------------------------------


def _write_private(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Create ``path`` with ``mode`` from the start (no moment where others could read it)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), mode)
    try:
        os.fchmod(fd, mode)  # whatever the umask said
        os.write(fd, data)
    finally:
        os.close(fd)


def _private_dir(path: Path) -> None:
    """Make ``path`` (and missing parents) and leave it 0700."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if stat.S_IMODE(path.stat().st_mode) != 0o700:
        path.chmod(0o700)


class CredentialStore:
    """The folder of stored keys: one sub-folder per token (key 0600, folders 0700)."""

    def __init__(self, root: Path):
        self.root = Path(root)

    @classmethod
    def default(cls, env: Mapping[str, str] = os.environ) -> CredentialStore:
        return cls(data_home(env) / "credentials")

    def folder(self, token: str) -> Path:
        return self.root / check_token(token)

    # -- adding ---------------------------------------------------------------------------

    def generate(self, comment: str | None = None) -> Credential:
        """A new Ed25519 key pair, stored under a new token."""
        key = generate_ed25519()
        return self._store(key, comment if comment is not None else default_comment())

    def add(self, source: Path, comment: str | None = None) -> tuple[Credential, bool]:
        """Import the private key file ``source``; returns (credential, whether it is new).

        A key already stored keeps its token (importing twice is harmless)."""
        try:  # a FIFO or /dev/zero would block or never end: regular files, capped
            data = read_regular(source, MAX_KEY_BYTES, "a private key file")
        except OSError as exc:
            raise CredentialError(f"cannot read {source}: {exc.strerror or exc}") from None
        key = load_private_key(data, str(source))
        found = self._find(fingerprint_of(_public_line(key, "")))
        if found is not None:
            return found, False
        if comment is None:
            comment = _sibling_comment(Path(source)) or f"imported from {source}"
        return self._store(key, comment), True

    def _find(self, fingerprint: str) -> Credential | None:
        return next((c for c in self.list() if c.fingerprint == fingerprint), None)

    def _store(self, key: Any, comment: str) -> Credential:
        public = _public_line(key, comment)
        _private_dir(self.root)
        token = new_token()
        while (self.root / token).exists():  # pragma: no cover - 144 random bits
            token = new_token()
        credential = Credential(
            token=token,
            key_type=public.split()[0],
            fingerprint=fingerprint_of(public),
            comment=" ".join(comment.split()),
            created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            public_key=public,
        )
        staging = self.root / f".new-{token}"
        staging.mkdir(mode=0o700)
        try:
            staging.chmod(0o700)
            _write_private(staging / KEY_FILE, _openssh_private(key))
            _write_private(staging / PUBLIC_FILE, (public + "\n").encode(), 0o644)
            meta = {k: v for k, v in credential.as_dict().items() if k != "token"}
            _write_private(staging / META_FILE, (json.dumps(meta, indent=2) + "\n").encode())
            staging.rename(self.root / token)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return credential

    # -- reading ---------------------------------------------------------------------------

    def list(self) -> list[Credential]:
        """Every stored credential, oldest first (unreadable entries are skipped)."""
        if not self.root.is_dir():
            return []
        found = []
        for entry in self.root.iterdir():
            if TOKEN_PATTERN.match(entry.name) and entry.is_dir():
                with contextlib.suppress(CredentialError):
                    found.append(self.get(entry.name))
        return sorted(found, key=lambda c: (c.created, c.token))

    def get(self, token: str) -> Credential:
        folder = self.folder(token)
        try:
            meta = json.loads((folder / META_FILE).read_text("utf-8"))
        except FileNotFoundError:
            raise self._unknown(token) from None
        except (OSError, ValueError) as exc:
            raise CredentialError(
                f"credential {token}: cannot read {folder / META_FILE}: {exc}"
            ) from None
        fields = ("key_type", "fingerprint", "comment", "created", "public_key")
        return Credential(token, **{name: str(meta.get(name, "")) for name in fields})

    def key_path(self, token: str) -> Path:
        """The private key file of ``token``, checked like OpenSSH checks identity files:
        present, and closed to other users."""
        path = self.folder(token) / KEY_FILE
        try:
            mode = stat.S_IMODE(path.stat().st_mode)
        except FileNotFoundError:
            raise self._unknown(token) from None
        except OSError as exc:
            raise CredentialError(
                f"credential {token}: cannot read {path}: {exc.strerror or exc}"
            ) from None
        if mode & 0o077:
            raise CredentialError(
                f"credential {token}: {path} is open to other users (mode {mode:04o}); "
                f"close it with: chmod 600 {path}"
            )
        return path

    def public_key(self, token: str) -> str:
        return self.get(token).public_key

    def remove(self, token: str) -> Credential:
        credential = self.get(token)
        shutil.rmtree(self.folder(token))
        return credential

    def _unknown(self, token: str) -> CredentialError:
        return CredentialError(
            f"no credential {token} in {self.root} (see `orch credentials list`; "
            "ORCH_DATA_HOME or XDG_DATA_HOME choose the folder)"
        )


def _sibling_comment(source: Path) -> str:
    """The comment of ``source``'s ``.pub`` file, if there is one."""
    try:
        text = read_regular(source.with_name(source.name + ".pub"), MAX_PUBLIC_BYTES).decode()
    except (OSError, UnicodeDecodeError):
        return ""
    fields = text.split(None, 2)
    return fields[2].strip() if len(fields) == 3 else ""


def loose_permissions(source: Path) -> bool:
    """Whether other users may read ``source`` (the key may have been seen by them)."""
    try:
        return bool(source.stat().st_mode & 0o044)
    except OSError:
        return False
