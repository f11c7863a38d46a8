"""Logins of the served app: scrypt password hashes and the users file.

A users file maps *logins* (what a person types on the login page) to pmkit
*users* (whose roles the registry checks). Passwords are stored only as salted
scrypt hashes; the plain text is never written and never appears in an error.

The file is JSON, written atomically with mode 0600::

    {"version": 1,
     "logins": {"alice": {"user": "alice",
                          "password": "scrypt$16384$8$1$<salt b64>$<hash b64>",
                          "display_name": "Alice",
                          "active": true}}}

It holds password hashes, so `UsersFile.load` refuses a file that group or
others may read (``chmod 600`` it, or let ``pmkit users`` rewrite it). Every
change takes an exclusive lock on ``<file>.lock`` and re-reads the file
before writing, so concurrent ``pmkit users`` commands never lose each
other's changes.

Standard library only: ``pmkit users ...`` must work without the UI extra.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import fcntl
import hashlib
import hmac
import json
import os
import secrets
import stat
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pmkit.errors import AlreadyExistsError, ConfigError, NotFoundError, ValidationError
from pmkit.registry.ids import validate_user

if TYPE_CHECKING:
    from pmkit.registry import Registry

__all__ = [
    "MAX_PASSWORD_LENGTH",
    "MIN_PASSWORD_LENGTH",
    "USERS_FILE_VERSION",
    "LoginInfo",
    "UsersFile",
    "check_users",
    "file_mode",
    "hash_password",
    "is_active_user",
    "verify_password",
]

#: Shortest password accepted, in characters.
MIN_PASSWORD_LENGTH = 8
#: Longest password accepted, in characters (bounds the work one login attempt costs).
MAX_PASSWORD_LENGTH = 1024
#: Format version written to (and required of) users files.
USERS_FILE_VERSION = 1

# scrypt cost: n=2**14, r=8 is the interactive-login setting (~16 MiB, tens of ms).
_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**14, 8, 1
_SALT_BYTES, _HASH_BYTES = 16, 32
# Refuse stored parameters beyond these: a tampered file must not make one
# login attempt exhaust memory or CPU.
_MAX_N, _MAX_R, _MAX_P = 2**20, 32, 16
_FILE_MODE = 0o600


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int, dklen: int = _HASH_BYTES) -> bytes:
    return hashlib.scrypt(
        password.encode("utf-8"),
        salt=salt,
        n=n,
        r=r,
        p=p,
        dklen=dklen,
        maxmem=256 * r * (n + p + 2),  # scrypt needs 128*r*(n+p); OpenSSL adds a little
    )


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def hash_password(password: str) -> str:
    """Hash ``password`` with scrypt and a fresh random 16-byte salt.

    Parameters
    ----------
    password : str
        The plain password (not validated here; `UsersFile` enforces length).

    Returns
    -------
    str
        ``scrypt$<n>$<r>$<p>$<salt base64>$<hash base64>``; two calls with the
        same password give different strings (different salts).
    """
    if not isinstance(password, str):
        raise ValidationError("password", type(password).__name__, "must be a string")
    salt = secrets.token_bytes(_SALT_BYTES)
    digest = _scrypt(password, salt, _SCRYPT_N, _SCRYPT_R, _SCRYPT_P)
    return f"scrypt${_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def _parse_hash(encoded: object) -> tuple[int, int, int, bytes, bytes] | None:
    """The parts of an encoded hash, or None when it is not one we accept."""
    if not isinstance(encoded, str):
        return None
    parts = encoded.split("$")
    if len(parts) != 6 or parts[0] != "scrypt":
        return None
    try:
        n, r, p = (int(x) for x in parts[1:4])
        salt = base64.b64decode(parts[4], validate=True)
        digest = base64.b64decode(parts[5], validate=True)
    except (ValueError, binascii.Error):
        return None
    power_of_two = n > 1 and n & (n - 1) == 0
    if not (power_of_two and n <= _MAX_N and 0 < r <= _MAX_R and 0 < p <= _MAX_P):
        return None
    if len(salt) < 8 or not 16 <= len(digest) <= 64:
        return None
    return n, r, p, salt, digest


def verify_password(password: str, encoded: str) -> bool:
    """Whether ``password`` matches the hash ``encoded`` (from `hash_password`).

    Compares in constant time. A malformed, truncated or unknown encoding
    (or a non-string password) gives False rather than an error, so a login
    attempt can never crash the server.
    """
    parsed = _parse_hash(encoded)
    if parsed is None or not isinstance(password, str) or len(password) > MAX_PASSWORD_LENGTH:
        return False
    n, r, p, salt, digest = parsed
    try:
        candidate = _scrypt(password, salt, n, r, p, len(digest))
    except (ValueError, MemoryError):  # OpenSSL refused the parameters
        return False
    return hmac.compare_digest(candidate, digest)


# Verified against for unknown logins so that the response time does not tell
# an attacker which logins exist.
_DUMMY_HASH: str | None = None


def _dummy_hash() -> str:
    global _DUMMY_HASH
    if _DUMMY_HASH is None:
        _DUMMY_HASH = hash_password(secrets.token_urlsafe(16))
    return _DUMMY_HASH


def _check_password(password: object) -> str:
    # Never put the password itself in the error: describe it instead.
    if not isinstance(password, str):
        raise ValidationError("password", type(password).__name__, "must be a string")
    described = f"<{len(password)} characters>"
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValidationError(
            "password", described, f"must have at least {MIN_PASSWORD_LENGTH} characters"
        )
    if len(password) > MAX_PASSWORD_LENGTH:
        raise ValidationError(
            "password", described, f"must have at most {MAX_PASSWORD_LENGTH} characters"
        )
    return password


def _check_display_name(name: object) -> str:
    if not isinstance(name, str) or len(name) > 200 or any(c in name for c in "\r\n\0"):
        raise ValidationError("display_name", name, "must be one line of at most 200 characters")
    return name


@dataclass(frozen=True)
class LoginInfo:
    """What the users file says about one login (never the password hash).

    Attributes
    ----------
    login : str
        Name typed on the login page.
    user : str
        The pmkit user the login acts as (roles come from the registry).
    display_name : str
        Name shown in front ends ("" when not set).
    active : bool
        False once deactivated (``pmkit users deactivate``): it cannot log in.
    """

    login: str
    user: str
    display_name: str
    active: bool = True


def file_mode(path: str | os.PathLike[str]) -> int:
    """Permission bits of ``path`` (e.g. ``0o600``), following symlinks."""
    return stat.S_IMODE(os.stat(path).st_mode)


def _private_or_raise(path: Path) -> None:
    # Hashes are offline-crackable: group/others must not read them.
    mode = file_mode(path)
    if mode & 0o077:
        raise ConfigError(
            "users_file",
            f"{path} (mode {mode:04o})",
            f"is readable or writable by group or others; run 'chmod 600 {path}' "
            "(any 'pmkit users' change also rewrites it with mode 0600)",
        )


@contextlib.contextmanager
def _exclusive_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``<path>.lock`` (a file of its own, never replaced).

    The users file itself is replaced by rename on every write, so a lock on
    it would be on an inode that is about to vanish; the lock file stays put.
    """
    lock_path = path.with_name(path.name + ".lock")
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, _FILE_MODE)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


class UsersFile:
    """A JSON file of logins, each mapped to a pmkit user, with hashed passwords.

    Open one with `UsersFile.load`. Every mutating method validates first,
    then, holding an exclusive lock on ``<path>.lock``, re-reads the file,
    applies the change to what is on disk now and rewrites it atomically
    (mode 0600). Concurrent writers (several ``pmkit users`` commands) thus
    never lose each other's changes, and a call that raises leaves the file
    byte-for-byte unchanged.

    Parameters
    ----------
    path : str or os.PathLike
        Where the file lives (it need not exist until `save`).
    logins : mapping, optional
        ``{login: {"user": ..., "password": <hash>, "display_name": ..., "active": bool}}``,
        already validated (use `load` to read a file).
    """

    def __init__(self, path: str | os.PathLike[str], logins: Mapping[str, Any] | None = None):
        self.path = Path(path)
        self._logins: dict[str, dict[str, Any]] = {k: dict(v) for k, v in (logins or {}).items()}

    def __repr__(self) -> str:
        return f"UsersFile({str(self.path)!r}, {len(self._logins)} logins)"

    # -- reading ------------------------------------------------------------------
    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        *,
        missing_ok: bool = False,
        require_private: bool = True,
    ) -> UsersFile:
        """Read and validate a users file.

        Parameters
        ----------
        path : str or os.PathLike
            The JSON users file.
        missing_ok : bool, default False
            Return an empty `UsersFile` (written on the first change) when
            ``path`` does not exist, instead of raising.
        require_private : bool, default True
            Refuse a file whose mode lets group or others read or write it.
            ``pmkit users`` passes False: its next write restores mode 0600.

        Raises
        ------
        NotFoundError
            ``path`` does not exist (and not ``missing_ok``).
        ConfigError
            The file is not a version-1 users file (names the field and
            value), or it is readable by others (names the path and mode).
        InvalidIdError
            A login or user id is malformed.
        """
        p = Path(path)
        logins = cls._read(p, missing_ok=missing_ok, require_private=require_private)
        return cls(p, logins)

    @classmethod
    def _read(
        cls, p: Path, *, missing_ok: bool, require_private: bool
    ) -> dict[str, dict[str, Any]]:
        try:
            text = p.read_text(encoding="utf-8")
        except FileNotFoundError:
            if missing_ok:
                return {}
            raise NotFoundError("users file", str(p)) from None
        if require_private:
            _private_or_raise(p)
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError("users_file", str(p), f"is not valid JSON ({exc})") from None
        return cls._validate_doc(doc, str(p))

    def is_private(self) -> bool:
        """Whether the file on disk is missing or readable by its owner only."""
        try:
            return not file_mode(self.path) & 0o077
        except FileNotFoundError:
            return True

    @staticmethod
    def _validate_doc(doc: object, where: str) -> dict[str, dict[str, Any]]:
        if not isinstance(doc, dict):
            raise ConfigError("users_file", where, "must hold a JSON object")
        if doc.get("version") != USERS_FILE_VERSION:
            raise ConfigError(
                "version", doc.get("version"), f"users files must have version {USERS_FILE_VERSION}"
            )
        raw = doc.get("logins")
        if not isinstance(raw, dict):
            raise ConfigError("logins", type(raw).__name__, "must be an object of logins")
        logins: dict[str, dict[str, Any]] = {}
        for login, entry in raw.items():
            validate_user(login, "login")
            if not isinstance(entry, dict):
                raise ConfigError(f"logins.{login}", type(entry).__name__, "must be an object")
            validate_user(entry.get("user"), f"logins.{login}.user")
            if _parse_hash(entry.get("password")) is None:
                # The value may be a plain password someone typed in: do not echo it.
                raise ConfigError(
                    f"logins.{login}.password",
                    "<hidden>",
                    "must be a scrypt hash from 'pmkit users add' or 'pmkit users passwd'",
                )
            display = entry.get("display_name", "")
            if not isinstance(display, str):
                raise ConfigError(f"logins.{login}.display_name", display, "must be a string")
            active = entry.get("active", True)
            if not isinstance(active, bool):
                raise ConfigError(f"logins.{login}.active", active, "must be true or false")
            logins[login] = {
                "user": entry["user"],
                "password": entry["password"],
                "display_name": display,
                "active": active,
            }
        return logins

    def logins(self) -> list[str]:
        """All logins (active or not), sorted."""
        return sorted(self._logins)

    def __contains__(self, login: object) -> bool:
        return login in self._logins

    def __len__(self) -> int:
        return len(self._logins)

    def _entry(self, login: str) -> dict[str, Any]:
        try:
            return self._logins[login]
        except (KeyError, TypeError):
            raise NotFoundError("login", login) from None

    def user_of(self, login: str) -> str:
        """The pmkit user id that ``login`` acts as.

        Raises
        ------
        NotFoundError
            No such login.
        """
        return self._entry(login)["user"]

    def is_active(self, login: str) -> bool:
        """Whether ``login`` exists and is not deactivated."""
        entry = self._logins.get(login) if isinstance(login, str) else None
        return entry is not None and entry.get("active", True)

    def fingerprint(self, login: str) -> str | None:
        """What a session of ``login`` depends on: its user, hash and state (None if absent).

        A served session whose login's fingerprint changes (password changed,
        user remapped, deactivated, removed) is ended.
        """
        entry = self._logins.get(login) if isinstance(login, str) else None
        if entry is None:
            return None
        return f"{entry['user']}|{entry['password']}|{entry.get('active', True)}"

    def info(self, login: str) -> LoginInfo:
        """Login, pmkit user, display name and state of ``login`` (no hash).

        Raises
        ------
        NotFoundError
            No such login.
        """
        e = self._entry(login)
        return LoginInfo(login, e["user"], e["display_name"], e.get("active", True))

    def verify(self, login: str, password: str) -> str | None:
        """The pmkit user of ``login`` if ``password`` is right and the login is active.

        Unknown logins cost as much time as wrong passwords (a dummy hash is
        checked), so timing does not reveal which logins exist; a deactivated
        login is checked like any other and then refused.
        """
        entry = self._logins.get(login) if isinstance(login, str) else None
        if entry is None:
            verify_password(password if isinstance(password, str) else "", _dummy_hash())
            return None
        ok = verify_password(password, entry["password"])
        return entry["user"] if ok and entry.get("active", True) else None

    # -- changing ---------------------------------------------------------------------
    def add(
        self, login: str, password: str, user: str | None = None, display_name: str = ""
    ) -> LoginInfo:
        """Add a login and save the file.

        Parameters
        ----------
        login : str
            One lowercase segment (``a-z 0-9 _ . -``), e.g. ``"alice"``.
        password : str
            Plain password, 8 to 1024 characters; only its scrypt hash is stored.
        user : str, optional
            pmkit user the login acts as (default: the same as ``login``).
        display_name : str
            Name shown in front ends.

        Raises
        ------
        InvalidIdError
            ``login`` or ``user`` is malformed.
        ValidationError
            The password is too short or too long (the error does not echo it).
        AlreadyExistsError
            ``login`` is taken (in the file as it is on disk now).
        """
        validate_user(login, "login")
        user = login if user is None else user
        validate_user(user, "user")
        _check_display_name(display_name)
        _check_password(password)
        if login in self._logins:
            raise AlreadyExistsError("login", login)
        # Hash before taking the lock: scrypt is the slow part.
        entry = {
            "user": user,
            "password": hash_password(password),
            "display_name": display_name,
            "active": True,
        }

        def change(logins: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
            if login in logins:
                raise AlreadyExistsError("login", login)
            return {**logins, login: entry}

        self._change(change)
        return self.info(login)

    def remove(self, login: str) -> None:
        """Remove ``login`` and save the file.

        Raises
        ------
        NotFoundError
            No such login.
        """

        def change(logins: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
            if login not in logins:
                raise NotFoundError("login", login)
            return {k: v for k, v in logins.items() if k != login}

        self._change(change)

    def set_password(self, login: str, password: str) -> None:
        """Replace the password of ``login`` and save the file.

        Raises
        ------
        NotFoundError
            No such login.
        ValidationError
            The password is too short or too long.
        """
        self._entry(login)
        _check_password(password)
        encoded = hash_password(password)
        self._update(login, password=encoded)

    def deactivate(self, login: str) -> None:
        """Deactivate ``login`` and save the file: it can no longer log in.

        A running ``pmkit serve`` ends the login's sessions when it sees the
        change. Deactivating an inactive login changes nothing.

        Raises
        ------
        NotFoundError
            No such login.
        """
        self._update(login, active=False)

    def activate(self, login: str) -> None:
        """Let a deactivated ``login`` log in again and save the file.

        Raises
        ------
        NotFoundError
            No such login.
        """
        self._update(login, active=True)

    def _update(self, login: str, **fields: Any) -> None:
        def change(logins: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
            if login not in logins:
                raise NotFoundError("login", login)
            return {**logins, login: {**logins[login], **fields}}

        self._change(change)

    def _change(
        self, change: Callable[[dict[str, dict[str, Any]]], dict[str, dict[str, Any]]]
    ) -> None:
        # Read-modify-write under the lock, against the file as it is now:
        # another process may have changed it since this object was loaded.
        with _exclusive_lock(self.path):
            current = self._read(self.path, missing_ok=True, require_private=False)
            logins = change(current)
            self._write(logins)
            self._logins = logins  # adopt after writing: memory and disk agree

    def save(self) -> None:
        """Write the file atomically (temporary file + rename), mode 0600."""
        with _exclusive_lock(self.path):
            self._write(self._logins)

    def _write(self, logins: Mapping[str, Mapping[str, Any]]) -> None:
        doc = {"version": USERS_FILE_VERSION, "logins": {k: logins[k] for k in sorted(logins)}}
        data = (json.dumps(doc, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
        folder = self.path.parent
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=folder)
        try:
            # mkstemp creates 0600 already; fchmod states the intent whatever the umask.
            os.fchmod(fd, _FILE_MODE)
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise


# -- the users file against the registry ----------------------------------------------
def is_active_user(registry: Registry, user: str) -> bool:
    """Whether ``user`` exists in the registry's store and is active.

    The served app refuses logins whose pmkit user fails this check (pass
    ``functools.partial(is_active_user, registry)`` as ``is_allowed``).
    """
    return _user_status(registry, user) == "active"


def check_users(
    users_file: UsersFile, registry: Registry | Callable[[str], bool]
) -> dict[str, str]:
    """Logins the served app would refuse, with the reason.

    Parameters
    ----------
    users_file : UsersFile
        The logins.
    registry : Registry or callable
        The registry whose store holds the pmkit users, or a predicate
        ``user -> bool`` (e.g. the app's ``is_allowed``).

    Returns
    -------
    dict
        ``{login: reason}`` for every login whose pmkit user is missing or
        inactive; empty when every login can be used.
    """
    problems: dict[str, str] = {}
    for login in users_file.logins():
        user = users_file.user_of(login)
        if callable(registry):
            if not registry(user):
                problems[login] = f"pmkit user {user!r} is not allowed"
            continue
        status = _user_status(registry, user)
        if status is None:
            problems[login] = f"pmkit user {user!r} does not exist"
        elif status != "active":
            problems[login] = f"pmkit user {user!r} is {status}"
    return problems


def _user_status(registry: Registry, user: str) -> str | None:
    """The pmkit user's status, None when there is no such user (or the id is malformed)."""
    try:
        return str(registry.user_info(user)["status"])
    except (NotFoundError, ValidationError):
        return None
