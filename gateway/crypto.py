"""Secrets at rest: what Leadgate must keep but must not keep in clear.

Endpoint signing secrets (current and previous), Ed25519 private keys and inbound source
secrets are stored encrypted with Fernet (AES-128-CBC with an HMAC-SHA256 tag, from the
`cryptography` package) under the keys in LEADGATE_SECRET_KEYS: the first key encrypts, every
key decrypts, so keys can be rotated without downtime (`leadgate secrets rotate`).

A stored value reads `enc1:<key id>:<Fernet token>`. The key id (8 hex digits of a SHA-256 of
the key) says which key decrypts it, so a value under a key that is no longer configured fails
with a message naming that key's id, and rotation skips what is already under the first key.
A value without the prefix is a clear-text row written before encryption; it is read as it is
until `leadgate migrate` or `leadgate secrets rotate` encrypts it.

`seal`/`unseal` do the same for bytes (a stored idempotent response that holds a secret): a
sealed body starts with `enc1:`, so a stored body says whether it is sealed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Sequence
from typing import TYPE_CHECKING

from cryptography.fernet import Fernet, InvalidToken

if TYPE_CHECKING:  # settings validate keys with parse_key, so this module cannot import them
    from gateway.settings import Settings

PREFIX = "enc1:"
SEALED_PREFIX = PREFIX.encode()
# Key ids are short: they only tell configured keys apart, and say nothing about a key.
KEY_ID_HEX = 8
KEY_BYTES = 32
GENERATE_HINT = (
    'python -c "import base64,os; print(base64.urlsafe_b64encode(os.urandom(32)).decode())"'
)


class SecretKeysMissing(ValueError):
    """LEADGATE_SECRET_KEYS is not set; the message says how to make a key."""


class UndecryptableSecret(ValueError):
    """A stored secret cannot be decrypted with the configured keys; the message says why."""


def parse_key(key: str, position: int) -> bytes:
    """The 32 raw bytes of a URL-safe base64 key; ValueError naming its position, not its value."""
    try:
        raw = base64.urlsafe_b64decode(key.encode("ascii"))
    except (binascii.Error, UnicodeEncodeError, ValueError) as e:
        raise ValueError(f"key {position} is not URL-safe base64") from e
    if len(raw) != KEY_BYTES:
        raise ValueError(f"key {position} is {len(raw)} bytes; each key must be {KEY_BYTES}")
    return raw


def key_id(raw: bytes) -> str:
    return hashlib.sha256(b"leadgate secret key id:" + raw).hexdigest()[:KEY_ID_HEX]


def generate_key() -> str:
    """A new key, as LEADGATE_SECRET_KEYS takes it."""
    return Fernet.generate_key().decode("ascii")


class Cipher:
    """Encrypts under the first key, decrypts under any; built once from settings."""

    def __init__(self, keys: Sequence[str]) -> None:
        if not keys:
            raise SecretKeysMissing(
                "LEADGATE_SECRET_KEYS is not set: Leadgate encrypts signing secrets with it. "
                f"Make a key with\n  {GENERATE_HINT}\nand set LEADGATE_SECRET_KEYS to it."
            )
        self._keys: dict[str, Fernet] = {}
        for position, key in enumerate(keys, start=1):
            raw = parse_key(key, position)
            self._keys.setdefault(key_id(raw), Fernet(base64.urlsafe_b64encode(raw)))
        self.primary_id = next(iter(self._keys))
        self._primary = self._keys[self.primary_id]

    @classmethod
    def from_settings(cls, settings: Settings) -> Cipher:
        return cls([k.get_secret_value() for k in settings.secret_keys])

    def encrypt(self, value: bytes | str) -> str:
        data = value.encode() if isinstance(value, str) else value
        return f"{PREFIX}{self.primary_id}:{self._primary.encrypt(data).decode('ascii')}"

    def decrypt(self, stored: str) -> bytes:
        """The clear bytes of a stored value (a value still in clear is returned as it is)."""
        if not stored.startswith(PREFIX):
            return stored.encode()
        kid, _, token = stored[len(PREFIX) :].partition(":")
        fernet = self._keys.get(kid)
        if fernet is None:
            raise UndecryptableSecret(
                f"a secret is encrypted with key {kid}, which LEADGATE_SECRET_KEYS does not hold"
            )
        try:
            return fernet.decrypt(token.encode("ascii"))
        except (InvalidToken, UnicodeEncodeError) as e:
            raise UndecryptableSecret(f"a secret under key {kid} does not decrypt") from e

    def decrypt_text(self, stored: str) -> str:
        return self.decrypt(stored).decode()

    def is_current(self, stored: str) -> bool:
        """Whether a stored value is already encrypted under the first key."""
        return stored.startswith(f"{PREFIX}{self.primary_id}:")

    def reencrypt(self, stored: str) -> str:
        """The same secret, encrypted under the first key (a clear value gets encrypted)."""
        return self.encrypt(self.decrypt(stored))

    def seal(self, body: bytes) -> bytes:
        """A stored response body that holds a secret, encrypted; `unseal` gives it back."""
        return self.encrypt(body).encode("ascii")

    def unseal(self, stored: bytes) -> bytes:
        """A stored body as it was sealed; a body that was never sealed passes through."""
        if not is_sealed(stored):
            return stored
        return self.decrypt(stored.decode("ascii"))


def is_sealed(stored: bytes) -> bool:
    return stored.startswith(SEALED_PREFIX)


def is_encrypted(stored: str) -> bool:
    return stored.startswith(PREFIX)
