# ruff: noqa: E501  (HTML payloads are kept as written)
"""Screenshots for the README (docs/screenshots/). Run on purpose, not in the suite:

MAILWEB_SCREENSHOTS=1 script/test tests/browser/test_screenshots.py
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from accounts.models import MailAccount, MailboxAccess, User
from mailweb import actions
from mailweb.models import Folder, Label
from tests.browser.conftest import sign_in_cookie
from tests.mailweb.factories import deliver

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        not os.environ.get("MAILWEB_SCREENSHOTS"), reason="set MAILWEB_SCREENSHOTS=1"
    ),
]
OUT = Path(__file__).resolve().parents[2] / "docs" / "screenshots"

HTML = """<div style="font-family: Arial, sans-serif; color: #222">
<p>Hi team,</p>
<p>Since this morning none of our <b>12 warehouse scanners</b> can sign in. The error says
<i>“Session expired”</i> right after the password prompt.</p>
<table style="border-collapse: collapse"><tr><td style="border:1px solid #ccc; padding:4px 8px">Site</td>
<td style="border:1px solid #ccc; padding:4px 8px">Rotterdam</td></tr><tr>
<td style="border:1px solid #ccc; padding:4px 8px">Model</td>
<td style="border:1px solid #ccc; padding:4px 8px">ZX-200</td></tr></table>
<p><img src="https://cdn.tracker.example/open.gif" width="1" height="1"></p>
<p>Could you have a look? Orders are piling up.</p><p>Thanks,<br>Priya Shah<br>Operations</p></div>"""


def test_take_screenshots(browser: Any, live_server: Any) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    support = MailAccount.objects.create(
        address="support@acme.example",
        display_name="Support",
        method="imap_password",
        imap_host="x",
        signature="Acme Support",
    )
    billing = MailAccount.objects.create(
        address="billing@acme.example",
        display_name="Billing",
        method="imap_password",
        imap_host="x",
    )
    me = User.objects.create_user(
        "mo@acme.example", "correct horse battery", name="Mo Khan", role=User.Role.ADMIN
    )
    ana = User.objects.create_user("ana@acme.example", "correct horse battery", name="Ana Lima")
    for person in (me, ana):
        for box in (support, billing):
            MailboxAccess.objects.create(user=person, mailbox=box)
    urgent = Label.objects.create(name="Urgent", color="#b42318")
    vip = Label.objects.create(name="VIP", color="#6f2da8")
    bug = Label.objects.create(name="Bug", color="#0b57d0")
    now = timezone.now()
    items = [
        (
            billing,
            "Invoice INV-2291 is twice the usual amount",
            "Tom Becker <tom@northwind.example>",
            400,
            "Hello, our March invoice shows 2x the seats we have. Can you check?",
        ),
        (
            support,
            "Password reset email never arrives",
            "Lena Fischer <lena@contoso.example>",
            300,
            "I requested a reset three times, nothing in spam either.",
        ),
        (
            billing,
            "Switch to annual billing?",
            "Sam Ortiz <sam@fabrikam.example>",
            240,
            "We'd like to move to yearly billing from next month.",
        ),
        (
            support,
            "Export to CSV drops accented names",
            "Chloé Martin <chloe@adatum.example>",
            180,
            "Names like Zoë or José come out as Zo? and Jos?.",
        ),
        (
            support,
            "Thanks for the quick fix!",
            "Ben Carter <ben@litware.example>",
            90,
            "Everything works again, thank you all.",
        ),
    ]
    made = []
    for box, subject, sender, minutes, text in items:
        made.append(
            deliver(
                box,
                subject=subject,
                sender=sender,
                text=text,
                date=now - timedelta(minutes=minutes),
            ).conversation
        )
    main = deliver(
        support,
        subject="Scanners cannot sign in since this morning",
        sender="Priya Shah <priya@globex.example>",
        text="Hi team, none of our scanners...",
        html=HTML,
        date=now - timedelta(minutes=35),
    )
    conversation = main.conversation
    actions.assign(made[0], ana, actor=ana)
    actions.set_labels(made[0], [vip], actor=ana)
    actions.set_labels(made[3], [bug], actor=me)
    actions.assign(made[3], me, actor=me)
    actions.set_status(made[4], "pending", actor=me)
    actions.assign(conversation, me, actor=ana)
    actions.set_labels(conversation, [urgent, vip], actor=ana)
    actions.add_note(
        conversation,
        "@mo this is the SSO certificate rollover again, I think. Can you check the IdP logs?",
        author=ana,
    )
    actions.mark_read(made[4], me)
    context = browser.new_context(viewport={"width": 1440, "height": 900}, device_scale_factor=1)
    page = context.new_page()
    sign_in_cookie(page, live_server, me)
    page.goto(live_server.url + "/")
    page.wait_for_timeout(500)
    page.screenshot(path=str(OUT / "inbox.png"))
    page.goto(f"{live_server.url}/c/{conversation.pk}/")
    page.frame_locator(f"#frame-{main.pk}").locator("body", has_text="warehouse").wait_for()
    page.wait_for_timeout(800)
    page.screenshot(path=str(OUT / "conversation.png"))
    context.close()
    narrow = browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=1)
    tab = narrow.new_page()
    sign_in_cookie(tab, live_server, me)
    tab.goto(live_server.url + "/")
    tab.wait_for_timeout(300)
    tab.screenshot(path=str(OUT / "inbox-narrow.png"))
    narrow.close()
    _mailboxes_screenshot(browser, live_server, me, support, billing)
    assert (OUT / "inbox.png").stat().st_size > 10000


def _mailboxes_screenshot(
    browser: Any, live_server: Any, admin: User, synced: MailAccount, syncing: MailAccount
) -> None:
    """The Mailboxes page: one mailbox up to date, one halfway through its initial sync, one
    whose token was revoked."""
    now = timezone.now()
    # deliver() made each mailbox's INBOX; the figures are set on it.
    Folder.objects.update_or_create(
        mailbox=synced,
        name="INBOX",
        defaults={
            "role": Folder.Role.INBOX,
            "sync_enabled": True,
            "server_count": 6,
            "synced_count": 6,
            "initial_sync_started_at": now - timedelta(days=3),
            "initial_sync_done_at": now - timedelta(days=3),
            "last_synced_at": now,
        },
    )
    MailAccount.objects.filter(pk=synced.pk).update(status="active", last_sync_at=now)
    for name, role, server, done in (
        ("INBOX", Folder.Role.INBOX, 18_400, 11_250),
        ("Sent Items", Folder.Role.SENT, 6_100, 0),
    ):
        Folder.objects.update_or_create(
            mailbox=syncing,
            name=name,
            defaults={
                "role": role,
                "sync_enabled": True,
                "server_count": server,
                "synced_count": done,
                "initial_sync_started_at": now - timedelta(seconds=95),
            },
        )
    MailAccount.objects.filter(pk=syncing.pk).update(status="syncing", last_sync_at=now)
    MailAccount.objects.create(
        address="sales@acme.example",
        display_name="Sales",
        method="microsoft_imap",
        imap_host="outlook.office365.com",
        status="needs_reconnect",
        last_error="Microsoft refused the stored sign-in (it was revoked or expired). "
        "Reconnect the mailbox to resume syncing.",
    )
    context = browser.new_context(viewport={"width": 1440, "height": 900}, device_scale_factor=1)
    page = context.new_page()
    sign_in_cookie(page, live_server, admin)
    page.goto(live_server.url + "/mailboxes/")
    page.wait_for_timeout(300)
    page.screenshot(path=str(OUT / "mailboxes.png"), full_page=True)
    context.close()
    assert (OUT / "mailboxes.png").stat().st_size > 10000
