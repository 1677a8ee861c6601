from django import forms
from django.contrib import admin

from .audit import audit_record
from .models import AuditEvent, ModelEndpoint


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows nobody edits by hand: research records (consents, allocations, chat logs, survey
    answers) change only through their services, which keep the invariants and write the audit
    events. Deleting stays possible where an app allows it (e.g. a platform admin removing test
    data); the audit log forbids that too."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


class AuditedDetailAdmin(ReadOnlyAdmin):
    """Opening a row's detail page records who read it (`audit_action`); the list pages show
    metadata only (each app's admin leaves participant text out of list_display)."""

    audit_action = ""

    def audit_study_and_participant(self, obj) -> tuple[str, str]:
        return obj.participant.study.slug, obj.participant.code

    def change_view(self, request, object_id, form_url="", extra_context=None):
        obj = self.get_object(request, object_id)
        if obj is not None:
            study_slug, code = self.audit_study_and_participant(obj)
            audit_record(
                actor=request.user,
                action=self.audit_action,
                target=obj,
                study_slug=study_slug,
                data={"participant": code, "via": "admin"},
            )
        return super().change_view(request, object_id, form_url, extra_context)


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    """Read-only: the audit log cannot be edited or deleted through the admin."""

    list_display = ("created_at", "actor_label", "action", "study_slug", "target_type", "target_id")
    list_filter = ("action", "study_slug")
    search_fields = ("actor_label", "action", "target_id", "study_slug")
    date_hierarchy = "created_at"

    def has_delete_permission(self, request, obj=None):
        return False


class ModelEndpointForm(forms.ModelForm):
    """Allowed models are typed one per line (stored as a JSON list)."""

    base_url = forms.URLField(
        label="Base URL",
        max_length=300,
        required=False,
        assume_scheme="https",
        help_text="API root, e.g. http://gpu-1:8000/v1 for vLLM; empty for the vendor's own.",
    )
    allowed_models = forms.CharField(
        label="Allowed models",
        widget=forms.Textarea(attrs={"rows": 4}),
        required=False,
        help_text="One exact model name per line. Protocols may use only these.",
    )

    class Meta:
        model = ModelEndpoint
        fields = [
            "name",
            "kind",
            "base_url",
            "api_key_env",
            "requires_api_key",
            "allowed_models",
            "enabled",
            "note",
        ]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.initial["allowed_models"] = "\n".join(self.instance.allowed_models or [])

    def clean_allowed_models(self) -> list[str]:
        text = self.cleaned_data["allowed_models"]
        return [line.strip() for line in text.splitlines() if line.strip()]


@admin.register(ModelEndpoint)
class ModelEndpointAdmin(admin.ModelAdmin):
    """Where model servers are registered. Platform admins (superusers) only: an endpoint decides
    where participants' chats go and which key is sent with them."""

    form = ModelEndpointForm
    list_display = ("name", "kind", "base_url", "api_key_env", "enabled", "updated_at")
    list_filter = ("kind", "enabled")

    def has_module_permission(self, request):
        return request.user.is_active and request.user.is_superuser

    def has_view_permission(self, request, obj=None):
        return request.user.is_active and request.user.is_superuser

    def has_add_permission(self, request):
        return request.user.is_active and request.user.is_superuser

    def has_change_permission(self, request, obj=None):
        return request.user.is_active and request.user.is_superuser

    def has_delete_permission(self, request, obj=None):
        return request.user.is_active and request.user.is_superuser

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        audit_record(
            actor=request.user,
            action="model_endpoint.change" if change else "model_endpoint.add",
            target=obj,
            data={
                "name": obj.name,
                "kind": obj.kind,
                "base_url": obj.base_url,
                "api_key_env": obj.api_key_env,
                "models": obj.allowed_models,
                "enabled": obj.enabled,
            },
        )

    def get_actions(self, request):
        # Bulk delete would skip the audit event; delete endpoints one at a time.
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

    def delete_model(self, request, obj):
        audit_record(
            actor=request.user, action="model_endpoint.delete", target=obj, data={"name": obj.name}
        )
        super().delete_model(request, obj)
