"""OpenAPI schema generation (drf-spectacular) for the researcher API's plain APIViews.

Most endpoints are small APIViews that validate with a serializer inside the method and answer a
JSON object built by a selector, so drf-spectacular cannot guess a serializer for them. Left to
itself it warns for each (`check --deploy` included) and documents them as having no body.
Here such views are documented as taking and returning a JSON object (which is what they do), and
their list and detail endpoints get distinct operation ids from the class-name convention
`<Thing>ListView` / `<Thing>DetailView`.
"""

from __future__ import annotations

from drf_spectacular.openapi import AutoSchema
from drf_spectacular.types import OpenApiTypes
from rest_framework.generics import GenericAPIView

_SERIALIZER_HOOKS = ("get_serializer", "get_serializer_class", "serializer_class")


class PlatformAutoSchema(AutoSchema):
    def _declares_no_serializer(self) -> bool:
        view = self.view
        return not isinstance(view, GenericAPIView) and not any(
            hasattr(view, hook) for hook in _SERIALIZER_HOOKS
        )

    def _get_serializer(self):
        if self._declares_no_serializer():
            return OpenApiTypes.OBJECT
        return super()._get_serializer()

    def get_operation_id(self) -> str:
        operation_id = super().get_operation_id()
        if (
            self.method == "GET"
            and self._declares_no_serializer()
            and type(self.view).__name__.endswith("ListView")
            and operation_id.endswith("_retrieve")
        ):
            return operation_id.removesuffix("_retrieve") + "_list"
        return operation_id
