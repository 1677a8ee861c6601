"""Researcher API for studies, arms, protocol versions, consent documents and members.

Every endpoint resolves the study through `get_study_for`, which returns 404 to non-members and
403 to members whose role lacks the permission.
"""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from .models import Membership
from .permissions import get_study_for, user_perms
from .protocol import (
    ProtocolInvalid,
    ProtocolRefused,
    diff_documents,
    parse_protocol_text,
    to_yaml,
)
from .protocol.validate import parse_protocol_data
from .roles import Perm
from .selectors import current_consent_documents, studies_visible_to, versions_of
from .serializers import (
    ArmSerializer,
    ConsentDocumentSerializer,
    MembershipCreateSerializer,
    MembershipSerializer,
    ProtocolSubmitSerializer,
    ProtocolVersionSerializer,
    StudySerializer,
    TransitionSerializer,
)
from .services import (
    MembershipError,
    TransitionError,
    membership_add,
    membership_remove,
    protocol_version_create,
    study_create_from_protocol,
    study_transition,
)


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

    @extend_schema(request=ProtocolSubmitSerializer, responses={201: StudySerializer})
    def post(self, request):
        """Create a draft study from a protocol; you become its owner."""
        try:
            doc, note = _parse_submission(request.data)
            study = study_create_from_protocol(doc=doc, author=request.user, change_note=note)
        except ProtocolInvalid as exc:
            return _invalid(exc)
        return Response(StudySerializer(study).data, status=status.HTTP_201_CREATED)


class StudyDetailView(APIView):
    @extend_schema(responses=StudySerializer)
    def get(self, request, slug):
        study = get_study_for(request.user, slug)
        data = StudySerializer(study).data
        data["your_permissions"] = sorted(p.value for p in user_perms(request.user, study))
        return Response(data)


class StudyTransitionView(APIView):
    @extend_schema(request=TransitionSerializer, responses=StudySerializer)
    def post(self, request, slug):
        study = get_study_for(request.user, slug, Perm.MANAGE_LIFECYCLE)
        ser = TransitionSerializer(data=request.data)
        ser.is_valid(raise_exception=True)
        try:
            study = study_transition(study=study, to=ser.validated_data["to"], actor=request.user)
        except TransitionError as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
        return Response(StudySerializer(study).data)


class ArmListView(APIView):
    @extend_schema(responses=ArmSerializer(many=True))
    def get(self, request, slug):
        study = get_study_for(request.user, slug)
        return Response(ArmSerializer(study.arms.all(), many=True).data)


class ProtocolView(APIView):
    """The current protocol as YAML (GET) or a new version of it (PUT)."""

    def get(self, request, slug):
        study = get_study_for(request.user, slug)
        version = study.current_version
        return Response({"version": version.number, "yaml": to_yaml(version.content)})

    @extend_schema(request=ProtocolSubmitSerializer, responses=ProtocolVersionSerializer)
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
    @extend_schema(request=ProtocolSubmitSerializer)
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


class VersionListView(APIView):
    @extend_schema(responses=ProtocolVersionSerializer(many=True))
    def get(self, request, slug):
        study = get_study_for(request.user, slug)
        return Response(ProtocolVersionSerializer(versions_of(study), many=True).data)


class VersionDetailView(APIView):
    @extend_schema(responses=ProtocolVersionSerializer)
    def get(self, request, slug, number):
        study = get_study_for(request.user, slug)
        version = get_object_or_404(study.versions, number=number)
        return Response(ProtocolVersionSerializer(version).data)


class VersionDiffView(APIView):
    def get(self, request, slug, number, other):
        """Field-level changes and a unified YAML diff from version `number` to `other`."""
        study = get_study_for(request.user, slug)
        old = get_object_or_404(study.versions, number=number)
        new = get_object_or_404(study.versions, number=other)
        return Response(
            {"from": old.number, "to": new.number, **diff_documents(old.content, new.content)}
        )


class ConsentDocumentListView(APIView):
    @extend_schema(responses=ConsentDocumentSerializer(many=True))
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

    @extend_schema(request=MembershipCreateSerializer, responses={201: MembershipSerializer})
    def post(self, request, slug):
        study = get_study_for(request.user, slug, Perm.MANAGE_MEMBERS)
        ser = MembershipCreateSerializer(data=request.data)
        ser.is_valid(raise_exception=True)
        membership = membership_add(
            study=study,
            user=ser.validated_data["username"],
            role=ser.validated_data["role"],
            actor=request.user,
        )
        return Response(MembershipSerializer(membership).data, status=status.HTTP_201_CREATED)


class MemberDetailView(APIView):
    def delete(self, request, slug, member_id):
        study = get_study_for(request.user, slug, Perm.MANAGE_MEMBERS)
        membership = get_object_or_404(Membership, study=study, pk=member_id)
        try:
            membership_remove(membership=membership, actor=request.user)
        except MembershipError as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
        return Response(status=status.HTTP_204_NO_CONTENT)
