from django import forms
from django.contrib import admin

from studyplatform.accounts.selectors import email_is_verified
from studyplatform.core.admin import ReadOnlyAdmin
from studyplatform.core.audit import audit_record

from .models import Arm, ConsentDocument, Membership, ProtocolVersion, Study, StudyInvitation


@admin.register(Study)
class StudyAdmin(admin.ModelAdmin):
    list_display = (
        "slug",
        "title",
        "status",
        "timezone",
        "duration_days",
        "current_version",
        "created_at",
    )
    list_filter = ("status",)
    search_fields = ("slug", "title")
    # Status is read-only here: lifecycle moves go through study_transition (the console's
    # launch page or the API), which audits them and enforces the launch checklist.
    readonly_fields = (
        "status",
        "current_version",
        "allocation_seed",
        "created_at",
        "updated_at",
    )


@admin.register(ProtocolVersion)
class ProtocolVersionAdmin(ReadOnlyAdmin):
    """Versions are immutable: viewable, never editable (new versions come from the services)."""

    list_display = ("study", "number", "status_at_creation", "author", "created_at", "short_hash")
    list_filter = ("study", "status_at_creation")
    search_fields = ("study__slug", "change_note", "content_hash")

    @admin.display(description="hash")
    def short_hash(self, obj):
        return obj.content_hash[:12]


@admin.register(Arm)
class ArmAdmin(admin.ModelAdmin):
    list_display = ("study", "key", "provider", "model_name", "weight", "is_active")
    list_filter = ("provider", "is_active", "study")
    search_fields = ("study__slug", "key", "model_name")

    def has_add_permission(self, request):
        return False  # arms come from the protocol


@admin.register(ConsentDocument)
class ConsentDocumentAdmin(ReadOnlyAdmin):
    list_display = ("study", "language", "version", "title", "signature", "created_at")
    list_filter = ("language", "study")


class MembershipAdminForm(forms.ModelForm):
    class Meta:
        model = Membership
        fields = ["study", "user", "role"]

    def clean_user(self):
        # The same rule as membership_add: study roles only for verified addresses.
        user = self.cleaned_data["user"]
        if not email_is_verified(user):
            raise forms.ValidationError(
                "This account has not verified its email address. Verify it first (Users: "
                "'Mark their current email address as verified'), or invite them from the team "
                "page."
            )
        return user


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    form = MembershipAdminForm
    list_display = ("study", "user", "role", "created_at")
    list_filter = ("role", "study")
    search_fields = ("user__username", "study__slug")

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        audit_record(
            actor=request.user,
            action="membership.change" if change else "membership.add",
            target=obj,
            study_slug=obj.study.slug,
            data={"user": obj.user.get_username(), "role": obj.role, "via": "admin"},
        )

    def delete_model(self, request, obj):
        audit_record(
            actor=request.user,
            action="membership.remove",
            target=obj,
            study_slug=obj.study.slug,
            data={"user": obj.user.get_username(), "role": obj.role, "via": "admin"},
        )
        super().delete_model(request, obj)


@admin.register(StudyInvitation)
class StudyInvitationAdmin(ReadOnlyAdmin):
    """Read-only: invitations are created, accepted and withdrawn through the console/API."""

    list_display = ("study", "email", "role", "status", "invited_by", "created_at", "expires_at")
    list_filter = ("status", "role", "study")
    search_fields = ("email", "study__slug")
    exclude = ("token_digest",)
