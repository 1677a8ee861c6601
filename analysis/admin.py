"""Admin: analysis runs, read-only (they are created through the API or the CLI)."""

from django.contrib import admin

from .models import AnalysisRun


@admin.register(AnalysisRun)
class AnalysisRunAdmin(admin.ModelAdmin):
    list_display = ("id", "study", "status", "progress", "created_by", "created_at", "data_hash")
    list_filter = ("status", "study")
    exclude = ("report_html",)
    readonly_fields = [f.name for f in AnalysisRun._meta.fields if f.name != "report_html"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
