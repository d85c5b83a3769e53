"""load_signer: keystore (Ethereum v3 format, as starkli writes), private-key secret
file, and the operator errors — none of which may contain key material."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from eth_keyfile.keyfile import create_keyfile_json
from pydantic import SecretStr

from keeper.chain import SignerError, load_signer
from keeper.core.config import ChainConfig, Secrets, load_secrets

PRIVATE_KEY = 0x71D7BB07B9A64F6F78AC4C816AFF4DA9
PASSWORD = "correct horse battery staple"


def config(keystore: Path | None = None) -> ChainConfig:
    return ChainConfig(
        rpc_url="http://127.0.0.1:5050",
        chain_id="SN_SEPOLIA",
        router_address="0x1",
        risk_engine_address="0x2",
        account_address="0x3",
        keystore_path=keystore,
    )


def write_keystore(tmp_path: Path, key: int = PRIVATE_KEY, password: str = PASSWORD) -> Path:
    # scrypt with a small work factor: the format is what matters here, not its cost.
    keyfile = create_keyfile_json(key.to_bytes(32, "big"), password, kdf="scrypt", iterations=2**10)
    path = tmp_path / "keeper.keystore.json"
    path.write_text(json.dumps(keyfile))
    return path


def assert_no_key_material(message: str) -> None:
    lowered = message.lower()
    for form in (hex(PRIVATE_KEY), f"{PRIVATE_KEY:x}", f"{PRIVATE_KEY:064x}", str(PRIVATE_KEY)):
        assert form.lower() not in lowered
    assert PASSWORD not in message


def test_keystore_with_its_password(tmp_path: Path) -> None:
    secrets = Secrets(keystore_password=SecretStr(PASSWORD))
    pair = load_signer(config(write_keystore(tmp_path)), secrets)
    assert pair.private_key == PRIVATE_KEY


def test_private_key_from_a_secret_file(tmp_path: Path) -> None:
    key_file = tmp_path / "account_private_key"
    key_file.write_text(f"{PRIVATE_KEY:#066x}\n")
    secrets = load_secrets({"KEEPER_ACCOUNT_PRIVATE_KEY_FILE": str(key_file)})
    assert load_signer(config(), secrets).private_key == PRIVATE_KEY


def test_wrong_password_names_the_problem_not_the_key(tmp_path: Path) -> None:
    path = write_keystore(tmp_path)
    secrets = Secrets(keystore_password=SecretStr("not the password at all"))
    with pytest.raises(SignerError, match="wrong password") as caught:
        load_signer(config(path), secrets)
    assert caught.value.exit_code == 78
    assert_no_key_material(str(caught.value))
    assert "not the password at all" not in str(caught.value)


def test_no_key_configured() -> None:
    with pytest.raises(SignerError, match="no account key configured"):
        load_signer(config(), Secrets())


def test_keystore_without_password(tmp_path: Path) -> None:
    with pytest.raises(SignerError, match="keystore_password secret is not"):
        load_signer(config(write_keystore(tmp_path)), Secrets())


def test_both_sources_configured_is_refused(tmp_path: Path) -> None:
    secrets = Secrets(
        keystore_password=SecretStr(PASSWORD), account_private_key=SecretStr(hex(PRIVATE_KEY))
    )
    with pytest.raises(SignerError, match="remove one") as caught:
        load_signer(config(write_keystore(tmp_path)), secrets)
    assert_no_key_material(str(caught.value))


def test_missing_keystore_file(tmp_path: Path) -> None:
    secrets = Secrets(keystore_password=SecretStr(PASSWORD))
    with pytest.raises(SignerError, match="cannot read keystore"):
        load_signer(config(tmp_path / "absent.json"), secrets)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "is not JSON"),
        ('{"version": 3}', "no 'crypto' section"),
        ('{"version": 3, "crypto": {"kdf": "scrypt"}}', "malformed"),
    ],
)
def test_unusable_keystore(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "keystore.json"
    path.write_text(content)
    with pytest.raises(SignerError, match=message):
        load_signer(config(path), Secrets(keystore_password=SecretStr(PASSWORD)))


@pytest.mark.parametrize("value", ["0xZZZZZZZZZZZZ", "not a key at all", "0x" + "f" * 64])
def test_bad_private_key_is_reported_without_echoing_it(value: str) -> None:
    with pytest.raises(SignerError, match="account_private_key") as caught:
        load_signer(config(), Secrets(account_private_key=SecretStr(value)))
    assert value.lower() not in str(caught.value).lower()
