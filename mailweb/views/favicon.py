"""``/favicon.ico``: where browsers look for the icon of a page that names none.

Mailweb's pages link ``img/favicon.svg``; Django's admin pages do not, and without this every
visit to them logged a 404. The redirect names the hashed file, so it is looked up per request
rather than when the URLconf is imported (commands import it before collectstatic has run).
"""

from django.http import HttpRequest, HttpResponsePermanentRedirect
from django.templatetags.static import static


def favicon(request: HttpRequest) -> HttpResponsePermanentRedirect:
    return HttpResponsePermanentRedirect(static("img/favicon.svg"))
