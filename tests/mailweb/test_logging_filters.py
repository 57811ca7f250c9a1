"""The log redaction filter: credentials never survive into a formatted record."""

import logging

import pytest

from mailweb.logging_filters import RedactSecretsFilter, redact

pytestmark = pytest.mark.smoke

JWT = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.c2lnbmF0dXJlLXZhbHVlLWhlcmU"


@pytest.mark.parametrize(
    "text",
    [
        f"token response: {JWT}",
        "Authorization: Bearer abcdefghijklmnop1234",
        'body {"refresh_token": "0.AAAAsecretvalue", "x": 1}',
        "grant_type=refresh_token&refresh_token=0.AAAsecret&client_secret=shh12345",
        "AUTHENTICATE XOAUTH2 dXNlcj1hQGV4YW1wbGUuY29tAWF1dGg9QmVhcmVyIHh4eAEB",
    ],
)
def test_redact_removes_secrets(text: str) -> None:
    cleaned = redact(text)
    for secret in (
        JWT,
        "abcdefghijklmnop1234",
        "0.AAAAsecretvalue",
        "0.AAAsecret",
        "shh12345",
        "dXNlcj1h",
    ):
        assert secret not in cleaned


def test_filter_redacts_message_args_and_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("mailweb.test.redaction")
    logger.addFilter(RedactSecretsFilter())
    try:
        with caplog.at_level(logging.INFO, logger="mailweb.test.redaction"):
            logger.info("refreshed with %s", JWT)
            try:
                raise RuntimeError(f"bad response Bearer {JWT}")
            except RuntimeError:
                logger.exception("refresh failed")
    finally:
        logger.filters.clear()
    text = caplog.text + "".join(r.exc_text or "" for r in caplog.records)
    assert JWT not in text
    assert "[redacted]" in text
