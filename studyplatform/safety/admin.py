"""Admin for safety alerts: the list shows metadata only, never the excerpt; opening an alert
(where the excerpt and notes are shown) writes an audit event.

Read-only: status changes go through the console or the API, whose services make them
conditional and audited.
"""

from __future__ import annotations

from django.contrib import admin

from studyplatform.core.admin import AuditedDetailAdmin

from .models import SafetyAlert


@admin.register(SafetyAlert)
class SafetyAlertAdmin(AuditedDetailAdmin):
    audit_action = "safety.read"
    list_display = (
        "id",
        "study",
        "participant",
        "severity",
        "category",
        "status",
        "created_at",
        "due_at",
    )
    list_filter = ("study", "severity", "status", "source", "category")
    list_select_related = ("study", "participant")
    search_fields = ("participant__code",)
    raw_id_fields = ("participant", "message")

    def audit_study_and_participant(self, obj) -> tuple[str, str]:
        return obj.study.slug, obj.participant.code
