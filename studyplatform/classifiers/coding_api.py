"""Researcher API for coding samples (mirrors the console's coding pages): draw a blinded sample,
read its units without the classifier's answers, record one's own labels, read agreement.

Same permission as runs (the analysis permission); another study's researcher gets 404. A coder
sees only their own labels, never the classifier's or another coder's, until agreement is asked
for.
"""

from __future__ import annotations

from typing import Any

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from studyplatform.studies.permissions import get_study_for
from studyplatform.studies.roles import Perm

from .coding import (
    MAX_SAMPLE_SIZE,
    MAX_SEED,
    CodingRefused,
    coder_progress,
    coding_agreement,
    coding_items_turns,
    coding_sample_create,
    human_label_record,
)
from .models import CodingSample, HumanLabel
from .selectors import coding_samples_for_study


def _samples(study):
    return CodingSample.objects.filter(study=study).select_related("created_by")


def sample_row(sample: CodingSample, coder) -> dict[str, Any]:
    coded = getattr(sample, "coded_by_me", None)
    if coded is None:
        coded, _ = coder_progress(sample, coder)
    return {
        "id": sample.pk,
        "classifier": sample.ref,
        "judge": f"{sample.judge_endpoint}/{sample.judge_model}",
        "size": getattr(sample, "n_items", None) or sample.items.count(),
        "seed": sample.seed,
        "created_at": sample.created_at.isoformat(),
        "created_by": sample.created_by.get_username() if sample.created_by else None,
        "question": sample.definition.get("question", {}),
        "levels": sample.definition.get("levels", []),
        "coded_by_me": coded,
    }


class SampleCreateSerializer(serializers.Serializer):
    classifier = serializers.CharField(max_length=64, help_text="A classifier key of the protocol.")
    size = serializers.IntegerField(min_value=1, max_value=MAX_SAMPLE_SIZE, required=False)
    seed = serializers.IntegerField(min_value=0, max_value=MAX_SEED, required=False)


class LevelSerializer(serializers.Serializer):
    code = serializers.CharField()
    label = serializers.DictField(child=serializers.CharField())


class SampleSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    classifier = serializers.CharField()
    judge = serializers.CharField()
    size = serializers.IntegerField()
    seed = serializers.IntegerField()
    created_at = serializers.DateTimeField()
    created_by = serializers.CharField(allow_null=True)
    question = serializers.DictField(child=serializers.CharField())
    levels = LevelSerializer(many=True)
    coded_by_me = serializers.IntegerField()


class TurnSerializer(serializers.Serializer):
    role = serializers.ChoiceField(choices=["user", "assistant"])
    text = serializers.CharField(allow_blank=True)


class ItemSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    position = serializers.IntegerField()
    turns = TurnSerializer(many=True)
    my_label = serializers.CharField(allow_null=True)


class SampleDetailSerializer(SampleSerializer):
    items = ItemSerializer(many=True)


class LabelSerializer(serializers.Serializer):
    label = serializers.CharField(max_length=30)


class FigureSerializer(serializers.Serializer):
    value = serializers.FloatField(allow_null=True)
    ci_low = serializers.FloatField(allow_null=True)
    ci_high = serializers.FloatField(allow_null=True)


class WeightedKappaSerializer(serializers.Serializer):
    linear = FigureSerializer(required=False)
    quadratic = FigureSerializer(required=False)


class ComparisonFields(serializers.Serializer):
    n = serializers.IntegerField()
    percent_agreement = serializers.FloatField(allow_null=True)
    kappa = FigureSerializer()
    weighted_kappa = WeightedKappaSerializer()
    precision = FigureSerializer()
    recall = FigureSerializer()
    f1 = FigureSerializer()
    averaging = serializers.CharField()


class CoderComparisonSerializer(ComparisonFields):
    coder = serializers.CharField()


class CoderPairSerializer(ComparisonFields):
    coder_a = serializers.CharField()
    coder_b = serializers.CharField()


class CoderCountSerializer(serializers.Serializer):
    coder = serializers.CharField()
    coded = serializers.IntegerField()


class AgreementSerializer(serializers.Serializer):
    sample = serializers.IntegerField()
    classifier = serializers.CharField()
    judge = serializers.CharField()
    output_type = serializers.ChoiceField(choices=["binary", "ordinal", "categorical"])
    levels = serializers.ListField(child=serializers.CharField())
    units = serializers.IntegerField()
    coders = CoderCountSerializer(many=True)
    classifier_vs_coder = CoderComparisonSerializer(many=True)
    between_coders = CoderPairSerializer(many=True)


def _refused(exc: CodingRefused) -> Response:
    return Response(
        {field: [message] for field, message in exc.errors.items()},
        status=status.HTTP_400_BAD_REQUEST,
    )


class CodingSampleListView(APIView):
    @extend_schema(responses=SampleSerializer(many=True))
    def get(self, request, slug):
        study = get_study_for(request.user, slug, Perm.RUN_ANALYSIS)
        samples = coding_samples_for_study(study, coder=request.user)[:200]
        return Response([sample_row(s, request.user) for s in samples])

    @extend_schema(request=SampleCreateSerializer, responses={201: SampleSerializer})
    def post(self, request, slug):
        """Draw a blinded random sample of a classifier's labelled units (seeded, stored)."""
        study = get_study_for(request.user, slug, Perm.RUN_ANALYSIS)
        try:
            sample = coding_sample_create(study=study, created_by=request.user, data=request.data)
        except CodingRefused as exc:
            return _refused(exc)
        return Response(sample_row(sample, request.user), status=status.HTTP_201_CREATED)


class CodingSampleDetailView(APIView):
    @extend_schema(responses=SampleDetailSerializer)
    def get(self, request, slug, sample_id):
        """The sample's units as the judge read them, with the caller's own labels only."""
        study = get_study_for(request.user, slug, Perm.RUN_ANALYSIS)
        sample = get_object_or_404(_samples(study), id=sample_id)
        mine = dict(
            HumanLabel.objects.filter(item__sample=sample, coder=request.user).values_list(
                "item_id", "label"
            )
        )
        rows = list(sample.items.select_related("classifier_label"))
        turns = coding_items_turns(sample, rows)
        items = [
            {
                "id": item.pk,
                "position": item.position,
                "turns": [{"role": role, "text": text} for role, text in turns[item.pk]],
                "my_label": mine.get(item.pk),
            }
            for item in rows
        ]
        return Response({**sample_row(sample, request.user), "items": items})


class CodingLabelView(APIView):
    @extend_schema(request=LabelSerializer, responses=LabelSerializer)
    def put(self, request, slug, sample_id, item_id):
        """Record (or change) the caller's label for one unit."""
        study = get_study_for(request.user, slug, Perm.RUN_ANALYSIS)
        sample = get_object_or_404(_samples(study), id=sample_id)
        item = get_object_or_404(sample.items.select_related("sample"), id=item_id)
        data = request.data if isinstance(request.data, dict) else {}
        unknown = sorted(str(k)[:40] for k in data if k != "label")
        if unknown:
            return Response(
                {"body": ["unknown fields: " + ", ".join(unknown[:10])]},
                status=status.HTTP_400_BAD_REQUEST,
            )
        try:
            row = human_label_record(item=item, coder=request.user, label=data.get("label"))
        except CodingRefused as exc:
            return _refused(exc)
        return Response({"label": row.label})


class CodingAgreementView(APIView):
    @extend_schema(responses=AgreementSerializer)
    def get(self, request, slug, sample_id):
        """Kappa (weighted for ordinal answers), precision, recall and F1 with bootstrap
        intervals: the classifier against each coder, and between coders."""
        study = get_study_for(request.user, slug, Perm.RUN_ANALYSIS)
        sample = get_object_or_404(_samples(study), id=sample_id)
        return Response(coding_agreement(sample))
