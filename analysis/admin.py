"""Admin: analysis runs, read-only (they are created through the API or the CLI)."""

from django.contrib import admin

from studyplatform.core.admin import ReadOnlyAdmin

from .models import AnalysisRun


@admin.register(AnalysisRun)
class AnalysisRunAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "study",
        "look",
        "status",
        "progress",
        "created_by",
        "created_at",
        "data_hash",
    )
    list_filter = ("status", "look", "study")
    exclude = ("report_html",)
    readonly_fields = [f.name for f in AnalysisRun._meta.fields if f.name != "report_html"]
