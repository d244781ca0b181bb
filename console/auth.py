"""Who may use the console, and what each role may do.

* **Users** come from a JSON file (``urbanbrain console user add`` writes it) or from the
  environment (``URBANBRAIN_CONSOLE_USERS``); passwords are stored as argon2id hashes
  (argon2-cffi, the reference implementation's binding, with its RFC 9106 defaults). There
  is no built-in account: with no user and no trusted proxy, the console refuses to start.
* **Sessions** are random 256-bit tokens in an HttpOnly, SameSite=Strict cookie, kept in
  the console's memory (a restart logs everyone out; nothing to steal from disk).
* **CSRF:** every state-changing request must carry the session's own random token in the
  ``X-CSRF-Token`` header (synchronizer token), and its Origin, when sent, must be ours.
* **Behind an authenticating reverse proxy** (oauth2-proxy, Authelia, ...), the user name
  may come from a header, but only from the proxy's addresses.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import os
import secrets
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

ROLES = ("viewer", "operator", "admin")
#: What each role may do (the audit actions); viewers only look.
PERMISSIONS: dict[str, frozenset[str]] = {
    "viewer": frozenset(),
    "operator": frozenset({"ack", "unack", "assign", "comment", "silence", "expire"}),
    "admin": frozenset({"ack", "unack", "assign", "comment", "silence", "expire", "resolve"}),
}
_hasher = PasswordHasher()
#: Verified against when the user is unknown, so a wrong name costs as long as a wrong
#: password (no user enumeration by timing).
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


def may(role: str, action: str) -> bool:
    return action in PERMISSIONS.get(role, frozenset())


def hash_password(password: str) -> str:
    if len(password) < 8:
        raise ValueError("a password needs at least 8 characters")
    return _hasher.hash(password)


@dataclass(frozen=True, slots=True)
class User:
    name: str
    role: str
    password_hash: str = ""  # empty: may only come in through the trusted proxy

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"user {self.name!r}: unknown role {self.role!r} "
                             f"(one of {', '.join(ROLES)})")
        if not self.name or any(c in self.name for c in ":;\n\r\t "):
            raise ValueError(f"bad user name {self.name!r}")
        if self.password_hash and not self.password_hash.startswith("$argon2"):
            raise ValueError(f"user {self.name!r}: password must be an argon2 hash "
                             "(urbanbrain console user add), never plain text")


class UserStore:
    """Users by name."""

    def __init__(self, users: Iterable[User] = ()) -> None:
        self.users = {u.name: u for u in users}

    @classmethod
    def load(cls, path: Path | None, env_value: str | None) -> UserStore:
        users: list[User] = []
        if path is not None and path.exists():
            doc = json.loads(path.read_text())
            users += [User(u["name"], u["role"], u.get("password_hash", ""))
                      for u in doc.get("users", [])]
        if env_value:
            for entry in env_value.split(";"):
                entry = entry.strip()
                if not entry:
                    continue
                name, sep, rest = entry.partition(":")
                role, sep2, pw_hash = rest.partition(":")
                if not (sep and sep2):
                    raise ValueError("URBANBRAIN_CONSOLE_USERS: entries are name:role:hash")
                users.append(User(name, role, pw_hash))
        return cls(users)

    def __len__(self) -> int:
        return len(self.users)

    def get(self, name: str) -> User | None:
        return self.users.get(name)

    def authenticate(self, name: str, password: str) -> User | None:
        """The user if the password is theirs; None otherwise (same cost either way)."""
        user = self.users.get(name)
        stored = user.password_hash if user is not None and user.password_hash else _DUMMY_HASH
        try:
            _hasher.verify(stored, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return None
        return user if user is not None and user.password_hash else None

    def save(self, path: Path) -> None:
        """Write the file (mode 0600: hashes are not for everyone's eyes either)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump({"users": [{"name": u.name, "role": u.role,
                                  "password_hash": u.password_hash}
                                 for u in sorted(self.users.values(), key=lambda u: u.name)]},
                      fh, indent=1)
        os.replace(tmp, path)

    def put(self, user: User) -> None:
        self.users[user.name] = user

    def remove(self, name: str) -> bool:
        return self.users.pop(name, None) is not None


@dataclass(slots=True)
class Session:
    token: str
    user: str
    role: str
    csrf: str
    expires: float
    via_proxy: bool = False


class SessionStore:
    """Logged-in sessions, in memory."""

    def __init__(self, ttl_s: float) -> None:
        self.ttl_s = ttl_s
        self._by_token: dict[str, Session] = {}

    def create(self, user: str, role: str, *, via_proxy: bool = False) -> Session:
        self._expire()
        s = Session(secrets.token_urlsafe(32), user, role, secrets.token_urlsafe(32),
                    time.monotonic() + self.ttl_s, via_proxy)
        self._by_token[s.token] = s
        return s

    def get(self, token: str | None) -> Session | None:
        if not token:
            return None
        s = self._by_token.get(token)
        if s is None or s.expires < time.monotonic():
            self._by_token.pop(token or "", None)
            return None
        return s

    def drop(self, token: str | None) -> None:
        self._by_token.pop(token or "", None)

    def _expire(self) -> None:
        now = time.monotonic()
        for t in [t for t, s in self._by_token.items() if s.expires < now]:
            del self._by_token[t]


def csrf_ok(session: Session, sent: str | None) -> bool:
    return bool(sent) and hmac.compare_digest(session.csrf, sent or "")


class ProxyTrust:
    """Which peers may vouch for a user with the proxy header."""

    def __init__(self, header: str | None, networks: str) -> None:
        self.header = header
        self.networks = [ipaddress.ip_network(n.strip(), strict=False)
                         for n in networks.split(",") if n.strip()]

    def user_from(self, peer: str | None, headers: Mapping[str, str]) -> str | None:
        """The proxy's user, if the header is configured, present and from a trusted peer.
        Raises PermissionError when an untrusted peer sends the header (a spoof attempt)."""
        if not self.header:
            return None
        value = headers.get(self.header)
        if value is None:
            return None
        try:
            ip = ipaddress.ip_address(peer or "")
        except ValueError:
            ip = None
        if ip is None or not any(ip in n for n in self.networks):
            raise PermissionError(f"{self.header} from untrusted peer {peer}")
        return value.strip() or None
