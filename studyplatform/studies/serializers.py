"""Researcher API serializers for studies."""

from __future__ import annotations

from rest_framework import serializers

from .models import Arm, ConsentDocument, Membership, ProtocolVersion, Study, StudyInvitation
from .roles import Role


class StudySerializer(serializers.ModelSerializer):
    current_version = serializers.IntegerField(source="current_version.number", read_only=True)

    class Meta:
        model = Study
        fields = [
            "slug",
            "title",
            "description",
            "status",
            "timezone",
            "target_enrollment",
            "duration_days",
            "current_version",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class ArmSerializer(serializers.ModelSerializer):
    class Meta:
        model = Arm
        fields = [
            "key",
            "label",
            "weight",
            "endpoint",
            "provider",
            "model_name",
            "context_tokens",
            "system_prompt",
            "parameters",
            "is_active",
        ]
        read_only_fields = fields


class ModelEndpointSerializer(serializers.Serializer):
    """A registered model endpoint as researchers see it: no URL, no key variable."""

    name = serializers.CharField(read_only=True)
    kind = serializers.CharField(read_only=True)
    models = serializers.ListField(child=serializers.CharField(), read_only=True)
    any_model_name = serializers.BooleanField(read_only=True, source="is_simulated")


class ProtocolVersionSerializer(serializers.ModelSerializer):
    author = serializers.CharField(source="author.get_username", default=None, read_only=True)

    class Meta:
        model = ProtocolVersion
        fields = [
            "number",
            "content_hash",
            "change_note",
            "status_at_creation",
            "author",
            "created_at",
            "content",
        ]
        read_only_fields = fields


class ConsentDocumentSerializer(serializers.ModelSerializer):
    class Meta:
        model = ConsentDocument
        fields = [
            "version",
            "language",
            "title",
            "body",
            "checkboxes",
            "signature",
            "text_hash",
            "created_at",
        ]
        read_only_fields = fields


class ProtocolSubmitSerializer(serializers.Serializer):
    """A protocol as YAML text (`yaml`) or as parsed JSON (`protocol`), with a change note."""

    yaml = serializers.CharField(required=False, trim_whitespace=False)
    protocol = serializers.JSONField(required=False)
    change_note = serializers.CharField(
        required=False, allow_blank=True, default="", max_length=1000
    )

    def validate(self, attrs):
        if ("yaml" in attrs) == ("protocol" in attrs):
            raise serializers.ValidationError("Send exactly one of 'yaml' or 'protocol'.")
        return attrs


class TransitionSerializer(serializers.Serializer):
    to = serializers.ChoiceField(choices=Study.Status.choices)


class MembershipSerializer(serializers.ModelSerializer):
    username = serializers.CharField(source="user.get_username", read_only=True)

    class Meta:
        model = Membership
        fields = ["id", "username", "role", "created_at"]
        read_only_fields = fields


class InvitationCreateSerializer(serializers.Serializer):
    """Invite by email address: the role is granted only when the address's verified owner
    accepts from the emailed link (accounts are never matched by username)."""

    email = serializers.EmailField(max_length=254)
    role = serializers.ChoiceField(choices=[r.value for r in Role])


class InvitationSerializer(serializers.ModelSerializer):
    invited_by = serializers.CharField(
        source="invited_by.get_username", default=None, read_only=True
    )

    class Meta:
        model = StudyInvitation
        fields = ["id", "email", "role", "status", "invited_by", "created_at", "expires_at"]
        read_only_fields = fields
