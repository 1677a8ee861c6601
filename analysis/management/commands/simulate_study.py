"""``python manage.py simulate_study <slug> --participants N --days D --effect X [--seed S]``.

Fills a draft or piloting study with a synthetic cohort whose generative model is known (see
``docs/analysis.md``), so the analysis pipeline can be checked end to end. Usage and outcomes
come from the latent daily process of :mod:`analysis.simulate` (person levels, daily mood,
usage drift), not from the regressor the analysis computes: ``--effect`` is a *lagged*
within-person effect (messages sent in the window before the previous survey shift the next
outcome), which a lagged within-person model estimates; the same-period ``<x>_within`` term of
the usage model is an association with true value 0 here.
Rows are bulk-created (participants with vault, consent and allocation rows through the
participants service ``simulated_participants_create``; conversations; messages; invitations;
scored responses) so 10^5 messages take seconds. All participants are
pilots (``is_pilot=True``) and no schedule cursors are created, so the survey engine leaves the
simulated rows alone.
"""

from __future__ import annotations

import datetime as dt
from functools import partial
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
from django.core.management.base import BaseCommand, CommandError
from django.db import connection, models, transaction
from django.utils import timezone

from analysis.simulate import CohortSpec, latent_days, latent_people, wellbeing
from studyplatform.chat.models import Conversation, Message
from studyplatform.participants.services import SimulationError, simulated_participants_create
from studyplatform.studies.models import Study
from surveys.instruments import Instrument, get_instrument
from surveys.models import Invitation, Response
from surveys.scoring import score_answers

VOCABULARY = (
    "i",
    "today",
    "work",
    "feel",
    "think",
    "about",
    "really",
    "need",
    "help",
    "with",
    "my",
    "friend",
    "tired",
    "good",
    "day",
    "week",
    "sleep",
    "happy",
    "sad",
    "worried",
    "plan",
    "idea",
    "question",
    "write",
    "code",
    "email",
    "family",
    "weekend",
    "music",
    "book",
    "recipe",
    "travel",
    "lonely",
    "stressed",
    "calm",
    "great",
    "thanks",
    "tomorrow",
    "maybe",
    "explain",
    "why",
    "how",
)
SURVEY_RULES = ("enrollment", "recurring")


def outcome_answers(
    instrument: Instrument, score_name: str, target: float, rng: np.random.Generator
) -> dict[str, Any]:
    """Item answers whose ``score_name`` is as close to ``target`` as the items allow.

    The target raw sum is spread over the items at random (each item between its bounds);
    reverse-scored items are written mirrored so they contribute what was planned.
    """
    score = next(s for s in instrument.scores if s.name == score_name)
    items = [i for i in instrument.items if i.id in score.items]
    lows = np.array([i.value_bounds()[0] for i in items], dtype=float)
    highs = np.array([i.value_bounds()[1] for i in items], dtype=float)
    per = target / score.multiplier
    raw = per * len(items) if score.method == "mean" else per
    raw = round(min(max(raw, lows.sum()), highs.sum()))
    contrib = lows.copy()
    remaining = raw - int(lows.sum())
    while remaining > 0:
        open_items = np.flatnonzero(contrib < highs)
        contrib[rng.choice(open_items)] += 1
        remaining -= 1
    answers: dict[str, Any] = {}
    for item, value, lo, hi in zip(items, contrib, lows, highs, strict=True):
        value = lo + hi - value if item.reverse_scored else value
        answers[item.id] = int(value)
    for item in instrument.items:
        if item.id not in answers:
            answers[item.id] = random_answer(item, rng)
    return answers


def random_answer(item, rng: np.random.Generator) -> Any:
    if item.options:
        return item.option_values()[0] if rng.random() < 0.6 else rng.choice(item.option_values())
    # Sliders and numbers: the lowest value is always valid (no step arithmetic needed).
    return int(item.value_bounds()[0])


def fast_insert(model, rows: list[dict[str, Any]], batch: int = 5000) -> None:
    """INSERT rows with one ``executemany`` per batch, bypassing model instances.

    Why: ``bulk_create`` prepares every field of every instance in Python (about 0.4 ms per
    chat message here), which makes 10^5 messages take a minute. Columns not in a row get the
    field's default, prepared once; datetimes and encrypted text are prepared per value with the
    same field methods the ORM would use.
    """
    fields = [f for f in model._meta.concrete_fields if not f.primary_key]
    given = set().union(*(r.keys() for r in rows)) if rows else set()
    constants = {
        f.attname: f.get_db_prep_save(f.get_default(), connection)
        for f in fields
        if f.attname not in given
    }
    columns = ", ".join(connection.ops.quote_name(f.column) for f in fields)
    marks = ", ".join(["%s"] * len(fields))
    table = connection.ops.quote_name(model._meta.db_table)
    # Table and column names come from the model's metadata, never from input.
    sql = f"INSERT INTO {table} ({columns}) VALUES ({marks})"  # noqa: S608
    preps = {
        f.attname: (
            connection.ops.adapt_datetimefield_value
            if isinstance(f, models.DateTimeField)
            else partial(f.get_db_prep_save, connection=connection)
        )
        for f in fields
        if f.attname in given
    }
    with connection.cursor() as cursor:
        for start in range(0, len(rows), batch):
            values = []
            for row in rows[start : start + batch]:
                values.append(
                    [
                        constants[f.attname]
                        if f.attname in constants
                        else preps[f.attname](row.get(f.attname))
                        for f in fields
                    ]
                )
            cursor.executemany(sql, values)


def _python(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


class Command(BaseCommand):
    help = "Fill a draft or piloting study with a simulated cohort (for testing the analysis)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("study_slug")
        parser.add_argument("--participants", type=int, default=60)
        parser.add_argument("--days", type=int, default=None, help="default: study duration")
        parser.add_argument(
            "--effect",
            type=float,
            default=0.0,
            help="true lagged within-person effect: change of each outcome at a survey per extra "
            "message sent in the analysis window before the previous survey, in points per 100 "
            "points of the outcome's range (WHO-5 percentage: points). The usage model's "
            "same-period term is an association and does not estimate it",
        )
        parser.add_argument(
            "--arm-effect",
            type=float,
            default=2.0,
            help="outcome change per week of study in the non-reference arms, per 100 points "
            "of range",
        )
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--force", action="store_true", help="allow a launched study")

    def handle(self, *args, **opts) -> None:
        study = (
            Study.objects.select_related("current_version").filter(slug=opts["study_slug"]).first()
        )
        if study is None:
            raise CommandError(f"no study {opts['study_slug']!r}")
        if study.status not in (Study.Status.DRAFT, Study.Status.PILOTING) and not opts["force"]:
            raise CommandError(
                f"study {study.slug!r} is {study.status}: simulated participants would mix "
                "with real ones (use --force to do it anyway)"
            )
        if opts["participants"] < 1:
            raise CommandError("--participants must be at least 1")
        days = opts["days"] or study.duration_days
        with transaction.atomic():
            counts = simulate(
                study,
                n=opts["participants"],
                days=days,
                effect=opts["effect"],
                arm_effect=opts["arm_effect"],
                seed=opts["seed"],
            )
        self.stdout.write(
            f"Simulated {counts['participants']} participants, {counts['messages']} messages, "
            f"{counts['invitations']} invitations, {counts['responses']} responses "
            f"in {study.slug}."
        )


def simulate(
    study: Study,
    *,
    n: int,
    days: int,
    effect: float,
    arm_effect: float = 2.0,
    seed: int = 0,
    now: dt.datetime | None = None,
) -> dict[str, int]:
    """Create the cohort; returns row counts. The generative model is in ``docs/analysis.md``."""
    rng = np.random.default_rng(seed)
    now = now or timezone.now()
    version = study.current_version
    protocol = version.content
    zone = ZoneInfo(study.timezone)
    plan = protocol.get("analysis") or {}
    window_days = int(plan.get("window_days", 7))
    # Survey scores only: a classifier-rate outcome comes from labels, not from answers.
    outcomes = [o.split(".", 1) for o in plan.get("outcomes", []) if "." in o]
    arms = list(study.arms.filter(is_active=True).order_by("key"))
    if not arms:
        raise CommandError("the study has no active arm")

    # --- participants, enrolled over the first week, in the past so all data is observed
    start = now - dt.timedelta(days=days + 1)
    enrolled = [start + dt.timedelta(days=float(rng.uniform(0, 7))) for _ in range(n)]
    arm_of = np.array([i % len(arms) for i in range(n)])
    rng.shuffle(arm_of)
    try:
        # Enrolled and consented through the participants app (consent records are built by
        # its enrollment code), in bulk so hundreds of participants take well under a second.
        people = simulated_participants_create(
            study=study,
            enrolled_at=enrolled,
            arms=[arms[a] for a in arm_of],
            actor="simulate_study",
        )
    except SimulationError as exc:
        raise CommandError(str(exc)) from None

    # --- the latent process (analysis.simulate): person levels, daily mood, drifting usage
    spec = CohortSpec(
        participants=n,
        effect=effect,
        arm_effect=arm_effect,
        window_days=window_days,
        timezone=study.timezone,
    )
    latent_p = latent_people(rng, n, spec)
    ref_arm = 0  # arms sorted by key; the first is the reference in C(arm)
    latent_p.arm = (arm_of != ref_arm).astype(int)
    latent = latent_days(rng, latent_p, days, spec)
    local_enrolled = [p.enrolled_at.astimezone(zone).replace(tzinfo=None) for p in people]
    day0 = np.array(
        [np.datetime64(d.date().isoformat(), "D") for d in local_enrolled], dtype="datetime64[D]"
    )
    night_p = latent_p.night  # most people rarely chat at night
    counts = latent.planned

    conv_rows, msg_local, msg_pid, msg_conv_key = [], [], [], []
    for i in range(n):
        for t in np.flatnonzero(counts[i]):
            k = int(counts[i, t])
            sessions = min(k, 1 + rng.poisson(k / 6))
            split = np.bincount(rng.integers(0, sessions, size=k), minlength=sessions)
            for s_count in split[split > 0]:
                hour = rng.uniform(0, 6) if rng.random() < night_p[i] else rng.uniform(8, 23.5)
                offsets = hour * 60 + np.cumsum(rng.exponential(2.0, size=s_count))
                msg_local.append(
                    day0[i]
                    + np.timedelta64(int(t), "D")
                    + (offsets * 60e6).astype("timedelta64[us]")
                )
                msg_pid.append(np.full(s_count, i))
                msg_conv_key.append(np.full(s_count, t // 7))
    local = np.concatenate(msg_local) if msg_local else np.zeros(0, "datetime64[ns]")
    pid = np.concatenate(msg_pid) if msg_pid else np.zeros(0, int)
    week = np.concatenate(msg_conv_key) if msg_conv_key else np.zeros(0, int)
    utc = (
        pd.DatetimeIndex(local)
        .tz_localize(zone, ambiguous="NaT", nonexistent="NaT")
        .tz_convert("UTC")
    )
    enrolled_utc = pd.DatetimeIndex(pd.to_datetime([p.enrolled_at for p in people], utc=True))
    keep = ~utc.isna() & (utc > enrolled_utc[pid]) & (utc < now - dt.timedelta(minutes=1))
    local, pid, week, utc = local[keep], pid[keep], week[keep], utc[keep]
    order = np.lexsort((utc.asi8, pid))
    local, pid, week, utc = local[order], pid[order], week[order], utc[order]
    # Messages per participant per local day, exactly as the features will count them.
    local_day = local.astype("datetime64[D]")
    study_day = (local_day - day0[pid]).astype(int)
    usage = np.zeros((n, days + 2), dtype=np.int64)
    np.add.at(usage, (pid, np.clip(study_day, 0, days + 1)), 1)

    conv_keys = sorted(set(zip(pid.tolist(), week.tolist(), strict=True)))
    conv_rows = Conversation.objects.bulk_create(
        [
            Conversation(
                participant=people[i],
                arm=arms[arm_of[i]],
                created_at=people[i].enrolled_at,
                updated_at=people[i].enrolled_at,
            )
            for i, _ in conv_keys
        ]
    )
    conv_of = dict(zip(conv_keys, conv_rows, strict=True))
    words = rng.integers(3, 13, size=len(pid))
    latency = rng.integers(600, 5000, size=len(pid))
    vocab = np.array(VOCABULARY)
    reply = utc + pd.to_timedelta(latency, unit="ms")
    message_rows: list[dict[str, Any]] = []
    for j in range(len(pid)):
        i = int(pid[j])
        at, reply_at = utc[j].to_pydatetime(), reply[j].to_pydatetime()
        text = " ".join(rng.choice(vocab, size=int(words[j])))
        common = {
            "conversation_id": conv_of[(i, int(week[j]))].id,
            "participant_id": people[i].id,
            "arm_id": arms[arm_of[i]].id,
            "protocol_version_id": version.id,
        }
        message_rows.append(
            {**common, "role": "user", "content": text, "created_at": at, "received_at": at}
        )
        message_rows.append(
            {
                **common,
                "role": "assistant",
                "content": "Thanks. " + text,
                "created_at": reply_at,
                "first_token_at": reply_at,
                "completed_at": reply_at,
                "latency_ms": int(latency[j]),
            }
        )
    fast_insert(Message, message_rows)
    messages = message_rows

    # --- surveys: occasions of the enrollment and recurring entries, answers from the model
    entries = [
        e
        for e in protocol.get("surveys", {}).get("schedule", [])
        if (e.get("rule") or {}).get("type") in SURVEY_RULES
    ]
    slots: list[tuple[dict, str, int | None, int]] = []  # entry, occurrence, entry wave, day
    for entry in entries:
        rule = entry["rule"]
        if rule["type"] == "enrollment":
            slots.append((entry, "enrollment", None, 0))
        else:
            every = int(rule["every_days"])
            first = int(rule.get("start_day", every))
            # --days decides how many waves there are: the simulation runs past end_day.
            for k, day in enumerate(range(first, days, every), start=1):
                slots.append((entry, f"d{day}", k, day))
    slots.sort(key=lambda s: s[3])
    ranges = {}
    for inst_key, score_name in outcomes:
        score = next(s for s in get_instrument(inst_key).scores if s.name == score_name)
        ranges[(inst_key, score_name)] = (score.min, score.max)
    answered_n = rng.geometric(0.15, size=n)  # waves answered before dropping out (≥ 1)

    invitations: list[Invitation] = []
    done: list[tuple[int, int, int, float, float, bool]] = []
    for i, person in enumerate(people):
        occasions = []
        for entry, occurrence, entry_wave, day in slots:
            if day == 0:
                opens = person.enrolled_at + dt.timedelta(minutes=1)
            else:
                hh, mm = (int(x) for x in entry["rule"].get("at", "18:00").split(":"))
                local_open = dt.datetime.combine(
                    local_enrolled[i].date() + dt.timedelta(days=day), dt.time(hh, mm)
                )
                opens = local_open.replace(tzinfo=zone).astimezone(dt.UTC)
            closes = opens + dt.timedelta(hours=int(entry.get("window_hours", 48)))
            if closes > now:
                continue
            occasions.append((entry, occurrence, entry_wave, opens, closes))
        previous_window = np.nan  # usage before the previous post-baseline occasion
        for index, (entry, occurrence, entry_wave, opens, closes) in enumerate(occasions):
            answered = index < answered_n[i]
            submitted = None
            # The usage window of an occasion ends on the local day it was answered (or, if it
            # was missed, opened); the lagged effect acts through the previous one's window.
            if answered:
                delay = min(rng.exponential(3.0), entry.get("window_hours", 48) - 0.1)
                submitted = opens + dt.timedelta(hours=float(delay))
            local_day = (submitted or opens).astimezone(zone).date()
            end = (local_day - local_enrolled[i].date()).days
            if answered:
                weeks = ((submitted - person.enrolled_at).total_seconds()) / (7 * 86400)
                done.append((len(invitations), i, end, previous_window, weeks, index == 0))
            window = usage[i, max(end - window_days, 0) : max(end, 0)].sum()
            # The baseline's window starts before enrolment: no lagged effect through it.
            previous_window = float(window) if index > 0 else np.nan
            invitations.append(
                Invitation(
                    participant=person,
                    study=study,
                    entry_key=entry["key"],
                    occurrence_key=occurrence,
                    wave=entry_wave,
                    instruments=list(entry.get("instruments", [])),
                    protocol_version=version,
                    status="completed" if answered else "expired",
                    opens_at=opens,
                    closes_at=closes,
                    created_at=opens,
                    sent_at=opens,
                    opened_at=submitted,
                    started_at=submitted,
                    completed_at=submitted,
                    expired_at=None if answered else closes,
                )
            )
    Invitation.objects.bulk_create(invitations, batch_size=1000)

    # Outcomes: latent wellbeing W (0-100) of each answered occasion, with its own measurement
    # error per outcome, mapped onto the outcome's range.
    columns = np.array([d[1:] for d in done], dtype=float).reshape(-1, 5)
    targets_of: list[dict] = [{} for _ in done]
    for key, (lo, hi) in ranges.items():
        w = wellbeing(
            rng,
            spec,
            latent_p,
            latent,
            pid=columns[:, 0].astype(int),
            day=columns[:, 1].astype(int),
            lag_usage=columns[:, 2],
            weeks=columns[:, 3],
            baseline=columns[:, 4],
        )
        y = np.clip(lo + (hi - lo) * w / 100, lo, hi)
        for targets, value in zip(targets_of, y, strict=True):
            targets[key] = float(value)
    pending_responses = [(invitations[d[0]], t) for d, t in zip(done, targets_of, strict=True)]

    responses = []
    for inv, targets in pending_responses:
        for inst_key in inv.instruments:
            instrument = get_instrument(inst_key)
            target = next(((s, v) for (k, s), v in targets.items() if k == inst_key), None)
            if target is not None:
                answers = outcome_answers(instrument, target[0], target[1], rng)
            else:
                answers = {it.id: _python(random_answer(it, rng)) for it in instrument.items}
            scored = score_answers(instrument, answers)
            responses.append(
                Response(
                    invitation=inv,
                    participant=inv.participant,
                    instrument_key=inst_key,
                    instrument_version=instrument.version,
                    status=Response.Status.SUBMITTED,
                    answers=answers,
                    scores=scored.scores,
                    bands=scored.bands,
                    flags=scored.flags,
                    valid=scored.valid,
                    protocol_version=version,
                    started_at=inv.completed_at,
                    updated_at=inv.completed_at,
                    submitted_at=inv.completed_at,
                )
            )
    Response.objects.bulk_create(responses, batch_size=1000)
    return {
        "participants": n,
        "messages": len(messages),
        "invitations": len(invitations),
        "responses": len(responses),
    }
