"""Authenticated encryption for credentials at rest (Fernet: AES-128-CBC + HMAC-SHA256).

Keys come from ``MAILWEB_TOKEN_KEYS``, newest first: the newest encrypts, all of them decrypt,
so an operator adds a key in front, runs ``manage.py rotate_token_keys`` and then drops the old
one, without downtime. In development with no keys set, one key is derived from SECRET_KEY so a
developer needs no setup; production refuses to start without real keys (settings).
"""

import base64
import hashlib
from functools import cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


class DecryptionError(Exception):
    """Stored credentials could not be decrypted with any configured key."""


@cache
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    try:
        return MultiFernet([Fernet(key.encode()) for key in keys])
    except (ValueError, TypeError):
        raise ImproperlyConfigured(
            "MAILWEB_TOKEN_KEYS must be comma-separated Fernet keys (32 url-safe base64 bytes "
            "each); generate one with: python -c 'from cryptography.fernet import Fernet; "
            "print(Fernet.generate_key().decode())'"
        ) from None


def configured_keys() -> tuple[str, ...]:
    keys = tuple(settings.MAILWEB_TOKEN_KEYS)
    if keys:
        return keys
    derived = base64.urlsafe_b64encode(
        hashlib.sha256(f"mailweb-dev-vault:{settings.SECRET_KEY}".encode()).digest()
    )
    return (derived.decode(),)


def encrypt(plaintext: bytes) -> bytes:
    return _fernet(configured_keys()).encrypt(plaintext)


def decrypt(ciphertext: bytes) -> bytes:
    try:
        return _fernet(configured_keys()).decrypt(bytes(ciphertext))
    except InvalidToken:
        raise DecryptionError(
            "stored credentials cannot be decrypted with MAILWEB_TOKEN_KEYS "
            "(was a key removed too early?)"
        ) from None


def reencrypt(ciphertext: bytes) -> bytes:
    """The same plaintext under the newest key (``MultiFernet.rotate`` keeps the timestamp)."""
    try:
        return _fernet(configured_keys()).rotate(bytes(ciphertext))
    except InvalidToken:
        raise DecryptionError(
            "stored credentials cannot be decrypted with MAILWEB_TOKEN_KEYS"
        ) from None


def is_current(ciphertext: bytes) -> bool:
    """Whether ``ciphertext`` is already encrypted under the newest key."""
    newest = Fernet(configured_keys()[0].encode())
    try:
        newest.decrypt(bytes(ciphertext))
    except InvalidToken:
        return False
    return True
