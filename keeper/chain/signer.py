"""The keeper account's key pair: from an encrypted keystore (Ethereum v3 format, as
starkli writes) or from the account_private_key secret. Errors never contain key material."""

from __future__ import annotations

import json
import re
from pathlib import Path

from starknet_py.net.signer.key_pair import KeyPair

from keeper.chain.codec import CURVE_ORDER
from keeper.chain.errors import SignerError
from keeper.core.config import ChainConfig, Secrets


def load_signer(cfg: ChainConfig, secrets: Secrets) -> KeyPair:
    """The account's key pair, from the encrypted keystore or the private-key secret.

    Exactly one source must be configured. Errors never contain key material.
    """
    has_key = secrets.account_private_key is not None
    if cfg.keystore_path is not None and has_key:
        raise SignerError(
            f"both a keystore ({cfg.keystore_path}) and the account_private_key secret are "
            "configured: remove one, so it is clear which key signs"
        )
    if cfg.keystore_path is not None:
        key = _key_from_keystore(cfg.keystore_path, secrets)
    elif secrets.account_private_key is not None:
        key = _parse_private_key(
            secrets.account_private_key.get_secret_value(), "the account_private_key secret"
        )
    else:
        raise SignerError(
            "no account key configured: set chain.keystore_path (and the keystore_password "
            "secret, KEEPER_KEYSTORE_PASSWORD_FILE) or provide the account_private_key secret "
            "(KEEPER_ACCOUNT_PRIVATE_KEY_FILE)"
        )
    return KeyPair.from_private_key(key)


def load_keystore(path: Path, secrets: Secrets) -> KeyPair:
    """The key pair of an encrypted keystore whose password is the keystore_password
    secret (``obsqra-keeper deploy`` signs this way, without a keeper config)."""
    return KeyPair.from_private_key(_key_from_keystore(path, secrets))


def _key_from_keystore(path: Path, secrets: Secrets) -> int:
    from eth_keyfile.keyfile import decode_keyfile_json

    if secrets.keystore_password is None:
        raise SignerError(
            f"keystore {path} is configured but the keystore_password secret is not: "
            "set KEEPER_KEYSTORE_PASSWORD_FILE or the systemd credential 'keystore_password'"
        )
    try:
        raw = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SignerError(f"cannot read keystore {path}: {exc.strerror}") from None
    try:
        keystore = json.loads(raw)
    except ValueError:
        raise SignerError(
            f"keystore {path} is not JSON: expected an encrypted keystore as written by "
            "`starkli signer keystore new` (Ethereum keystore v3 format)"
        ) from None
    if not isinstance(keystore, dict) or "crypto" not in {str(k).lower() for k in keystore}:
        raise SignerError(
            f"keystore {path} has no 'crypto' section: expected an encrypted keystore "
            "(Ethereum keystore v3 format, as starkli writes)"
        )
    try:
        secret = decode_keyfile_json(keystore, secrets.keystore_password.get_secret_value())
    except ValueError as exc:
        if "mismatch" in str(exc).lower():
            raise SignerError(
                f"wrong password for keystore {path} (the keystore_password secret does "
                "not decrypt it)"
            ) from None
        raise SignerError(f"keystore {path} cannot be decrypted: {_safe(exc)}") from None
    except (KeyError, TypeError, NotImplementedError) as exc:
        raise SignerError(
            f"keystore {path} is malformed or of an unsupported version ({type(exc).__name__}"
            f" {_safe(exc)}): expected version 3 with scrypt or pbkdf2"
        ) from None
    return _parse_private_key(secret, f"the key in keystore {path}")


def _safe(exc: Exception) -> str:
    # eth-keyfile messages name fields and algorithms, never key bytes; cut anyway.
    return str(exc)[:120]


def _parse_private_key(value: str | bytes, where: str) -> int:
    if isinstance(value, bytes):
        number = int.from_bytes(value, "big")
    else:
        text = value.strip().lower()
        digits = text[2:] if text.startswith("0x") else text
        if not digits or not re.fullmatch(r"[0-9a-f]+", digits):
            raise SignerError(f"{where} is not a hex number (expected 0x followed by hex digits)")
        number = int(digits, 16)
    if not 0 < number < CURVE_ORDER:
        raise SignerError(f"{where} is out of range for a Stark private key")
    return number
