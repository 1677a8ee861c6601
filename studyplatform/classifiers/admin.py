"""Admin: classification runs and labels, read-only (runs start from the console or the API;
labels are written only by runs). Labels hold no text, only codes, hashes and references."""

from django.contrib import admin

from studyplatform.core.admin import ReadOnlyAdmin

from .models import ClassificationRun, ClassifierLabel


@admin.register(ClassificationRun)
class ClassificationRunAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "study",
        "status",
        "progress",
        "judge_calls",
        "cache_hits",
        "created_by",
        "created_at",
    )
    list_filter = ("status", "study")
    readonly_fields = [f.name for f in ClassificationRun._meta.fields]


@admin.register(ClassifierLabel)
class ClassifierLabelAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "study",
        "classifier_key",
        "classifier_version",
        "judge_model",
        "target_key",
        "outcome",
        "label",
        "labelled_at",
    )
    list_filter = ("study", "classifier_key", "outcome")
    readonly_fields = [f.name for f in ClassifierLabel._meta.fields]
    list_select_related = ("study",)
