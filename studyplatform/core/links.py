"""Absolute links for emails and other text that leaves the site.

Emails cannot use `request.build_absolute_uri`: they are sent by workers with no request. The
configured SITE_URL plus `reverse()` keeps every emailed link pointing at a named route, so a
moved page changes in urls.py only.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.urls import reverse


def site_url(
    viewname: str, *, kwargs: dict[str, Any] | None = None, query: dict | None = None
) -> str:
    """The absolute URL of a named route under SITE_URL, with an optional query string."""
    url = settings.SITE_URL + reverse(viewname, kwargs=kwargs)
    if query:
        url += "?" + urlencode(query)
    return url
