"""OpenAPI schema generation (drf-spectacular) for the researcher API's plain APIViews.

Most endpoints are small APIViews that validate with a serializer inside the method and answer a
JSON object built by a selector; each declares its request and response shapes with
`extend_schema`. This module holds what every operation shares:

- the error bodies (`ErrorDetail`, `ValidationError`, `ProtocolInvalid`) as named components, so
  a generated client gets one error type instead of one per operation;
- `PlatformAutoSchema`, which adds the error responses every authenticated operation can give
  (403 always, 404 when the path names an object, 400 when there is input to reject) unless the
  view declared that code itself, and gives list and detail views distinct operation ids.
"""

from __future__ import annotations

from drf_spectacular.openapi import AutoSchema
from drf_spectacular.plumbing import ResolvedComponent
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers
from rest_framework.generics import GenericAPIView

_SERIALIZER_HOOKS = ("get_serializer", "get_serializer_class", "serializer_class")


class ErrorDetailSerializer(serializers.Serializer):
    """The body of every refusal that is not about one field: `{"detail": "..."}`."""

    detail = serializers.CharField()


class ProtocolErrorSerializer(serializers.Serializer):
    """One problem in a protocol document, located by its path (and line for YAML)."""

    path = serializers.CharField()
    message = serializers.CharField()
    line = serializers.IntegerField(allow_null=True)


class ProtocolInvalidSerializer(serializers.Serializer):
    detail = serializers.CharField()
    errors = ProtocolErrorSerializer(many=True)


# DRF's validation error body: each field name (or `non_field_errors`) maps to its messages.
# A few services name the field with a single message string, and a body that cannot be parsed
# at all answers `{"detail": "..."}`, which this shape also admits.
VALIDATION_ERROR_SCHEMA = {
    "type": "object",
    "description": (
        "Field name (or `non_field_errors`) to the messages about it; `detail` when the body "
        "could not be parsed."
    ),
    "additionalProperties": {
        "anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]
    },
    "example": {"email": ["Enter a valid email address."]},
}


def error(description: str) -> OpenApiResponse:
    """A `{"detail": ...}` response for a view's own refusals (409, 410, ...)."""
    return OpenApiResponse(ErrorDetailSerializer, description=description)


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

    def _validation_error_ref(self) -> dict:
        component = ResolvedComponent(
            name="ValidationError",
            type=ResolvedComponent.SCHEMA,
            schema=VALIDATION_ERROR_SCHEMA,
            object="ValidationError",
        )
        self.registry.register_on_missing(component)
        return component.ref

    def _takes_input(self) -> bool:
        if self.method in ("POST", "PUT", "PATCH"):
            return True
        return any(p.get("in") == "query" for p in self._get_parameters())

    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        if direction != "response":
            return responses
        defaults: dict[str, OpenApiResponse | dict] = {
            # DRF answers 403 both to an unauthenticated request (session authentication comes
            # first, and it sends no WWW-Authenticate challenge) and to a role without the
            # permission.
            "403": error("Not signed in, or your role in the study lacks the permission."),
        }
        if "{" in self.path:
            # get_study_for answers 404 to non-members, so a study you cannot see looks absent.
            defaults["404"] = error("No such object, or not a study you are a member of.")
        if self._takes_input():
            defaults["400"] = OpenApiResponse(
                self._validation_error_ref(), description="The input is not valid."
            )
        declared_400 = responses.get("400", {}).get("content", {}).get("application/json")
        if declared_400 and self._takes_input():
            # A view's own 400 body (an invalid protocol, say) is one answer; DRF's validation
            # errors and unparseable bodies are still possible, so the contract admits both.
            declared_400["schema"] = {
                "anyOf": [declared_400["schema"], self._validation_error_ref()]
            }
        for code, spec in defaults.items():
            if code not in responses:
                responses[code] = self._get_response_for_code(spec, code, direction=direction)
        return dict(sorted(responses.items()))
