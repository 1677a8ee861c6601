"""Validation against people: blinded coding samples, human labels, and agreement figures.

A researcher draws a random sample of the units one classifier version has labelled (seeded,
the seed stored, the draw kept as rows so every coder sees the same units in the same order).
Coders read each unit as the judge read it (anonymized when the judge's label was made from
anonymized text; never more context than the judge had) and answer the classifier's question
without seeing its answer. Agreement (classifier vs each coder, and between coders) is computed
from the stored labels by the pure module agreement.py.

The validation figures of a classifier (used by reports and exports) are those of its most
recent sample with any human codes: each coder against the classifier.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from studyplatform.chat.models import Conversation
from studyplatform.core.audit import audit_record
from studyplatform.studies.models import Study

from . import agreement as stats
from .models import ClassifierLabel, CodingItem, CodingSample, HumanLabel
from .services import RunRefused, conversation_turns, study_classifiers
from .units import units_for

MAX_SAMPLE_SIZE = 1000
DEFAULT_SAMPLE_SIZE = 50
MAX_SEED = 2**31 - 1
SAMPLE_FIELDS = {"classifier", "size", "seed"}


class CodingRefused(RunRefused):
    """A coding request cannot be done; `errors` maps each field to a researcher-facing reason."""


def _whole(value: Any, field: str, low: int, high: int, errors: dict[str, str]) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int):
        errors[field] = "must be a whole number"
        return None
    if not low <= value <= high:
        errors[field] = f"must be between {low} and {high}"
        return None
    return value


def coding_sample_create(*, study: Study, created_by, data: Mapping[str, Any]) -> CodingSample:
    """Draw a blinded sample of `data["size"]` units labelled by classifier `data["classifier"]`
    (a key of the study's protocol; its version and judge are the protocol's), audited."""
    if not isinstance(data, Mapping):
        raise CodingRefused({"body": "must be a mapping of fields"})
    errors: dict[str, str] = {}
    unknown = sorted(str(k)[:40] for k in data if k not in SAMPLE_FIELDS)
    if unknown:
        errors["body"] = "unknown fields: " + ", ".join(unknown[:10])
    section = study_classifiers(study)
    by_key = section.by_key() if section else {}
    key = data.get("classifier")
    if not isinstance(key, str) or key not in by_key:
        errors["classifier"] = (
            f"must be one of the protocol's classifiers: {', '.join(by_key) or '(none)'}"
        )
    size = _whole(data.get("size"), "size", 1, MAX_SAMPLE_SIZE, errors)
    seed = _whole(data.get("seed"), "seed", 0, MAX_SEED, errors)
    if errors:
        raise CodingRefused(errors)
    definition = by_key[key]
    judge = definition.judge
    size = size or DEFAULT_SAMPLE_SIZE
    seed = seed if seed is not None else random.SystemRandom().randrange(MAX_SEED)
    eligible = sorted(
        ClassifierLabel.objects.filter(
            study=study,
            classifier_key=definition.key,
            classifier_version=definition.version,
            judge_endpoint=judge.endpoint,
            judge_model=judge.model,
            outcome=ClassifierLabel.Outcome.LABEL,
        ).values_list("pk", flat=True)
    )
    if not eligible:
        raise CodingRefused(
            {"classifier": f"{definition.ref} has no labels yet: run it before coding a sample"}
        )
    drawn = random.Random(seed).sample(eligible, min(size, len(eligible)))
    with transaction.atomic():
        sample = CodingSample.objects.create(
            study=study,
            classifier_key=definition.key,
            classifier_version=definition.version,
            judge_endpoint=judge.endpoint,
            judge_model=judge.model,
            definition=definition.summary(),
            size=len(drawn),
            seed=seed,
            created_by=created_by,
        )
        CodingItem.objects.bulk_create(
            CodingItem(sample=sample, position=i + 1, classifier_label_id=pk)
            for i, pk in enumerate(drawn)
        )
        audit_record(
            actor=created_by,
            action="coding_sample.created",
            target=sample,
            study_slug=study.slug,
            data={
                "classifier": definition.ref,
                "judge": judge.name,
                "size": len(drawn),
                "requested": size,
                "seed": seed,
            },
        )
    return sample


def coding_items_turns(
    sample: CodingSample, items: list[CodingItem]
) -> dict[int, list[tuple[str, str]]]:
    """What the judge read for each item's unit, as (role, text) oldest first: the same scope
    and window, anonymized when the judge's label was made from anonymized text. An item whose
    text is gone (deleted since it was labelled) maps to an empty list. One pass over the
    conversations involved, per text mode (raw / anonymized)."""
    out: dict[int, list[tuple[str, str]]] = {item.pk: [] for item in items}
    for anonymized in (False, True):
        chosen = [i for i in items if i.classifier_label.anonymized == anonymized]
        if not chosen:
            continue
        conversations = {
            c.pk: c
            for c in Conversation.objects.filter(
                pk__in={i.classifier_label.conversation_id for i in chosen}
            ).only("pk", "participant_id", "active_leaf_id")
        }
        turns = conversation_turns(conversations, anonymize=anonymized)
        wanted = {
            (i.classifier_label.conversation_id, i.classifier_label.target_key): i.pk
            for i in chosen
        }
        for pk, conversation in conversations.items():
            for unit in units_for(
                sample.definition["scope"],
                pk,
                turns[pk],
                window_turns=sample.definition.get("window_turns"),
                active_leaf_id=conversation.active_leaf_id,
            ):
                item_pk = wanted.get((pk, unit.target_key))
                if item_pk is not None:
                    out[item_pk] = list(unit.turns)
    return out


def coding_item_turns(item: CodingItem, sample: CodingSample) -> list[tuple[str, str]]:
    """The turns of one item (see coding_items_turns)."""
    return coding_items_turns(sample, [item])[item.pk]


def human_label_record(*, item: CodingItem, coder, label: Any) -> HumanLabel:
    """Store (or replace) `coder`'s answer for `item`; the answer must be one of the levels."""
    codes = item.sample.level_codes
    if not isinstance(label, str) or label not in codes:
        raise CodingRefused({"label": f"must be one of: {', '.join(codes)}"})
    row, _ = HumanLabel.objects.update_or_create(
        item=item, coder=coder, defaults={"label": label, "labelled_at": timezone.now()}
    )
    return row


def coder_progress(sample: CodingSample, coder) -> tuple[int, CodingItem | None]:
    """How many items `coder` has coded, and the first one they have not (None when done)."""
    done = set(
        HumanLabel.objects.filter(item__sample=sample, coder=coder).values_list(
            "item_id", flat=True
        )
    )
    for item in sample.items.all():
        if item.pk not in done:
            return len(done), item
    return len(done), None


def coding_agreement(
    sample: CodingSample, *, resamples: int = stats.DEFAULT_RESAMPLES
) -> dict[str, Any]:
    """Agreement figures of a sample: the classifier against each coder (coder as reference),
    and each pair of coders (the one who coded first as reference), over the units both
    labelled. Bootstrap intervals use the sample's seed."""
    levels = sample.level_codes
    output_type = sample.definition.get("output_type", "categorical")
    items = list(sample.items.select_related("classifier_label"))
    machine = {item.pk: item.classifier_label.label for item in items}
    by_coder: dict[int, dict[int, str]] = {}
    for item_id, coder_id, label in (
        HumanLabel.objects.filter(item__sample=sample)
        .order_by("coder_id", "item_id")
        .values_list("item_id", "coder_id", "label")
    ):
        by_coder.setdefault(coder_id, {})[item_id] = label
    names = {u.pk: u.get_username() for u in get_user_model().objects.filter(pk__in=list(by_coder))}

    def compare(reference: dict[int, str], other: dict[int, str]) -> dict[str, Any]:
        shared = [pk for pk in (i.pk for i in items) if pk in reference and pk in other]
        figures = stats.agreement(
            [reference[pk] for pk in shared],
            [other[pk] for pk in shared],
            levels=levels,
            output_type=output_type,
            seed=sample.seed,
            resamples=resamples,
        )
        return figures.as_dict()

    coders = sorted(by_coder, key=lambda pk: names.get(pk, ""))
    return {
        "sample": sample.pk,
        "classifier": sample.ref,
        "judge": f"{sample.judge_endpoint}/{sample.judge_model}",
        "output_type": output_type,
        "levels": levels,
        "units": len(items),
        "coders": [{"coder": names.get(pk, str(pk)), "coded": len(by_coder[pk])} for pk in coders],
        "classifier_vs_coder": [
            {"coder": names.get(pk, str(pk)), **compare(by_coder[pk], machine)} for pk in coders
        ],
        "between_coders": [
            {
                "coder_a": names.get(a, str(a)),
                "coder_b": names.get(b, str(b)),
                **compare(by_coder[a], by_coder[b]),
            }
            for i, a in enumerate(coders)
            for b in coders[i + 1 :]
        ],
    }


def classifier_validation(study: Study) -> dict[str, dict[str, Any]]:
    """Each classifier's validation figures by `key@version`, from its most recent coding
    sample with human codes (judge included: a figure holds for one judge model). A classifier
    with none is absent: callers say that no validation exists."""
    out: dict[str, dict[str, Any]] = {}
    samples = CodingSample.objects.filter(study=study, items__human_labels__isnull=False)
    for sample in samples.distinct().order_by("-created_at", "-id"):
        if sample.ref in out:
            continue
        figures = coding_agreement(sample)
        out[sample.ref] = {
            "sample": sample.pk,
            "judge": figures["judge"],
            "units": figures["units"],
            "classifier_vs_coder": figures["classifier_vs_coder"],
            "between_coders": figures["between_coders"],
        }
    return out


def validation_summary(figures: dict[str, Any] | None) -> str:
    """One line for a report or codebook: kappa and F1 with intervals per coder, or that no
    validation exists."""
    if not figures:
        return "No validation against human coders exists for this classifier."

    def fmt(figure: dict[str, Any]) -> str:
        if figure["value"] is None:
            return "undefined"
        text = f"{figure['value']:.2f}"
        if figure["ci_low"] is not None:
            text += f" [{figure['ci_low']:.2f}, {figure['ci_high']:.2f}]"
        return text

    parts = [
        f"vs {row['coder']} (n={row['n']}): kappa {fmt(row['kappa'])}, F1 {fmt(row['f1'])}"
        for row in figures["classifier_vs_coder"]
    ]
    parts += [
        f"{row['coder_a']} vs {row['coder_b']} (n={row['n']}): kappa {fmt(row['kappa'])}"
        for row in figures["between_coders"]
    ]
    return f"Validated on coding sample {figures['sample']} ({figures['judge']}): " + "; ".join(
        parts
    )
