"""The vault's encryption: authenticated, rotatable, and loud when a key is missing."""

import pytest
from cryptography.fernet import Fernet

from accounts import crypto

pytestmark = pytest.mark.smoke


def test_round_trip_and_tamper_detection(settings: object) -> None:
    settings.MAILWEB_TOKEN_KEYS = [Fernet.generate_key().decode()]  # type: ignore[attr-defined]
    ciphertext = crypto.encrypt(b"refresh-token-value")
    assert b"refresh-token-value" not in ciphertext
    assert crypto.decrypt(ciphertext) == b"refresh-token-value"
    tampered = ciphertext[:-5] + (b"A" if ciphertext[-5:-4] != b"A" else b"B") + ciphertext[-4:]
    with pytest.raises(crypto.DecryptionError):
        crypto.decrypt(tampered)


def test_rotation_keeps_old_ciphertexts_readable(settings: object) -> None:
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.MAILWEB_TOKEN_KEYS = [old]  # type: ignore[attr-defined]
    ciphertext = crypto.encrypt(b"secret")
    settings.MAILWEB_TOKEN_KEYS = [new, old]  # type: ignore[attr-defined]
    assert crypto.decrypt(ciphertext) == b"secret"
    rotated = crypto.reencrypt(ciphertext)
    settings.MAILWEB_TOKEN_KEYS = [new]  # type: ignore[attr-defined]
    assert crypto.decrypt(rotated) == b"secret"
    with pytest.raises(crypto.DecryptionError):
        crypto.decrypt(ciphertext)


def test_bad_key_is_a_configuration_error(settings: object) -> None:
    from django.core.exceptions import ImproperlyConfigured

    settings.MAILWEB_TOKEN_KEYS = ["not-a-fernet-key"]  # type: ignore[attr-defined]
    with pytest.raises(ImproperlyConfigured):
        crypto.encrypt(b"x")
