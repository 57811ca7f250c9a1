from django.apps import AppConfig


class SyncConfig(AppConfig):
    name = "sync"
    verbose_name = "Sync"

    def ready(self) -> None:
        # accounts must not import sync: it announces mailbox lifecycle events with signals.
        from accounts import signals
        from sync import receivers

        signals.mailbox_connected.connect(
            receivers.on_mailbox_connected, dispatch_uid="sync.mailbox_connected"
        )
        signals.mailbox_disconnected.connect(
            receivers.on_mailbox_disconnected, dispatch_uid="sync.mailbox_disconnected"
        )
