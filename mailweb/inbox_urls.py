"""The shared inbox pages and message content (sign-in and password reset are in accounts)."""

from django.urls import path

from mailweb.views import conversation, inbox, messages, notifications

urlpatterns = [
    path("", inbox.inbox, name="inbox"),
    path("live/inbox", inbox.inbox_live, name="inbox-live"),
    path("search/", inbox.search, name="search"),
    path("c/<int:pk>/", conversation.conversation, name="conversation"),
    path("c/<int:pk>/assign", conversation.assign, name="conversation-assign"),
    path("c/<int:pk>/status", conversation.status, name="conversation-status"),
    path("c/<int:pk>/labels", conversation.labels, name="conversation-labels"),
    path("c/<int:pk>/notes", conversation.note, name="conversation-note"),
    path("c/<int:pk>/unread", conversation.unread, name="conversation-unread"),
    path("c/<int:pk>/compose", conversation.compose, name="conversation-compose"),
    path("c/<int:pk>/send", conversation.send, name="conversation-send"),
    path("c/<int:pk>/live", conversation.live_updates, name="conversation-live"),
    path("c/<int:pk>/presence", conversation.presence, name="conversation-presence"),
    path("outbox/<int:pk>/retry", conversation.retry, name="outbox-retry"),
    path("m/<int:pk>/frame", messages.frame, name="message-frame"),
    path("m/<int:pk>/raw", messages.raw, name="message-raw"),
    path("a/<int:pk>/", messages.attachment, name="attachment"),
    path("a/<int:pk>/inline", messages.attachment_inline, name="attachment-inline"),
    path("img", messages.proxy, name="image-proxy"),
    path("notifications/", notifications.notifications, name="notifications"),
    path("notifications/read", notifications.mark_read, name="notifications-read"),
]
