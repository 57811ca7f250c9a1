"""IMAP for Mailweb: connections (``open_imap``), capabilities, folder discovery, fetching.

``open_imap(mailbox)`` is public: besides the sync engine, the sender uses it to APPEND sent
replies to the mailbox's Sent folder (find it with ``sent_folder_name``).
"""

from sync.imap.connection import (
    IMAP_METHODS,
    OUTLOOK_RESOURCE,
    ImapError,
    ImapLoginRejected,
    ImapUnavailable,
    imap_session,
    open_imap,
)
from sync.imap.session import Capabilities, prepare_session

__all__ = [
    "IMAP_METHODS",
    "OUTLOOK_RESOURCE",
    "Capabilities",
    "ImapError",
    "ImapLoginRejected",
    "ImapUnavailable",
    "imap_session",
    "open_imap",
    "prepare_session",
]
