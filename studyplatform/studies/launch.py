"""The launch checklist: what must be true before real participants are recruited.

`study_transition` runs it when a piloting study moves to recruiting, so the console, the API
and any other caller are held to the same checks. `launch_checklist` is plain data in, plain
data out; `study_launch_checklist` reads the study's protocol and the recorded model tests.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.utils import timezone
from django.utils.translation import gettext as _

from studyplatform.core.audit import audit_record
from studyplatform.core.model_endpoints import endpoint_usable
from studyplatform.core.models import AuditEvent

from .models import Arm, Study
from .protocol.document import study_languages, text_split
from .selectors import protocol_for_editing

# The audit action "Test models" writes for each arm; the audit log is the durable record of
# model tests, so the console and the API read the same results.
MODEL_CHECK_ACTION = "launch.model_check"
# Only the latest test per arm counts; a study has a handful of arms, so this bounds the read.
MODEL_CHECK_SCAN = 200

MODEL_CHECK_MAX_AGE = timedelta(hours=24)


@dataclass(frozen=True)
class CheckItem:
    key: str
    label: str
    ok: bool
    why: str


@dataclass(frozen=True)
class ModelCheck:
    """The latest recorded test message to one arm's model."""

    ok: bool
    at: datetime
    endpoint: str
    model: str
    error: str = ""


def _speech_item(arm: Mapping, env: Mapping[str, str]) -> CheckItem:
    """A voice arm's speech-to-text and text-to-speech models: registered, allowed, keyed."""
    problems = []
    for part in ("stt", "tts"):
        speech = arm["voice"].get(part) or {}
        ok, why = endpoint_usable(
            name=speech.get("endpoint", ""), model=speech.get("name", ""), env=env
        )
        if not ok:
            problems.append(f"{part}: {why}")
    return CheckItem(
        f"speech:{arm['key']}",
        _("Speech models configured for voice arm %(arm)s") % {"arm": arm["key"]},
        not problems,
        "; ".join(problems) if problems else _("Speech to text and text to speech are usable"),
    )


def launch_checklist(
    doc: Mapping, *, model_checks: Mapping[str, ModelCheck], env: Mapping[str, str], now: datetime
) -> list[CheckItem]:
    """What must be true before real participants are recruited; each item says why it fails."""
    items: list[CheckItem] = []
    languages = study_languages(doc)
    consent_langs = {d.get("language") for d in doc.get("consent", {}).get("documents", [])}
    missing = [lang for lang in languages if lang not in consent_langs]
    items.append(
        CheckItem(
            "consent",
            _("A consent document for every study language"),
            not missing,
            _("Missing: %(langs)s") % {"langs": ", ".join(missing)}
            if missing
            else _("Present for: %(langs)s") % {"langs": ", ".join(languages)},
        )
    )
    schedule = doc.get("surveys", {}).get("schedule", [])
    items.append(
        CheckItem(
            "schedule",
            _("At least one survey schedule entry"),
            bool(schedule),
            _("%(n)d entries") % {"n": len(schedule)} if schedule else _("No schedule entries"),
        )
    )
    safety = doc.get("safety", {})
    recipients = safety.get("alert_recipients", [])
    items.append(
        CheckItem(
            "alert_recipients",
            _("Safety alert recipients"),
            bool(recipients),
            ", ".join(recipients) if recipients else _("Nobody receives safety alerts"),
        )
    )
    resources = text_split(safety.get("crisis_resources", ""), languages)
    if isinstance(safety.get("crisis_resources"), str) and safety.get("crisis_resources"):
        resources = dict.fromkeys(languages, safety["crisis_resources"])
    no_resources = [lang for lang in languages if not (resources.get(lang) or "").strip()]
    items.append(
        CheckItem(
            "crisis_resources",
            _("Crisis resources in every study language"),
            not no_resources,
            _("Missing: %(langs)s") % {"langs": ", ".join(no_resources)}
            if no_resources
            else _("Present for: %(langs)s") % {"langs": ", ".join(languages)},
        )
    )
    for arm in doc.get("arms", []):
        model = arm.get("model", {})
        endpoint = model.get("endpoint", "")
        ok, why = endpoint_usable(name=endpoint, model=model.get("name", ""), env=env)
        items.append(
            CheckItem(
                f"endpoint:{arm['key']}",
                _("Model endpoint configured for arm %(arm)s") % {"arm": arm["key"]},
                ok,
                why,
            )
        )
        if arm.get("modality") == "voice" and isinstance(arm.get("voice"), Mapping):
            items.append(_speech_item(arm, env))
        check = model_checks.get(arm["key"])
        if check is None:
            ok, why = False, _("No test message yet: use Test models")
        elif check.endpoint != endpoint or check.model != model.get("name"):
            ok, why = False, _("The model changed since the last test: test again")
        elif now - check.at > MODEL_CHECK_MAX_AGE:
            ok, why = False, _("The last test is older than 24 hours: test again")
        elif not check.ok:
            ok, why = False, _("The last test failed: %(error)s") % {"error": check.error}
        else:
            ok, why = True, _("Replied at %(time)s") % {"time": check.at.strftime("%Y-%m-%d %H:%M")}
        items.append(
            CheckItem(
                f"model_check:{arm['key']}",
                _("Test message to arm %(arm)s's model in the last 24 hours") % {"arm": arm["key"]},
                ok,
                why,
            )
        )
    return items


def model_check_record(
    *, study: Study, arm: Arm, ok: bool, error: str, actor, detail: str = ""
) -> None:
    """Record the result of one test message to an arm's model (what "Test models" does).

    `error` is what researchers see (the endpoint and at most an HTTP status); `detail` is the
    exception text for the platform's operators, kept in the audit log only.
    """
    audit_record(
        actor=actor,
        action=MODEL_CHECK_ACTION,
        target=arm,
        study_slug=study.slug,
        data={
            "arm": arm.key,
            "ok": ok,
            "error": error,
            "detail": detail,
            "endpoint": arm.endpoint,
            "model": arm.model_name,
        },
    )


def model_checks_for(study: Study) -> dict[str, ModelCheck]:
    """The latest recorded model test per arm (audit events are the durable record)."""
    checks: dict[str, ModelCheck] = {}
    events = AuditEvent.objects.filter(study_slug=study.slug, action=MODEL_CHECK_ACTION)
    for event in events.order_by("-created_at", "-id")[:MODEL_CHECK_SCAN]:
        arm = event.data.get("arm")
        if arm and arm not in checks:
            checks[arm] = ModelCheck(
                ok=bool(event.data.get("ok")),
                at=event.created_at,
                endpoint=event.data.get("endpoint", ""),
                model=event.data.get("model", ""),
                error=event.data.get("error", ""),
            )
    return checks


def study_launch_checklist(
    study: Study, *, env: Mapping[str, str] | None = None, now: datetime | None = None
) -> list[CheckItem]:
    """The checklist for `study`'s current protocol and its latest model tests.

    The protocol is read as it would be edited (protocol_for_editing): a version saved before
    model endpoints existed is checked against the endpoint its arms were migrated to.
    """
    return launch_checklist(
        protocol_for_editing(study),
        model_checks=model_checks_for(study),
        env=os.environ if env is None else env,
        now=now or timezone.now(),
    )
