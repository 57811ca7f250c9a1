"""Small typed readers for environment variables.

Settings read every value through these helpers so that a typo in a boolean or a number fails
loudly at start-up instead of silently turning a feature off. Secrets also accept a ``NAME_FILE``
variant pointing at a file, which is how Docker secrets and Kubernetes mounts hand them over.

A blank value counts as unset everywhere: .env.example lists every variable with an empty value
meaning "the default", and docker compose passes those lines on as set-but-empty variables. Read
as "", they would turn STATIC_ROOT and MAILWEB_BLOB_DIR into the working directory and switch
secure cookies off.
"""

import os
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _raw(name: str) -> str | None:
    """The variable stripped, or None when it is unset or blank."""
    value = os.environ.get(name, "").strip()
    return value or None


def env_str(name: str, default: str = "") -> str:
    """The variable as a string, stripped; ``default`` when unset or blank."""
    return _raw(name) or default


def env_bool(name: str, default: bool = False) -> bool:
    """``1/true/yes/on`` or ``0/false/no/off`` (any case); anything else is an error."""
    raw = _raw(name)
    if raw is None:
        return default
    value = raw.lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (true/false), got {raw!r}")


def env_int(name: str, default: int) -> int:
    """The variable as an integer; a non-integer is a configuration error."""
    raw = _raw(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, got {raw!r}") from None


def env_list(name: str, default: list[str] | None = None) -> list[str]:
    """A comma-separated list with blank items dropped; ``default`` when unset or blank."""
    raw = _raw(name)
    if raw is None:
        return list(default or [])
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_secret(name: str, default: str = "") -> str:
    """A secret from ``NAME`` or, when that is unset, from the file named by ``NAME_FILE``."""
    value = _raw(name)
    if value:
        return value
    path = _raw(f"{name}_FILE")
    if path:
        try:
            return Path(path).read_text().strip()
        except OSError as exc:
            raise ImproperlyConfigured(
                f"{name}_FILE points at {path!r}, which is unreadable: {exc.strerror}"
            ) from None
    return default
