"""What a new reply, reply-all or forward starts with, and reading the composer's fields."""

import re
from dataclasses import dataclass
from email.utils import formataddr, getaddresses

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.utils import timezone

from accounts.models import MailAccount
from mailweb import html_safety
from mailweb.models import Message

MODES = ("reply", "reply_all", "forward")
QUOTE_LIMIT = 20000
_PREFIX = re.compile(r"^\s*((re|fw|fwd|aw|sv|vs)\s*(\[\d+\])?\s*:\s*)+", re.I)


@dataclass
class Draft:
    mode: str
    to: str
    cc: str
    bcc: str
    subject: str
    body: str
    message_id: int | None


def _format(pairs: list[tuple[str, str]]) -> str:
    return ", ".join(formataddr((name, address)) if name else address for name, address in pairs)


def _pairs(value: list[list[str]] | list[tuple[str, str]]) -> list[tuple[str, str]]:
    return [(str(pair[0]), str(pair[1]).lower()) for pair in value if len(pair) == 2 and pair[1]]


def message_text(message: Message) -> str:
    if message.text_body.strip():
        return message.text_body
    return html_safety.html_to_text(message.html_body) if message.html_body else ""


def _prefixed(prefix: str, subject: str) -> str:
    bare = _PREFIX.sub("", subject or "").strip()
    return f"{prefix} {bare}".strip() if bare else prefix.rstrip(":") + ":"


def initial_draft(mailbox: MailAccount, message: Message | None, mode: str) -> Draft:
    """Recipients, subject and body for ``mode``, quoting ``message`` and adding the signature."""
    mode = mode if mode in MODES else "reply"
    own = mailbox.address.lower()
    signature = f"\n\n-- \n{mailbox.signature.strip()}" if mailbox.signature.strip() else ""
    if message is None:
        return Draft(mode, "", "", "", "", "\n" + signature, None)
    sender = (message.from_name, message.from_address.lower())
    if message.direction == Message.Direction.OUTGOING or message.from_address.lower() == own:
        reply_to = _pairs(message.to)
    else:
        reply_to = _pairs(message.reply_to) or [sender]
    when = timezone.localtime(message.date or message.received_at)
    text = message_text(message)[:QUOTE_LIMIT]
    if mode == "forward":
        header = [
            "---------- Forwarded message ---------",
            f"From: {_format([sender])}",
            f"Date: {when:%a, %d %b %Y at %H:%M}",
            f"Subject: {message.subject}",
            f"To: {_format(_pairs(message.to))}",
        ]
        if message.cc:
            header.append(f"Cc: {_format(_pairs(message.cc))}")
        body = "\n" + signature + "\n\n" + "\n".join(header) + "\n\n" + text
        return Draft(mode, "", "", "", _prefixed("Fwd:", message.subject), body, message.pk)
    cc: list[tuple[str, str]] = []
    if mode == "reply_all":
        taken = {own, *(address for _, address in reply_to)}
        for name, address in [*_pairs(message.to), *_pairs(message.cc)]:
            if address not in taken:
                cc.append((name, address))
                taken.add(address)
    quoted = "\n".join(f"> {line}" if line else ">" for line in text.splitlines())
    who = message.from_name or message.from_address
    body = f"\n{signature}\n\nOn {when:%a, %d %b %Y at %H:%M}, {who} wrote:\n{quoted}\n"
    return Draft(
        mode,
        _format(reply_to),
        _format(cc),
        "",
        _prefixed("Re:", message.subject),
        body,
        message.pk,
    )


def parse_recipients(value: str) -> list[tuple[str, str]]:
    """``"Ann <ann@x.org>, bob@y.org"`` -> pairs; raises ValidationError naming a bad one."""
    pairs: list[tuple[str, str]] = []
    seen: set[str] = set()
    for name, address in getaddresses([value.replace(";", ",")]):
        address = address.strip()
        if not address and not name.strip():
            continue
        try:
            validate_email(address)
        except ValidationError:
            raise ValidationError(f"“{name or address}” is not an email address.") from None
        if address.lower() not in seen:
            seen.add(address.lower())
            pairs.append((name.strip(), address))
    return pairs
