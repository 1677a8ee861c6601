"""Admin for survey records. Lists never show answers; opening a response (which shows them)
writes an audit event, like opening an identity in the vault."""

from __future__ import annotations

from django.contrib import admin

from studyplatform.core.admin import ReadOnlyAdmin
from studyplatform.core.audit import audit_record

from .models import Invitation, Response, ScheduleCursor


# Schedule state and answers change only through the engine and services, which keep the
# invariants (one invitation per occurrence, immutable submissions, audited corrections).
@admin.register(ScheduleCursor)
class ScheduleCursorAdmin(ReadOnlyAdmin):
    list_display = (
        "participant",
        "study",
        "entry_key",
        "next_occurrence_key",
        "next_opens_at",
        "needs_advance",
    )
    list_filter = ("study", "entry_key", "needs_advance")
    search_fields = ("participant__code",)
    list_select_related = ("participant", "study")


@admin.register(Invitation)
class InvitationAdmin(ReadOnlyAdmin):
    list_display = (
        "participant",
        "entry_key",
        "occurrence_key",
        "wave",
        "status",
        "opens_at",
        "closes_at",
    )
    list_filter = ("status", "entry_key", "study")
    search_fields = ("participant__code", "occurrence_key")
    list_select_related = ("participant",)
    date_hierarchy = "opens_at"


@admin.register(Response)
class ResponseAdmin(ReadOnlyAdmin):
    list_display = (
        "participant",
        "instrument_key",
        "instrument_version",
        "status",
        "valid",
        "submitted_at",
    )
    list_filter = ("status", "instrument_key", "valid")
    search_fields = ("participant__code",)
    list_select_related = ("participant",)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        response = self.get_object(request, object_id)
        if response is not None:
            audit_record(
                actor=request.user,
                action="survey.response.view",
                target=response,
                study_slug=response.invitation.study.slug,
                data={"via": "admin", "participant": response.participant.code},
            )
        return super().change_view(request, object_id, form_url, extra_context)
