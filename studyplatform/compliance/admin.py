"""Admin for usage compliance: read-only, like every research record (the rows are computed
from messages and by the nudge tick, never typed in)."""

from __future__ import annotations

from django.contrib import admin

from studyplatform.core.admin import ReadOnlyAdmin

from .models import ComplianceDay, UsageNudge


@admin.register(ComplianceDay)
class ComplianceDayAdmin(ReadOnlyAdmin):
    list_display = ("participant", "date", "study_day", "active_minutes", "messages")
    list_select_related = ("participant",)
    search_fields = ("participant__code",)
    raw_id_fields = ("participant",)


@admin.register(UsageNudge)
class UsageNudgeAdmin(ReadOnlyAdmin):
    list_display = ("participant", "period", "due_at", "status", "sent_at", "emailed_at")
    list_filter = ("status",)
    list_select_related = ("participant",)
    search_fields = ("participant__code",)
    raw_id_fields = ("participant",)
