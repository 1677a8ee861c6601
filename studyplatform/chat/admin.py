"""Admin for the chat log: lists show metadata only, never participant text; opening a message
or memory note (where the text is shown) writes an audit event.

Everything is read-only here: chat content is research data nobody edits.
"""

from __future__ import annotations

from django.contrib import admin

from studyplatform.core.admin import AuditedDetailAdmin, ReadOnlyAdmin

from .models import Conversation, MemoryNote, Message


@admin.register(Conversation)
class ConversationAdmin(ReadOnlyAdmin):
    list_display = ("id", "participant", "arm", "imported", "created_at", "updated_at")
    list_filter = ("imported", "arm__study")
    list_select_related = ("participant", "arm")
    search_fields = ("participant__code",)
    # The title is participant text; the detail page of a conversation is not audited, so it
    # does not show it (read it through the audited API instead).
    exclude = ("title",)
    raw_id_fields = ("participant", "active_leaf")


@admin.register(Message)
class MessageAdmin(AuditedDetailAdmin):
    audit_action = "chat.read"
    list_display = (
        "id",
        "conversation",
        "role",
        "status",
        "model_reported",
        "latency_ms",
        "created_at",
    )
    list_filter = ("role", "status", "imported")
    list_select_related = ("conversation__participant",)
    search_fields = ("participant__code",)
    raw_id_fields = ("conversation", "participant", "parent")


@admin.register(MemoryNote)
class MemoryNoteAdmin(AuditedDetailAdmin):
    audit_action = "memory.read"
    list_display = ("participant", "updated_at")
    list_select_related = ("participant",)
    search_fields = ("participant__code",)
    fields = ("participant", "text", "updated_at")
    readonly_fields = ("updated_at",)
