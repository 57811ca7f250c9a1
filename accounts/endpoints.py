"""Where Microsoft's mail servers are: ``host:port`` settings parsed for the protocol clients.

Read on every call (not at import) so that sovereign-cloud settings and test overrides apply.
"""

from django.conf import settings


def host_and_port(value: str, default_port: int) -> tuple[str, int]:
    """Split ``host:port`` (or ``[v6]:port``); the port defaults when absent."""
    value = value.strip()
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        port = rest.lstrip(":")
        return host, int(port) if port else default_port
    if value.count(":") == 1:
        host, port = value.split(":")
        return host, int(port)
    return value, default_port


def microsoft_imap_address() -> tuple[str, int]:
    """Exchange Online IMAP (implicit TLS), from ``MICROSOFT_IMAP_HOST``."""
    return host_and_port(settings.MICROSOFT_IMAP_HOST, 993)


def microsoft_smtp_address() -> tuple[str, int]:
    """Exchange Online SMTP submission (STARTTLS), from ``MICROSOFT_SMTP_HOST``."""
    return host_and_port(settings.MICROSOFT_SMTP_HOST, 587)
