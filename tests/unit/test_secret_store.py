"""The encrypted secret store: values sealed one by one, bound to their names, opened only with
their key, and sealed again whole on rotation."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from soar.connectors.secrets import (
    SecretStore,
    SecretStoreError,
    key_id,
    new_key,
    read_key,
    write_key,
)

VALUE = "canary-vault-9c1f-s3cr3t"


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "secrets.json"


def test_a_secret_round_trips_and_the_file_never_holds_it(path: Path) -> None:
    key = new_key()
    SecretStore(path, key).set("ldap.bind_password", VALUE)
    reopened = SecretStore(path, key)
    assert reopened.get("ldap.bind_password") == VALUE
    assert reopened.values() == {"ldap.bind_password": VALUE}
    assert [e.name for e in reopened.names()] == ["ldap.bind_password"]
    text = path.read_text()
    assert VALUE not in text
    assert base64.b64encode(VALUE.encode()).decode() not in text
    assert json.loads(text)["key_id"] == key_id(key)
    assert path.stat().st_mode & 0o777 == 0o600


def test_two_seals_of_one_value_differ(path: Path) -> None:
    store = SecretStore(path, new_key())
    store.set("edr.client_secret", VALUE)
    first = json.loads(path.read_text())["secrets"]["edr.client_secret"]
    store.set("edr.client_secret", VALUE)
    second = json.loads(path.read_text())["secrets"]["edr.client_secret"]
    assert first["nonce"] != second["nonce"]
    assert first["sealed"] != second["sealed"]


def test_the_wrong_key_is_named_not_tried(path: Path) -> None:
    key, other = new_key(), new_key()
    SecretStore(path, key).set("ldap.bind_password", VALUE)
    with pytest.raises(SecretStoreError, match=f"sealed with key {key_id(key)}.*{key_id(other)}"):
        SecretStore(path, other)


def test_an_altered_or_renamed_entry_does_not_open(path: Path) -> None:
    key = new_key()
    store = SecretStore(path, key)
    store.set("ldap.bind_password", VALUE)
    store.set("edr.client_secret", "another")
    document = json.loads(path.read_text())
    entries = document["secrets"]
    # an entry moved under another name: its name is the associated data, so it fails
    entries["edr.client_secret"] = dict(entries["ldap.bind_password"])
    sealed = bytearray(base64.b64decode(entries["ldap.bind_password"]["sealed"]))
    sealed[0] ^= 1  # one bit of the ciphertext
    entries["ldap.bind_password"]["sealed"] = base64.b64encode(bytes(sealed)).decode()
    path.write_text(json.dumps(document))
    reopened = SecretStore(path, key)
    for name in ("ldap.bind_password", "edr.client_secret"):
        with pytest.raises(SecretStoreError, match="altered, or moved"):
            reopened.get(name)


def test_rotation_seals_everything_again_under_the_new_key(path: Path) -> None:
    old, new = new_key(), new_key()
    store = SecretStore(path, old)
    store.set("ldap.bind_password", VALUE)
    store.set("ticket.api_key", "k-2")
    before = json.loads(path.read_text())["secrets"]
    store.rotate(new)
    after = json.loads(path.read_text())["secrets"]
    assert {n: e["updated"] for n, e in after.items()} == {
        n: e["updated"] for n, e in before.items()
    }
    assert all(after[n]["sealed"] != before[n]["sealed"] for n in before)
    assert SecretStore(path, new).values() == {"ldap.bind_password": VALUE, "ticket.api_key": "k-2"}
    with pytest.raises(SecretStoreError, match="sealed with key"):
        SecretStore(path, old)
    assert store.get("ticket.api_key") == "k-2"  # the open store goes on with the new key
    assert [p.name for p in path.parent.iterdir()] == ["secrets.json"]  # no temporary left


def test_names_and_values_are_checked(path: Path) -> None:
    store = SecretStore(path, new_key())
    for bad in ("bind_password", "LDAP.bind", "ldap.bind-password", "ldap.", "a.b.c"):
        with pytest.raises(SecretStoreError, match=r"`connector\.name`"):
            store.set(bad, VALUE)
    with pytest.raises(SecretStoreError, match="empty"):
        store.set("ldap.bind_password", "")
    assert not path.exists()
    assert store.delete("ldap.bind_password") is False


def test_a_deleted_secret_is_gone(path: Path) -> None:
    key = new_key()
    store = SecretStore(path, key)
    store.set("ldap.bind_password", VALUE)
    assert store.delete("ldap.bind_password") is True
    assert SecretStore(path, key).values() == {}
    with pytest.raises(SecretStoreError, match="no secret"):
        store.get("ldap.bind_password")


def test_keys_come_from_a_file_or_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = new_key()
    write_key(tmp_path / "k", key)
    assert (tmp_path / "k").stat().st_mode & 0o777 == 0o600
    assert read_key(file=tmp_path / "k") == key
    with pytest.raises(SecretStoreError, match="never overwritten"):
        write_key(tmp_path / "k", new_key())
    monkeypatch.setenv("SOAR_SECRETS_KEY", base64.b64encode(key).decode())
    assert read_key(env="SOAR_SECRETS_KEY") == key
    monkeypatch.setenv("SOAR_SECRETS_KEY", "not base64!")
    with pytest.raises(SecretStoreError, match="not base64"):
        read_key(env="SOAR_SECRETS_KEY")
    monkeypatch.setenv("SOAR_SECRETS_KEY", base64.b64encode(b"short").decode())
    with pytest.raises(SecretStoreError, match="5 bytes, not 32"):
        read_key(env="SOAR_SECRETS_KEY")
    monkeypatch.delenv("SOAR_SECRETS_KEY")
    with pytest.raises(SecretStoreError, match="no secrets key"):
        read_key(env="SOAR_SECRETS_KEY")


def test_a_file_that_is_not_a_store_is_refused(path: Path) -> None:
    path.write_text('{"hello": "world"}')
    with pytest.raises(SecretStoreError, match="not a secret store"):
        SecretStore(path, new_key())
