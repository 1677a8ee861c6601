"""Writes for studies: creating studies from protocols, versioning, lifecycle, membership.

Every function here is atomic and writes an audit event.
"""

from __future__ import annotations

import hashlib
from typing import Any

from django.db import transaction

from studyplatform.core.audit import audit_record

from .launch import CheckItem, study_launch_checklist
from .models import Arm, ConsentDocument, Membership, ProtocolVersion, Study
from .protocol import ProtocolError, ProtocolInvalid, content_hash, parse_protocol_data
from .roles import Role


def _text(value: Any, language: str = "en") -> str:
    if isinstance(value, dict):
        return value.get(language) or next(iter(value.values()), "")
    return value or ""


def consent_text_hash(doc: dict[str, Any]) -> str:
    """Hash of exactly what a participant reads and ticks: title, body and checkbox labels."""
    parts = [doc["title"], doc["body"]] + [
        f"{c['key']}|{c['label']}|{bool(c.get('required'))}" for c in doc["checkboxes"]
    ]
    return hashlib.sha256("\n\x1e".join(parts).encode("utf-8")).hexdigest()


def _apply_study_fields(study: Study, doc: dict[str, Any]) -> None:
    meta = doc["study"]
    study.title = meta["title"]
    study.description = _text(meta.get("description"))
    study.timezone = meta["timezone"]
    study.target_enrollment = meta.get("target_enrollment")
    study.duration_days = meta["duration_days"]


def _sync_arms(study: Study, doc: dict[str, Any]) -> None:
    keys = []
    for arm in doc["arms"]:
        model = arm["model"]
        keys.append(arm["key"])
        label = arm.get("label") or arm["key"]
        Arm.objects.update_or_create(
            study=study,
            key=arm["key"],
            defaults={
                "label": label if isinstance(label, dict) else {"en": label},
                "weight": arm.get("weight", 1),
                "provider": model["provider"],
                "model_name": model["name"],
                "base_url": model.get("base_url", ""),
                "api_key_env": model.get("api_key_env", ""),
                "context_tokens": model.get("context_tokens", 8192),
                "system_prompt": arm.get("system_prompt", ""),
                "parameters": arm.get("parameters", {}),
                "is_active": True,
            },
        )
    # Arms are never deleted: allocations point at them. A removed arm stops taking new people.
    study.arms.exclude(key__in=keys).update(is_active=False)


def _sync_consent(study: Study, doc: dict[str, Any], version: ProtocolVersion) -> None:
    signature = doc["consent"].get("signature", ConsentDocument.Signature.CHECKBOX)
    errors = []
    for i, cdoc in enumerate(doc["consent"]["documents"]):
        digest = consent_text_hash(cdoc)
        existing = ConsentDocument.objects.filter(
            study=study, language=cdoc["language"], version=cdoc["version"]
        ).first()
        if existing is not None:
            if existing.text_hash != digest or existing.signature != signature:
                errors.append(
                    ProtocolError(
                        f"consent.documents[{i}].version",
                        f"the {cdoc['language']} consent text changed but its version is still "
                        f"{cdoc['version']}; increase the version so participants re-consent",
                    )
                )
            continue
        newest = (
            ConsentDocument.objects.filter(study=study, language=cdoc["language"])
            .order_by("-version")
            .first()
        )
        if newest is not None and cdoc["version"] < newest.version:
            errors.append(
                ProtocolError(
                    f"consent.documents[{i}].version",
                    f"must not go back: version {newest.version} already exists",
                )
            )
            continue
        ConsentDocument.objects.create(
            study=study,
            version=cdoc["version"],
            language=cdoc["language"],
            title=cdoc["title"],
            body=cdoc["body"],
            checkboxes=cdoc["checkboxes"],
            signature=signature,
            text_hash=digest,
            protocol_version=version,
        )
    if errors:
        raise ProtocolInvalid(errors)


@transaction.atomic
def study_create_from_protocol(*, doc: dict[str, Any], author, change_note: str = "") -> Study:
    """Create a draft study from a validated protocol document; the author becomes owner."""
    doc = parse_protocol_data(doc)
    slug = doc["study"]["slug"]
    if Study.objects.filter(slug=slug).exists():
        raise ProtocolInvalid([ProtocolError("study.slug", f"a study called {slug!r} exists")])
    study = Study(slug=slug, created_by=author)
    _apply_study_fields(study, doc)
    study.save()
    if author is not None:
        Membership.objects.create(study=study, user=author, role=Role.OWNER)
    _new_version(study=study, doc=doc, author=author, change_note=change_note or "Created")
    audit_record(actor=author, action="study.create", target=study, study_slug=slug)
    return study


def _new_version(*, study: Study, doc: dict[str, Any], author, change_note: str) -> ProtocolVersion:
    last = study.versions.order_by("-number").first()
    version = ProtocolVersion.objects.create(
        study=study,
        number=(last.number + 1) if last else 1,
        content=doc,
        content_hash=content_hash(doc),
        change_note=change_note,
        status_at_creation=study.status,
        author=author,
    )
    _sync_arms(study, doc)
    _sync_consent(study, doc, version)
    _apply_study_fields(study, doc)
    study.current_version = version
    study.save()
    return version


@transaction.atomic
def protocol_version_create(
    *, study: Study, doc: dict[str, Any], author, change_note: str = ""
) -> tuple[ProtocolVersion, bool]:
    """Record a new protocol version; returns (version, created).

    Versions are immutable: every change makes a new one, and data rows record the version they
    were collected under. Submitting an unchanged document creates nothing. Once a study is live
    a change note is required, because reviewers of the dataset will ask why the protocol changed.
    """
    doc = parse_protocol_data(doc)
    study = Study.objects.select_for_update().get(pk=study.pk)
    if doc["study"]["slug"] != study.slug:
        raise ProtocolInvalid(
            [ProtocolError("study.slug", f"must stay {study.slug!r} (it identifies the study)")]
        )
    if study.status == Study.Status.CLOSED:
        raise ProtocolInvalid([ProtocolError("", "the study is closed; its protocol is final")])
    current = study.current_version
    if current is not None and current.content_hash == content_hash(doc):
        return current, False
    if study.is_live and not change_note.strip():
        raise ProtocolInvalid(
            [ProtocolError("change_note", "describe the change (required once a study is live)")]
        )
    version = _new_version(study=study, doc=doc, author=author, change_note=change_note)
    for hook in PROTOCOL_CHANGE_HOOKS:
        transaction.on_commit(lambda hook=hook: hook(study, version))
    audit_record(
        actor=author,
        action="protocol.version_create",
        target=version,
        study_slug=study.slug,
        data={"number": version.number, "hash": version.content_hash, "note": change_note},
    )
    return version, True


# Apps that react to a new protocol version register here (the survey engine reschedules
# future occurrences). Called after the version commits.
PROTOCOL_CHANGE_HOOKS: list = []


def register_protocol_change_hook(func):
    PROTOCOL_CHANGE_HOOKS.append(func)
    return func


class TransitionError(ValueError):
    pass


class LaunchBlocked(TransitionError):
    """A piloting study may not start recruiting: `failing` are the checklist items that fail."""

    def __init__(self, failing: list[CheckItem]):
        self.failing = failing
        super().__init__(
            f"not launched: {len(failing)} launch checklist item(s) fail: "
            + ", ".join(item.key for item in failing)
        )


@transaction.atomic
def study_transition(*, study: Study, to: str, actor) -> Study:
    """Move a study along its lifecycle. Launching (piloting -> recruiting) runs the launch
    checklist here, so no caller (console, API, admin, command) can launch a study that fails
    it; a failure raises `LaunchBlocked` with the failing items."""
    study = Study.objects.select_for_update().get(pk=study.pk)
    if to not in Study.Status.values:
        raise TransitionError(f"unknown status {to!r}; use one of: {', '.join(Study.Status)}")
    if not study.can_move_to(to):
        allowed = ", ".join(sorted(Study.TRANSITIONS[Study.Status(study.status)])) or "none"
        raise TransitionError(
            f"a {study.status} study cannot move to {to} (allowed from here: {allowed})"
        )
    if study.status == Study.Status.PILOTING and to == Study.Status.RECRUITING:
        failing = [item for item in study_launch_checklist(study) if not item.ok]
        if failing:
            raise LaunchBlocked(failing)
    old = study.status
    study.status = to
    study.save(update_fields=["status", "updated_at"])
    audit_record(
        actor=actor,
        action="study.transition",
        target=study,
        study_slug=study.slug,
        data={"from": old, "to": to},
    )
    return study


class MembershipError(ValueError):
    pass


@transaction.atomic
def membership_add(*, study: Study, user, role: str, actor) -> Membership:
    if role not in {r.value for r in Role}:
        valid = ", ".join(r.value for r in Role)
        raise MembershipError(f"unknown role {role!r}; use one of: {valid}")
    membership, created = Membership.objects.get_or_create(study=study, user=user, role=role)
    if created:
        audit_record(
            actor=actor,
            action="membership.add",
            target=membership,
            study_slug=study.slug,
            data={"user": user.get_username(), "role": role},
        )
    return membership


@transaction.atomic
def membership_remove(*, membership: Membership, actor) -> None:
    study = membership.study
    if membership.role == Role.OWNER:
        owners = Membership.objects.select_for_update().filter(study=study, role=Role.OWNER)
        if owners.count() <= 1:
            raise MembershipError("a study must keep at least one owner")
    audit_record(
        actor=actor,
        action="membership.remove",
        target=membership,
        study_slug=study.slug,
        data={"user": membership.user.get_username(), "role": membership.role},
    )
    membership.delete()
