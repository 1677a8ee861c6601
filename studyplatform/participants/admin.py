from django.contrib import admin

from studyplatform.core.admin import ReadOnlyAdmin
from studyplatform.core.audit import audit_record

from .models import (
    Allocation,
    ConsentRecord,
    DataDownload,
    FunnelCount,
    Identity,
    Participant,
    PilotInvite,
)


@admin.register(Participant)
class ParticipantAdmin(admin.ModelAdmin):
    list_display = (
        "code",
        "study",
        "status",
        "is_pilot",
        "language",
        "enrolled_at",
        "last_seen_at",
        "withdrawal_mode",
    )
    list_filter = ("study", "status", "is_pilot", "withdrawal_mode")
    search_fields = ("code",)
    readonly_fields = [f.name for f in Participant._meta.fields]

    def has_add_permission(self, request):
        return False  # participants enroll themselves through the study link


@admin.register(Identity)
class IdentityAdmin(admin.ModelAdmin):
    """The vault: the list shows no identifiers; opening a row is audited."""

    list_display = ("participant", "study", "panel", "created_at")
    list_filter = ("study", "panel")
    search_fields = ("participant__code",)
    exclude = ("email_digest", "panel_pid_digest")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def change_view(self, request, object_id, form_url="", extra_context=None):
        identity = self.get_object(request, object_id)
        if identity is not None:
            audit_record(
                actor=request.user,
                action="vault.view",
                target=identity.participant,
                study_slug=identity.study.slug,
                data={"via": "admin"},
            )
        return super().change_view(request, object_id, form_url, extra_context)


@admin.register(ConsentRecord)
class ConsentRecordAdmin(ReadOnlyAdmin):
    list_display = ("participant", "version", "language", "signed_at")
    list_filter = ("language", "version")
    exclude = ("signature_name",)


@admin.register(Allocation)
class AllocationAdmin(ReadOnlyAdmin):
    list_display = ("participant", "arm", "method", "stratum", "sequence_number", "allocated_at")
    list_filter = ("method", "arm__study")


@admin.register(FunnelCount)
class FunnelCountAdmin(ReadOnlyAdmin):
    list_display = ("study", "day", "stage", "count")
    list_filter = ("study", "stage")


@admin.register(PilotInvite)
class PilotInviteAdmin(ReadOnlyAdmin):
    list_display = ("study", "label", "created_at", "used_by", "revoked")


@admin.register(DataDownload)
class DataDownloadAdmin(ReadOnlyAdmin):
    list_display = ("participant", "status", "created_at", "finished_at", "expires_at")
    list_filter = ("status",)
