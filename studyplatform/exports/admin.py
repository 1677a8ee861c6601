"""Admin for dataset exports: read-only records (the key is never shown)."""

from django.contrib import admin

from .models import DatasetExport


@admin.register(DatasetExport)
class DatasetExportAdmin(admin.ModelAdmin):
    list_display = ("id", "study", "status", "progress", "created_by", "created_at", "expires_at")
    list_filter = ("status",)
    search_fields = ("study__slug",)
    exclude = ("key",)
    readonly_fields = (
        "study",
        "created_by",
        "status",
        "progress",
        "options",
        "reuse_key_of",
        "key_fingerprint",
        "file_name",
        "sha256",
        "size",
        "created_at",
        "finished_at",
        "expires_at",
        "error",
        "detection_counts",
        "disclosure",
        "revoked_at",
        "revoked_reason",
        "replaced_by",
    )

    def has_add_permission(self, request):
        # Exports are created through the API or the command, which validate the options.
        return False
