"""Researcher API (serializers and views) for studies, arms, protocol versions, consent documents,
members and invitations.

Every endpoint resolves the study through `get_study_for`, which returns 404 to non-members and
403 to members whose role lacks the permission. Members are added only by invitation: an owner
invites an email address, and the role exists once that address's verified owner accepts from
the emailed link in the console.
"""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from studyplatform.accounts.selectors import EmailNotVerified
from studyplatform.core.model_endpoints import endpoints_all
from studyplatform.core.schema import ProtocolErrorSerializer, ProtocolInvalidSerializer, error

from .models import Arm, ConsentDocument, Membership, ProtocolVersion, Study, StudyInvitation
from .permissions import get_study_for, user_perms
from .protocol import (
    ProtocolInvalid,
    ProtocolRefused,
    diff_documents,
    parse_protocol_text,
    to_yaml,
)
from .protocol.validate import parse_protocol_data
from .roles import Perm, Role
from .selectors import (
    current_consent_documents,
    pending_invitations,
    protocol_for_editing,
    studies_visible_to,
    versions_of,
)
from .services import (
    InvitationError,
    LaunchBlocked,
    MembershipError,
    TransitionError,
    invitation_create,
    invitation_revoke,
    membership_remove,
    protocol_version_create,
    study_create_from_protocol,
    study_transition,
)

# --- serializers -------------------------------------------------------------------------

# A study role's choices as Membership.role declares them, for the settings'
# ENUM_NAME_OVERRIDES (Role is a StrEnum, which drf-spectacular cannot name by import path).
STUDY_ROLE_CHOICES = [(r.value, r.value) for r in Role]


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
    # The same (value, label) pairs as Membership.role, so the schema names one role enum.
    role = serializers.ChoiceField(choices=STUDY_ROLE_CHOICES)


class InvitationSerializer(serializers.ModelSerializer):
    invited_by = serializers.CharField(
        source="invited_by.get_username", default=None, read_only=True
    )

    class Meta:
        model = StudyInvitation
        fields = ["id", "email", "role", "status", "invited_by", "created_at", "expires_at"]
        read_only_fields = fields


# Response shapes the views build by hand (documented for the OpenAPI contract).


class StudyDetailSerializer(StudySerializer):
    your_permissions = serializers.ListField(child=serializers.CharField(), read_only=True)

    class Meta(StudySerializer.Meta):
        fields = [*StudySerializer.Meta.fields, "your_permissions"]
        read_only_fields = fields


class FailingCheckSerializer(serializers.Serializer):
    key = serializers.CharField()
    label = serializers.CharField()
    reason = serializers.CharField()


class LaunchBlockedSerializer(serializers.Serializer):
    detail = serializers.CharField()
    failing_checks = FailingCheckSerializer(many=True, required=False)


class ProtocolYamlSerializer(serializers.Serializer):
    version = serializers.IntegerField()
    yaml = serializers.CharField()


class ProtocolVersionSavedSerializer(ProtocolVersionSerializer):
    created = serializers.BooleanField(
        read_only=True, help_text="False when the protocol equals the current version."
    )

    class Meta(ProtocolVersionSerializer.Meta):
        fields = [*ProtocolVersionSerializer.Meta.fields, "created"]
        read_only_fields = fields


class ProtocolValidationSerializer(serializers.Serializer):
    valid = serializers.BooleanField()
    errors = ProtocolErrorSerializer(many=True)


class ProtocolChangeSerializer(serializers.Serializer):
    path = serializers.CharField()
    change = serializers.ChoiceField(choices=["added", "removed", "changed"])
    old = serializers.JSONField(required=False)
    new = serializers.JSONField(required=False)


class VersionDiffSerializer(serializers.Serializer):
    # "from" is a Python keyword, hence the declared field name.
    from_ = serializers.IntegerField()
    to = serializers.IntegerField()
    changes = ProtocolChangeSerializer(many=True)
    unified = serializers.CharField(help_text="Unified diff of the two versions' YAML.")

    def get_fields(self):
        fields = super().get_fields()
        fields["from"] = fields.pop("from_")
        return fields


_STUDY_EXAMPLE = OpenApiExample(
    "A draft study",
    value={
        "slug": "companion-rct",
        "title": "Companion chatbots and loneliness",
        "description": "Six-week randomised trial of two assistant personas.",
        "status": "draft",
        "timezone": "America/Sao_Paulo",
        "target_enrollment": 120,
        "duration_days": 42,
        "current_version": 1,
        "created_at": "2026-11-02T14:00:00Z",
        "updated_at": "2026-11-02T14:00:00Z",
    },
    response_only=True,
)
_VERSION_EXAMPLE = OpenApiExample(
    "Protocol version 2",
    value={
        "number": 2,
        "content_hash": "9f2c1e0b7a6d4c3b2a19f8e7d6c5b4a39f2c1e0b7a6d4c3b2a19f8e7d6c5b4a3",
        "change_note": "Weekly survey moved to Sunday.",
        "status_at_creation": "draft",
        "author": "olivia",
        "created_at": "2026-11-03T09:30:00Z",
        "content": {"study": {"slug": "companion-rct", "title": "Companion chatbots"}},
    },
    response_only=True,
)
_SUBMIT_EXAMPLE = OpenApiExample(
    "Protocol as YAML",
    value={
        "yaml": "study:\n  slug: companion-rct\n  title: Companion chatbots\n  ...",
        "change_note": "First draft.",
    },
    request_only=True,
)
_TEAM_INVITATION_EXAMPLE = OpenApiExample(
    "A pending team invitation",
    value={
        "id": 7,
        "email": "bruno@example.org",
        "role": "analyst",
        "status": "pending",
        "invited_by": "olivia",
        "created_at": "2026-11-02T15:00:00Z",
        "expires_at": "2026-11-16T15:00:00Z",
    },
    response_only=True,
)


# --- views -------------------------------------------------------------------------------


def _invalid(exc: ProtocolInvalid) -> Response:
    return Response(
        {"detail": "The protocol is not valid.", "errors": [e.as_dict() for e in exc.errors]},
        status=status.HTTP_400_BAD_REQUEST,
    )


def _parse_submission(data) -> tuple[dict, str]:
    ser = ProtocolSubmitSerializer(data=data)
    ser.is_valid(raise_exception=True)
    if "yaml" in ser.validated_data:
        doc = parse_protocol_text(ser.validated_data["yaml"])
    else:
        doc = parse_protocol_data(ser.validated_data["protocol"])
    return doc, ser.validated_data["change_note"]


class StudyListView(APIView):
    @extend_schema(responses=StudySerializer(many=True))
    def get(self, request):
        return Response(StudySerializer(studies_visible_to(request.user), many=True).data)

    @extend_schema(
        request=ProtocolSubmitSerializer,
        responses={201: StudySerializer, 400: ProtocolInvalidSerializer},
        examples=[_SUBMIT_EXAMPLE, _STUDY_EXAMPLE],
    )
    def post(self, request):
        """Create a draft study from a protocol; you become its owner."""
        try:
            doc, note = _parse_submission(request.data)
            study = study_create_from_protocol(doc=doc, author=request.user, change_note=note)
        except ProtocolInvalid as exc:
            return _invalid(exc)
        except EmailNotVerified as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_403_FORBIDDEN)
        return Response(StudySerializer(study).data, status=status.HTTP_201_CREATED)


class StudyDetailView(APIView):
    @extend_schema(responses=StudyDetailSerializer)
    def get(self, request, slug):
        study = get_study_for(request.user, slug)
        data = StudySerializer(study).data
        data["your_permissions"] = sorted(p.value for p in user_perms(request.user, study))
        return Response(data)


class StudyTransitionView(APIView):
    @extend_schema(
        request=TransitionSerializer,
        responses={
            200: StudySerializer,
            409: OpenApiResponse(
                LaunchBlockedSerializer,
                description="The transition is not allowed from the current status, or launch "
                "checklist items fail (listed in failing_checks).",
            ),
        },
    )
    def post(self, request, slug):
        study = get_study_for(request.user, slug, Perm.MANAGE_LIFECYCLE)
        ser = TransitionSerializer(data=request.data)
        ser.is_valid(raise_exception=True)
        try:
            study = study_transition(study=study, to=ser.validated_data["to"], actor=request.user)
        except LaunchBlocked as exc:
            # The same checklist the console's launch page shows, item by item.
            return Response(
                {
                    "detail": "Not launched: launch checklist items fail.",
                    "failing_checks": [
                        {"key": item.key, "label": item.label, "reason": item.why}
                        for item in exc.failing
                    ],
                },
                status=status.HTTP_409_CONFLICT,
            )
        except TransitionError as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
        return Response(StudySerializer(study).data)


class ArmListView(APIView):
    @extend_schema(responses=ArmSerializer(many=True))
    def get(self, request, slug):
        study = get_study_for(request.user, slug, Perm.VIEW_PROTOCOL)
        return Response(ArmSerializer(study.arms.all(), many=True).data)


class ProtocolView(APIView):
    """The current protocol as YAML (GET) or a new version of it (PUT)."""

    @extend_schema(responses=ProtocolYamlSerializer)
    def get(self, request, slug):
        study = get_study_for(request.user, slug, Perm.VIEW_PROTOCOL)
        version = study.current_version
        # A version from before model endpoints is shown with its arms' endpoints, ready to edit.
        return Response({"version": version.number, "yaml": to_yaml(protocol_for_editing(study))})

    @extend_schema(
        request=ProtocolSubmitSerializer,
        responses={
            200: OpenApiResponse(
                ProtocolVersionSavedSerializer, description="Unchanged: the current version."
            ),
            201: OpenApiResponse(ProtocolVersionSavedSerializer, description="A new version."),
            400: ProtocolInvalidSerializer,
        },
        examples=[_SUBMIT_EXAMPLE],
    )
    def put(self, request, slug):
        study = get_study_for(request.user, slug, Perm.EDIT_PROTOCOL)
        try:
            doc, note = _parse_submission(request.data)
            version, created = protocol_version_create(
                study=study, doc=doc, author=request.user, change_note=note
            )
        except ProtocolInvalid as exc:
            return _invalid(exc)
        data = ProtocolVersionSerializer(version).data
        data["created"] = created
        return Response(data, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)


class ProtocolValidateView(APIView):
    @extend_schema(
        request=ProtocolSubmitSerializer,
        responses={
            200: OpenApiResponse(
                ProtocolValidationSerializer,
                description="Valid or not: an invalid protocol is a normal answer here.",
            ),
            400: OpenApiResponse(
                ProtocolValidationSerializer,
                description="Input over a size or nesting ceiling, or a malformed request.",
            ),
        },
        examples=[_SUBMIT_EXAMPLE],
    )
    def post(self, request):
        """Validate a protocol without saving anything."""
        try:
            _parse_submission(request.data)
        except ProtocolInvalid as exc:
            # An invalid protocol is a normal answer here; input over a ceiling is a bad request.
            refused = isinstance(exc, ProtocolRefused)
            return Response(
                {"valid": False, "errors": [e.as_dict() for e in exc.errors]},
                status=status.HTTP_400_BAD_REQUEST if refused else status.HTTP_200_OK,
            )
        return Response({"valid": True, "errors": []})


class ModelEndpointListView(APIView):
    @extend_schema(responses=ModelEndpointSerializer(many=True))
    def get(self, request):
        """The model endpoints protocols may name, and the models each allows.

        Names only: where an endpoint is and which key it uses is platform configuration that
        researchers never see.
        """
        endpoints = list(endpoints_all().values())
        return Response(ModelEndpointSerializer(endpoints, many=True).data)


class VersionListView(APIView):
    @extend_schema(responses=ProtocolVersionSerializer(many=True), examples=[_VERSION_EXAMPLE])
    def get(self, request, slug):
        study = get_study_for(request.user, slug, Perm.VIEW_PROTOCOL)
        return Response(ProtocolVersionSerializer(versions_of(study), many=True).data)


class VersionDetailView(APIView):
    @extend_schema(responses=ProtocolVersionSerializer, examples=[_VERSION_EXAMPLE])
    def get(self, request, slug, number):
        study = get_study_for(request.user, slug, Perm.VIEW_PROTOCOL)
        version = get_object_or_404(study.versions, number=number)
        return Response(ProtocolVersionSerializer(version).data)


class VersionDiffView(APIView):
    @extend_schema(responses=VersionDiffSerializer)
    def get(self, request, slug, number, other):
        """Field-level changes and a unified YAML diff from version `number` to `other`."""
        study = get_study_for(request.user, slug, Perm.VIEW_PROTOCOL)
        old = get_object_or_404(study.versions, number=number)
        new = get_object_or_404(study.versions, number=other)
        return Response(
            {"from": old.number, "to": new.number, **diff_documents(old.content, new.content)}
        )


class ConsentDocumentListView(APIView):
    @extend_schema(
        responses=ConsentDocumentSerializer(many=True),
        parameters=[
            OpenApiParameter(
                "current",
                OpenApiTypes.STR,
                enum=["1"],
                description="1: only the documents participants consent to now.",
            )
        ],
    )
    def get(self, request, slug):
        study = get_study_for(request.user, slug)
        docs = study.consent_documents.all()
        if request.query_params.get("current") == "1":
            docs = current_consent_documents(study)
        return Response(ConsentDocumentSerializer(docs, many=True).data)


class MemberListView(APIView):
    @extend_schema(responses=MembershipSerializer(many=True))
    def get(self, request, slug):
        study = get_study_for(request.user, slug)
        members = study.memberships.select_related("user")
        return Response(MembershipSerializer(members, many=True).data)


class MemberDetailView(APIView):
    @extend_schema(
        responses={
            204: None,
            409: error("The membership cannot be removed (a study keeps at least one owner)."),
        }
    )
    def delete(self, request, slug, member_id):
        study = get_study_for(request.user, slug, Perm.MANAGE_MEMBERS)
        membership = get_object_or_404(Membership, study=study, pk=member_id)
        try:
            membership_remove(membership=membership, actor=request.user)
        except MembershipError as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
        return Response(status=status.HTTP_204_NO_CONTENT)


class InvitationListView(APIView):
    @extend_schema(responses=InvitationSerializer(many=True), examples=[_TEAM_INVITATION_EXAMPLE])
    def get(self, request, slug):
        """Pending invitations (owners only: they list email addresses)."""
        study = get_study_for(request.user, slug, Perm.MANAGE_MEMBERS)
        return Response(InvitationSerializer(pending_invitations(study), many=True).data)

    @extend_schema(
        request=InvitationCreateSerializer,
        responses={201: InvitationSerializer},
        examples=[_TEAM_INVITATION_EXAMPLE],
    )
    def post(self, request, slug):
        """Invite an email address to a role; they accept from the emailed console link."""
        study = get_study_for(request.user, slug, Perm.MANAGE_MEMBERS)
        ser = InvitationCreateSerializer(data=request.data)
        ser.is_valid(raise_exception=True)
        try:
            invitation = invitation_create(
                study=study,
                email=ser.validated_data["email"],
                role=ser.validated_data["role"],
                actor=request.user,
            )
        except InvitationError as exc:
            return Response({exc.code: [str(exc)]}, status=status.HTTP_400_BAD_REQUEST)
        return Response(InvitationSerializer(invitation).data, status=status.HTTP_201_CREATED)


class InvitationDetailView(APIView):
    @extend_schema(responses={204: None, 409: error("The invitation is no longer pending.")})
    def delete(self, request, slug, invitation_id):
        """Withdraw a pending invitation (its link stops working)."""
        study = get_study_for(request.user, slug, Perm.MANAGE_MEMBERS)
        invitation = get_object_or_404(StudyInvitation, study=study, pk=invitation_id)
        try:
            invitation_revoke(invitation=invitation, actor=request.user)
        except InvitationError as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
        return Response(status=status.HTTP_204_NO_CONTENT)
