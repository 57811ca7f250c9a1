"""Signals that let other apps react to mailbox lifecycle events without accounts importing them.

``accounts`` may import only Django (DESIGN.md); ``sync`` connects receivers to these to start
or stop background work.
"""

from django.dispatch import Signal

# Sent after commit when a mailbox was connected or reconnected; kwargs: mailbox_id.
mailbox_connected = Signal()
# Sent after commit when a mailbox was disconnected; kwargs: mailbox_id, deleted (bool).
mailbox_disconnected = Signal()
