"""Content negotiation for API views that answer a file (a zip, an HTML report, a CSV).

DRF picks a renderer from the Accept header before the view runs, and its renderers are JSON
only; a client that asks for what the OpenAPI contract says such a view returns
(`Accept: application/zip`) would get 406. These views build their file response themselves, so
the renderer only ever formats their JSON refusals: when nothing matches, use it anyway.
"""

from __future__ import annotations

from rest_framework.exceptions import NotAcceptable
from rest_framework.negotiation import DefaultContentNegotiation


class FileDownloadNegotiation(DefaultContentNegotiation):
    def select_renderer(self, request, renderers, format_suffix=None):
        try:
            return super().select_renderer(request, renderers, format_suffix)
        except NotAcceptable:
            return renderers[0], renderers[0].media_type
