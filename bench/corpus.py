"""A deterministic corpus of realistic mail for the sync benchmark.

``generate(count, seed)`` yields ``(date, raw_bytes)`` in chronological order: conversations of
one to eight messages that reply to each other (In-Reply-To, References, quoted text, "Re:"
subjects), senders and subjects in several scripts (RFC 2047 encoded words), plain-text and
multipart/alternative bodies, some mail sent by the mailbox itself, and 5 % of messages with a
~100 KB PDF-like attachment. With the defaults, 10,000 messages come to about 180 MB.
The same seed always gives the same bytes.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime

MAILBOX = "support@bench.example"

_FIRST = [
    "Anna", "Jürgen", "Zoë", "José", "Łukasz", "Ольга", "山田", "Søren", "Chloé", "Mehmet",
    "Priya", "Ngozi", "Björn", "Élodie", "Tomáš", "Αλέξης", "Fatima", "Kenji", "Maëlle", "Ivan",
    "Grace", "Oliver", "Sofia", "Liam", "Noah", "Emma", "Mia", "Lucas", "Aiko", "Dmitri",
]  # fmt: skip
_LAST = [
    "Müller", "García", "Nowak", "Øster", "Иванова", "太郎", "Dubois", "Yılmaz", "Sharma",  # noqa: RUF001
    "Okafor", "Svensson", "Novák", "Παπαδόπουλος", "Haddad", "Tanaka", "Brown", "Smith", "Rossi",
    "Kowalski", "Jensen", "O'Brien", "Nguyễn", "Fernández", "Schäfer", "Lefèvre",
]  # fmt: skip
_DOMAINS = [
    "contoso.example", "fabrikam.example", "northwind.example", "müller-gmbh.example",
    "example.org", "mail.example.net", "tailspin.example", "adventure-works.example",
]  # fmt: skip
_TOPICS = [
    "Invoice {n} overdue", "Order #{n} has not arrived", "Question about plan {n}",
    "Rechnung Nr. {n} – Rückfrage", "Commande {n} : problème de livraison",  # noqa: RUF001
    "注文番号 {n} について", "Заказ {n}: вопрос по доставке", "Refund request for ticket {n}",
    "Meeting next week about project {n}", "Password reset not working ({n})",
    "Pedido {n} — cambio de dirección", "Feedback on release {n}", "Contract renewal {n}",
    "Δελτίο αποστολής {n}", "Upgrade to the premium tier ({n})",
]  # fmt: skip
_WORDS = [
    "the",
    "order",
    "invoice",
    "delivery",
    "customer",
    "account",
    "support",
    "team",
    "please",
    "thanks",
    "regards",
    "update",
    "question",
    "problem",
    "payment",
    "refund",
    "shipment",
    "tracking",
    "number",
    "address",
    "change",
    "request",
    "issue",
    "ticket",
    "week",
    "today",
    "tomorrow",
    "attached",
    "document",
    "contract",
    "renewal",
    "price",
    "quote",
    "meeting",
    "call",
    "schedule",
    "confirm",
    "received",
    "sorry",
    "delay",
    "warehouse",
    "product",
    "service",
    "plan",
    "upgrade",
    "feature",
    "Lieferung",
    "Rechnung",
    "bitte",
    "danke",
    "Grüße",
    "Bestellung",
    "commande",
    "livraison",
    "merci",
    "cordialement",
    "pedido",
    "envío",
    "gracias",
    "saludos",
    "заказ",
    "доставка",
    "спасибо",
    "注文",
    "配送",
    "ありがとう",
    "よろしく",
]


def _person(rng: random.Random) -> tuple[str, str]:
    first, last = rng.choice(_FIRST), rng.choice(_LAST)
    local = f"{first}.{last}".encode("ascii", "ignore").decode().lower().strip(".") or "user"
    local = "".join(ch for ch in local if ch.isalnum() or ch == ".") or "user"
    return f"{first} {last}", f"{local}{rng.randint(1, 99)}@{rng.choice(_DOMAINS)}"


def _paragraph(rng: random.Random, words: int) -> str:
    text = " ".join(rng.choice(_WORDS) for _ in range(words))
    return text[:1].upper() + text[1:] + "."


def _body(rng: random.Random, size: int) -> str:
    paragraphs = []
    total = 0
    while total < size:
        paragraph = _paragraph(rng, rng.randint(20, 70))
        paragraphs.append(paragraph)
        total += len(paragraph) + 2
    return "\n\n".join(paragraphs)


def _html(text: str, rng: random.Random) -> str:
    parts = [f'<p style="margin:0 0 1em">{p}</p>' for p in text.split("\n\n")]
    signature = (
        '<table style="border-top:1px solid #ccc"><tr><td><img src="https://tracker.example/'
        f'px/{rng.randint(1, 10**9)}.gif" width="1" height="1"><b>Support</b><br>'
        '<a href="https://www.example.com/help">Help center</a></td></tr></table>'
    )
    return "<html><body><div>" + "".join(parts) + signature + "</div></body></html>"


def _pdf_like(rng: random.Random, size: int) -> bytes:
    head = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n"
    return head + rng.randbytes(size - len(head))


class _Thread:
    def __init__(self, rng: random.Random, index: int, start: datetime) -> None:
        self.subject = rng.choice(_TOPICS).format(n=10000 + index)
        self.customer = _person(rng)
        self.length = min(8, max(1, int(rng.expovariate(1 / 2.2)) + 1))
        self.ids: list[str] = []
        self.quoted = ""
        self.next_at = start


def generate(
    count: int = 10_000, seed: int = 1, *, attachment_share: float = 0.05
) -> Iterator[tuple[datetime, bytes]]:
    """``count`` messages, oldest first, as (date, raw RFC 5322 bytes with CRLF)."""
    rng = random.Random(seed)
    clock = datetime(2024, 1, 1, 8, 0, tzinfo=UTC)
    open_threads: list[_Thread] = []
    made = 0
    thread_index = 0
    while made < count:
        clock += timedelta(minutes=rng.randint(1, 90))
        if not open_threads or rng.random() < 0.45:
            open_threads.append(_Thread(rng, thread_index, clock))
            thread_index += 1
        thread = rng.choice(open_threads)
        position = len(thread.ids)
        incoming = position % 2 == 0 or rng.random() < 0.2
        name, address = thread.customer if incoming else ("Support Team", MAILBOX)
        msg = EmailMessage()
        msg["From"] = f"{name} <{address}>"
        msg["To"] = MAILBOX if incoming else f"{thread.customer[0]} <{thread.customer[1]}>"
        if rng.random() < 0.15:
            msg["Cc"] = ", ".join(f"{n} <{a}>" for n, a in (_person(rng), _person(rng)))
        msg["Subject"] = thread.subject if position == 0 else f"Re: {thread.subject}"
        msg["Date"] = format_datetime(clock)
        message_id = f"<{seed}.{made}.{rng.getrandbits(48):012x}@bench.example>"
        msg["Message-ID"] = message_id
        if thread.ids:
            msg["In-Reply-To"] = thread.ids[-1]
            msg["References"] = " ".join(thread.ids[-10:])
        text = _body(rng, rng.randint(2300, 4600))
        if thread.quoted:
            text += "\n\nOn an earlier day, someone wrote:\n" + "\n".join(
                "> " + line for line in thread.quoted.splitlines()[:40]
            )
        msg.set_content(text)
        if rng.random() < 0.6:
            msg.add_alternative(_html(text, rng), subtype="html")
        if rng.random() < attachment_share:
            msg.add_attachment(
                _pdf_like(rng, rng.randint(90_000, 110_000)),
                maintype="application",
                subtype="pdf",
                filename=f"Rechnung-{rng.randint(1000, 9999)}.pdf",
            )
        raw = msg.as_bytes(policy=msg.policy.clone(linesep="\r\n"))
        yield clock, raw
        made += 1
        thread.ids.append(message_id)
        thread.quoted = text[:1500]
        if len(thread.ids) >= thread.length:
            open_threads.remove(thread)


def describe(count: int = 10_000, seed: int = 1) -> dict[str, float]:
    """Size statistics of a corpus (for the README)."""
    sizes = [len(raw) for _, raw in generate(count, seed)]
    return {
        "messages": len(sizes),
        "total_mb": sum(sizes) / 1e6,
        "mean_kb": sum(sizes) / len(sizes) / 1e3,
        "with_attachment": sum(1 for s in sizes if s > 100_000),
    }


if __name__ == "__main__":  # pragma: no cover
    print(describe())
