"""API keys for `doxa serve`: each key belongs to one tenant and carries scopes.

Keys come from a keys file (`--keys FILE` or `DOXA_API_KEYS_FILE`) that holds only SHA-256
hashes, one key a line:

    # tenant   key hash                                                                 scopes
    acme       sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
    acme       sha256:60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752  read,write

and from `DOXA_API_KEYS` (`tenant:key[:scopes]`, comma separated, scopes joined by `+`; the
keys are hashed on load and the plain text dropped). Scopes are `read` (models, records,
explanations), `write` (events and outcomes) and `delete` (erase a user); a key without
them has all three. `doxa serve --new-key TENANT` prints a fresh key and its line.

Keys are random 32-byte tokens, so one SHA-256 is a sufficient hash; a presented key is
hashed and compared with every stored hash in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

from doxa.errors import ConfigError

Scope = Literal["read", "write", "delete"]
SCOPES: tuple[Scope, ...] = ("read", "write", "delete")
TENANT_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,31}$"
_TENANT = re.compile(TENANT_PATTERN)
_HASH = re.compile(r"^sha256:([0-9a-f]{64})$")
KEY_PREFIX = "doxa_"


class Principal(BaseModel):
    """Who is calling: the tenant the key belongs to and what it may do."""

    model_config = ConfigDict(frozen=True)

    tenant: str
    scopes: frozenset[Scope]


class _Entry(BaseModel):
    model_config = ConfigDict(frozen=True)

    digest: bytes
    principal: Principal


def hash_key(key: str) -> str:
    """The form a keys file stores: `sha256:<hex>`."""
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    """A fresh random API key (256 bits)."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


class KeyRing:
    """The configured keys; `authenticate(key)` answers who holds it, or None."""

    def __init__(self, entries: Iterable[tuple[str, str, Iterable[Scope]]] = ()) -> None:
        """`entries` are (tenant, `sha256:<hex>` hash, scopes)."""
        self._entries: list[_Entry] = []
        for tenant, hashed, scopes in entries:
            self.add_hashed(tenant, hashed, scopes)

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def tenants(self) -> set[str]:
        return {e.principal.tenant for e in self._entries}

    def add_hashed(self, tenant: str, hashed: str, scopes: Iterable[Scope] = SCOPES) -> None:
        if not _TENANT.fullmatch(tenant):
            raise ConfigError(f"tenant '{tenant}' must match {TENANT_PATTERN}")
        found = _HASH.fullmatch(hashed)
        if found is None:
            raise ConfigError(f"key hash for tenant '{tenant}' must be sha256:<64 hex digits>")
        chosen = frozenset(scopes)
        if not chosen:
            raise ConfigError(f"a key of tenant '{tenant}' has no scopes")
        self._entries.append(_Entry(digest=bytes.fromhex(found.group(1)),
                                    principal=Principal(tenant=tenant, scopes=chosen)))

    def add_key(self, tenant: str, key: str, scopes: Iterable[Scope] = SCOPES) -> None:
        """Add a plain-text key; only its hash is kept."""
        if len(key) < 16:
            raise ConfigError(f"a key of tenant '{tenant}' is shorter than 16 characters")
        self.add_hashed(tenant, hash_key(key), scopes)

    def authenticate(self, key: str) -> Principal | None:
        """The key's holder, or None. Every entry is compared, so timing says nothing."""
        digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()
        found: Principal | None = None
        for entry in self._entries:
            if hmac.compare_digest(digest, entry.digest):
                found = entry.principal
        return found

    @classmethod
    def from_file(cls, path: str | Path) -> KeyRing:
        """Read a keys file: `tenant sha256:<hex> [scopes]` a line, `#` comments."""
        ring = cls()
        p = Path(path)
        try:
            text = p.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read keys file {p}: {exc.strerror}") from None
        for lineno, line in enumerate(text.splitlines(), start=1):
            fields = line.split("#", 1)[0].split()
            if not fields:
                continue
            if len(fields) not in (2, 3):
                raise ConfigError(f"{p} line {lineno}: expected 'tenant sha256:<hex> [scopes]'")
            try:
                scopes = parse_scopes(fields[2]) if len(fields) == 3 else SCOPES
                ring.add_hashed(fields[0], fields[1], scopes)
            except ConfigError as exc:
                raise ConfigError(f"{p} line {lineno}: {exc}") from None
        return ring

    @classmethod
    def from_env_value(cls, value: str) -> KeyRing:
        """Read `DOXA_API_KEYS`: `tenant:key[:scopes]`, comma separated."""
        ring = cls()
        for n, item in enumerate((i.strip() for i in value.split(",")), start=1):
            if not item:
                continue
            parts = item.split(":")
            if len(parts) not in (2, 3):
                raise ConfigError(f"DOXA_API_KEYS item {n}: expected tenant:key[:scopes]")
            scopes = parse_scopes(parts[2].replace("+", ",")) if len(parts) == 3 else SCOPES
            try:
                ring.add_key(parts[0], parts[1], scopes)
            except ConfigError as exc:
                raise ConfigError(f"DOXA_API_KEYS item {n}: {exc}") from None
        return ring

    def extend(self, other: KeyRing) -> KeyRing:
        self._entries += other._entries
        return self


def parse_scopes(text: str) -> tuple[Scope, ...]:
    """`read,write` → ("read", "write"); an unknown scope is a `ConfigError`."""
    chosen: list[Scope] = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        known = next((s for s in SCOPES if s == part), None)
        if known is None:
            raise ConfigError(f"unknown scope '{part}'; scopes are {', '.join(SCOPES)}")
        chosen.append(known)
    return tuple(chosen)


def load_keys(file: str | Path | None, env: Mapping[str, str]) -> KeyRing:
    """The keys `doxa serve` uses: the file (or `DOXA_API_KEYS_FILE`) plus `DOXA_API_KEYS`."""
    ring = KeyRing()
    path = file or env.get("DOXA_API_KEYS_FILE")
    if path:
        ring.extend(KeyRing.from_file(path))
    if env.get("DOXA_API_KEYS"):
        ring.extend(KeyRing.from_env_value(env["DOXA_API_KEYS"]))
    return ring
