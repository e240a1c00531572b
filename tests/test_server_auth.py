"""API keys: a keys file of hashes, `DOXA_API_KEYS`, scopes, and tenant namespacing."""

from __future__ import annotations

from pathlib import Path

import pytest

from doxa.errors import ConfigError
from doxa.server.auth import KeyRing, hash_key, load_keys, new_key
from doxa.server.tenancy import scoped

KEY_A = "acme-key-0123456789abcdef"
KEY_B = "globex-key-0123456789abcdef"


def test_a_keys_file_holds_hashes_and_names_the_tenant_and_scopes(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.write_text(f"""# production keys
acme    {hash_key(KEY_A)}                 # the event pipeline
globex  {hash_key(KEY_B)}  read
""", encoding="utf-8")
    ring = KeyRing.from_file(keys)
    acme, globex = ring.authenticate(KEY_A), ring.authenticate(KEY_B)
    assert acme is not None and acme.tenant == "acme"
    assert acme.scopes == {"read", "write", "delete"}
    assert globex is not None and globex.tenant == "globex" and globex.scopes == {"read"}
    assert ring.authenticate("acme-key-0123456789abcdeX") is None
    assert ring.authenticate("") is None and ring.tenants == {"acme", "globex"}


@pytest.mark.parametrize(("text", "message"), [
    ("acme deadbeef", "line 2: key hash for tenant 'acme' must be sha256:<64 hex digits>"),
    (f"Acme {hash_key(KEY_A)}", "line 2: tenant 'Acme' must match"),
    (f"acme/x {hash_key(KEY_A)}", "line 2: tenant 'acme/x' must match"),
    (f"acme {hash_key(KEY_A)} read,admin", "line 2: unknown scope 'admin'"),
    (f"acme {hash_key(KEY_A)} read extra", "line 2: expected 'tenant sha256:<hex> [scopes]'"),
])
def test_a_bad_keys_file_line_is_named(tmp_path: Path, text: str, message: str) -> None:
    keys = tmp_path / "keys"
    keys.write_text(f"# header\n{text}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="line 2") as exc:
        KeyRing.from_file(keys)
    assert message in str(exc.value)


def test_plain_keys_from_the_environment_are_hashed(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.write_text(f"acme {hash_key(KEY_A)}\n", encoding="utf-8")
    ring = load_keys(None, {"DOXA_API_KEYS_FILE": str(keys),
                            "DOXA_API_KEYS": f"globex:{KEY_B}:read+write, other:{KEY_A}2"})
    assert len(ring) == 3
    principal = ring.authenticate(KEY_B)
    assert principal is not None and principal.scopes == {"read", "write"}
    assert KEY_B not in repr(vars(ring))  # only the digest is kept


@pytest.mark.parametrize(("value", "message"), [
    ("acme", "item 1: expected tenant:key"),
    ("acme:short", "shorter than 16"),
    (f"acme:{KEY_A}:sudo", "unknown scope 'sudo'"),
])
def test_a_bad_environment_value_is_named(value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        KeyRing.from_env_value(value)


def test_a_missing_keys_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read keys file"):
        load_keys(tmp_path / "nope", {})


def test_new_keys_are_long_and_distinct() -> None:
    a, b = new_key(), new_key()
    assert a != b and a.startswith("doxa_") and len(a) >= 40
    assert hash_key(a).startswith("sha256:") and len(hash_key(a)) == 71


def test_a_user_id_cannot_leave_its_tenant() -> None:
    assert scoped("acme", "u-42") == "acme/u-42"
    for bad in ("globex/u-42", "../globex", "", "x" * 129, " u", "u\n"):
        with pytest.raises(ValueError):
            scoped("acme", bad)
