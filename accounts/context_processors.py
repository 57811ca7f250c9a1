"""Template context every page gets: open alerts for admins (the "needs reconnect" banner)."""

from django.http import HttpRequest

from accounts.models import AdminAlert


def admin_alerts(request: HttpRequest) -> dict[str, object]:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated or not user.is_admin:
        return {}
    return {
        "admin_alerts": list(
            AdminAlert.objects.filter(resolved_at__isnull=True).select_related("mailbox")[:5]
        )
    }
