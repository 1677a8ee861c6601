from django.contrib import admin

from .models import AuditEvent


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    """Read-only: the audit log cannot be edited or deleted through the admin."""

    list_display = ("created_at", "actor_label", "action", "study_slug", "target_type", "target_id")
    list_filter = ("action", "study_slug")
    search_fields = ("actor_label", "action", "target_id", "study_slug")
    date_hierarchy = "created_at"

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
