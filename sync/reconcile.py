"""A folder whose UIDVALIDITY changed: re-map stored messages to their new UIDs.

A new UIDVALIDITY means every UID the store holds for the folder is void (the server rebuilt
its index, or the folder was deleted and re-created with the same name). Re-fetching everything
would be slow and, worse, would create each message a second time in a new conversation while
the old rows still exist. Instead the server's messages are identified by Message-ID and size
(and, for messages without a Message-ID, by the SHA-256 of their bytes), stored rows are moved
to their new (UIDVALIDITY, UID) in one transaction together with the reset cursor, rows without
a counterpart are removed, and the backfill then fetches only what is still missing.
"""

from __future__ import annotations

import hashlib
import logging
from collections import defaultdict
from typing import TYPE_CHECKING

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from mailweb.models import Message
from sync.imap.fetch import compress_uids, search_uids, state_from_flags, uid_chunks, uid_fetch
from sync.imap.session import FolderStatus
from sync.mime import parse_message
from sync.store import remove_messages

if TYPE_CHECKING:
    from sync.folder_sync import FolderSync

log = logging.getLogger(__name__)

HEADER_CHUNK = 1000
BODY_CHUNK = 50

__all__ = ["reconcile_uidvalidity"]


def reconcile_uidvalidity(sync: FolderSync, status: FolderStatus) -> None:
    folder, client = sync.folder, sync.client
    log.warning(
        "UIDVALIDITY of %s changed from %s to %s; re-mapping stored messages",
        folder,
        folder.uidvalidity,
        status.uidvalidity,
    )
    server_uids = search_uids(client, 1)
    identity: dict[int, tuple[str, int]] = {}
    flags: dict[int, tuple[bool, bool, bool, bool]] = {}
    for chunk in uid_chunks(server_uids, HEADER_CHUNK):
        fetched = uid_fetch(
            client,
            compress_uids(chunk),
            ["RFC822.SIZE", "FLAGS", "BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]"],
        ).messages
        for uid, message in fetched.items():
            message_id = parse_message((message.header or b"") + b"\r\n").message_id[:998]
            identity[uid] = (message_id, message.size or 0)
            flags[uid] = state_from_flags(message.flags)

    stored = list(
        Message.objects.filter(folder=folder)
        .exclude(uidvalidity=status.uidvalidity)
        .values_list("id", "message_id", "size", "raw_sha256")
    )
    matches: dict[int, int] = {}  # row id -> new uid
    free_uids = set(identity)
    # 1. Message-ID and size; 2. Message-ID alone (a server may count sizes differently).
    for use_size in (True, False):
        wanted: dict[tuple[str, int], list[int]] = defaultdict(list)
        for pk, message_id, size, _ in stored:
            if pk not in matches and message_id:
                wanted[(message_id, size if use_size else 0)].append(pk)
        offered: dict[tuple[str, int], list[int]] = defaultdict(list)
        for uid in sorted(free_uids):
            message_id, size = identity[uid]
            if message_id:
                offered[(message_id, size if use_size else 0)].append(uid)
        for key, pks in wanted.items():
            for pk, uid in zip(sorted(pks), offered.get(key, []), strict=False):
                matches[pk] = uid
                free_uids.discard(uid)
    # 3. Messages without a Message-ID: by the bytes themselves.
    by_sha: dict[str, list[int]] = defaultdict(list)
    for pk, message_id, _, raw_sha256 in stored:
        if pk not in matches and not message_id and raw_sha256:
            by_sha[raw_sha256].append(pk)
    anonymous = sorted(uid for uid in free_uids if not identity[uid][0])
    if by_sha and anonymous:
        for chunk in uid_chunks(anonymous, BODY_CHUNK):
            bodies = uid_fetch(client, compress_uids(chunk), ["BODY.PEEK[]"]).messages
            for uid in chunk:
                body = bodies.get(uid)
                if body is None or body.body is None:
                    continue
                candidates = by_sha.get(hashlib.sha256(body.body).hexdigest())
                if candidates:
                    matches[candidates.pop(0)] = uid
                    free_uids.discard(uid)

    uidnext = status.uidnext or ((server_uids[-1] + 1) if server_uids else 1)
    now = timezone.now()
    with transaction.atomic():
        sync.ctx.lease.check()
        rows = {m.pk: m for m in Message.objects.filter(pk__in=list(matches))}
        for pk, uid in matches.items():
            row = rows[pk]
            row.uidvalidity, row.uid = status.uidvalidity, uid
            row.is_seen, row.is_flagged, row.is_answered, row.is_draft = flags[uid]
        Message.objects.bulk_update(
            list(rows.values()),
            ["uidvalidity", "uid", "is_seen", "is_flagged", "is_answered", "is_draft"],
            batch_size=1000,
        )
        unmatched = [pk for pk, *_ in stored if pk not in matches]
        removed = 0
        for chunk in uid_chunks(unmatched, 2000):
            removed += remove_messages(sync.ctx.mailbox, Q(pk__in=chunk))
        done = not free_uids
        sync._save_cursor(
            uidvalidity=status.uidvalidity,
            uidnext=uidnext,
            lowest_synced_uid=1 if done else uidnext,
            highestmodseq=status.highestmodseq if sync.ctx.capabilities.condstore else None,
            server_count=status.exists,
            synced_count=len(matches),
            initial_sync_started_at=now,
            initial_sync_done_at=now if done else None,
            last_flags_sweep_at=now,
        )
    sync.server_uids = server_uids
    sync.ctx.stats.removed += removed
    log.warning(
        "%s: %d messages re-mapped, %d removed, %d to fetch",
        folder,
        len(matches),
        removed,
        len(free_uids),
    )
