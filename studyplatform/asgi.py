"""ASGI entry point, served by uvicorn: chat replies stream as Server-Sent Events."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "studyplatform.settings")

# Django's handler, except that chat event streams are written straight to `send`
# (studyplatform/core/sse.py: it costs less CPU per token).
from studyplatform.core.sse import get_asgi_application

application = get_asgi_application()

from django.conf import settings  # noqa: E402 - needs the app registry loaded above

if settings.SERVE_STATIC:
    # The embedded default serves static files itself; production puts them behind a proxy.
    from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler

    application = ASGIStaticFilesHandler(application)
