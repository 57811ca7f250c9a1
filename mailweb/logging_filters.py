"""A logging filter that scrubs anything shaped like a credential from every record.

Defence in depth: code never logs tokens on purpose, but a library might print a request body or
an exception might carry an Authorization header. JWTs, bearer tokens, refresh tokens, XOAUTH2
strings and ``password=`` pairs are replaced before a record is formatted.
"""

import logging
import re

_PATTERNS = [
    # JSON Web Tokens (three base64url parts) — access and ID tokens.
    re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*"),
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]{8,}"),
    re.compile(
        r"(?i)((?:refresh_token|access_token|id_token|client_secret|password|code)[\"']?\s*[:=]\s*[\"']?)[^\s\"'&,}]+"
    ),
    # XOAUTH2 initial responses are base64 of "user=...\x01auth=Bearer ...".
    re.compile(r"dXNlcj[A-Za-z0-9+/=]{20,}"),
]


def redact(text: str) -> str:
    for pattern in _PATTERNS:
        text = pattern.sub(lambda m: (m.group(1) if m.groups() else "") + "[redacted]", text)
    return text


class RedactSecretsFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and record.exc_info[1] is not None:
            # Render the traceback now, redacted, so the formatter does not print the raw one.
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True
