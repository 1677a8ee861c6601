"""WSGI entry point (management tasks and simple deployments; chat streaming needs ASGI)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "studyplatform.settings")
application = get_wsgi_application()
