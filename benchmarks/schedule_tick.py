"""Benchmark the survey schedule engine: one simulated week of beat ticks at 100,000 participants.

    .venv/bin/python benchmarks/schedule_tick.py [--participants 100000] [--days 7]
        [--warmup 10000] [--database-url postgresql://user:pw@127.0.0.1:5432/postgres]

Set-up (all throwaway, removed at the end even on failure or Ctrl-C): an embedded Redis (unless
REDIS_URL is set; nothing is queued to it) and a database: with --database-url (or DATABASE_URL)
a PostgreSQL server on which ``studyplatform_tick_<pid>`` is created and later dropped (the URL's
own database is only used to connect); otherwise a temporary SQLite file. ``manage.py migrate``
runs in a subprocess with DEBUG=False (throwaway keys), so Django keeps no query log.

Notifications are out of scope: ``surveys.tasks.send_notifications`` is replaced by a stub whose
``delay`` only counts what the tick enqueues (emails are sent by workers, not by the tick). The
stub also checks that no invitation is enqueued as "invite" twice.

Seed (timed separately, not part of the tick figures): a study from examples/companion-rct.yaml
(target_enrollment removed; baseline at enrollment, weekly at 18:00 local from day 7, one
random EMA a day between 09:00 and 21:00, exit on day 27) moved to recruiting through the real
services; N participants by bulk_create, enrolled uniformly over the 7 days before the simulated
start S (2025-06-02 00:00 UTC, a week without DST changes), time zones drawn from
America/Sao_Paulo, Europe/London, America/New_York and Asia/Tokyo; their cursors computed
exactly as ``engine.schedule_init`` does (``engine.next_occurrence`` + ``engine._apply`` on unsaved
cursors, then bulk_create) and checked against the real ``schedule_init`` for 50 participants.
On PostgreSQL the tables are then ANALYZEd, as autovacuum would have done. Because cursors
start at enrollment and no tick ran during the enrollment week, the first ticks catch up a
backlog (every baseline, the EMAs of the enrollment week): the figures are reported for all
ticks and separately for the catch-up and the steady state after it (the first tick after which
no cursor waits to be materialized or advanced and no opened invitation waits to be sent).

Simulation: ``engine.schedule_tick(now=t)`` for t from S to S + days: every 30 simulated minutes,
plus every minute from 17:58 to 18:10 local in each of the four zones (the weekly surveys open,
and their reminders fire, at 18:00 local) and from 14:00 to 15:00 UTC (an EMA hour: 11:00 in
Sao Paulo, 10:00 in New York, 15:00 in London); and, as the real beat ticks every minute, the
next minute whenever a tick leaves work pending (a cursor to advance or due to materialize, an
opened invitation unsent — counted after the tick, outside the measurement). Per tick: wall
time and SQL queries (an ``execute_wrapper`` counter), split by phase of the tick (_sweep,
_materialize, _advance, _send, _remind, _expire, _session_events; "other" = commits and the
notification enqueue) by wrapping the engine's private functions, so the real
``schedule_tick`` runs unchanged. The steady state is also split by the gap since the previous
tick: a tick one minute after the last is what the real beat does; one after 30 minutes batches
up to 30 minutes of random EMAs and so does more work than any real tick would. A tick that
fails because the database server went away is re-run once it is back (the engine is safe to
re-run) and not counted.

Checks: duplicates = invitations sharing (participant, entry_key, occurrence_key); lost = for
500 random participants, occurrences of the time-based entries opening in
[enrolled_at, S + days] (``schedule_rules.occurrences_between``) with no invitation; unexpected =
invitations of those participants that the rules do not produce; lateness = created_at - opens_at
of invitations opening during the simulated week (includes the tick spacing). The same procedure
runs first at --warmup participants, to show whether queries per tick grow with N.

Target: every tick at 100,000 participants <= 2 s on PostgreSQL. The script exits 0 either way.
The last line is machine-readable (queries_per_tick = the maximum over the full-size ticks):
participants=<n> tick_p50_s=<x> tick_max_s=<x> queries_per_tick=<n> duplicates=<n> lost=<n>
Run time is dominated by the engine itself (the largest share in _advance, ~0.15 ms per cursor
of schedule arithmetic; a tick stops taking new batches after engine.TICK_BUDGET_S, so the
start-up catch-up at 100,000 spreads over the first ~4.5 simulated hours of per-minute ticks):
on 2 busy cores about 2 minutes for the 10,000 warm-up and 12 minutes for 100,000 (seed 1.2
min); use --participants 10000 --warmup 0 --days 2 for a quick look. Never part of the test run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import secrets
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from math import inf
from pathlib import Path
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.support import Postgres, machine_info, migrate_and_setup  # noqa: E402

TARGET_S = 2.0
START = dt.datetime(2025, 6, 2, tzinfo=dt.UTC)  # a Monday; no DST change in the zones near it
ENROLL_DAYS = 7
ZONES = ("America/Sao_Paulo", "Europe/London", "America/New_York", "Asia/Tokyo")
COARSE_MINUTES = 30
FINE_AROUND = dt.time(18, 0)  # weekly surveys open (and remind) at 18:00 local
FINE_BEFORE, FINE_AFTER = 2, 10  # minutes of per-minute ticks around it
EMA_HOUR_UTC = 14
LOST_SAMPLE = 500
SEED_CHECK = 50
PHASES = ("_sweep", "_materialize", "_advance", "_send", "_remind", "_expire", "_session_events")
STUDY_SLUG = "tick-bench"
CODE_ALPHABET = "23456789ABCDEFGHJKMNPQRSTVWXYZ"


# -- measurement hooks ------------------------------------------------------------------------


class Meter:
    """Counts queries and their time (an execute_wrapper) and times the tick's phases."""

    def __init__(self) -> None:
        self.phase = "other"
        self.reset()

    def reset(self) -> None:
        self.queries: Counter[str] = Counter()
        self.db_s: Counter[str] = Counter()
        self.seconds: Counter[str] = Counter()

    def __call__(self, execute, sql, params, many, context):
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            self.queries[self.phase] += 1
            self.db_s[self.phase] += time.perf_counter() - started

    def wrap(self, name: str, func):
        def timed(*args, **kwargs):
            previous, self.phase = self.phase, name
            started = time.perf_counter()
            try:
                return func(*args, **kwargs)
            finally:
                self.seconds[name] += time.perf_counter() - started
                self.phase = previous

        return timed


class NotifyStub:
    """Stands in for surveys.tasks.send_notifications: counts what a tick would enqueue."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.calls = 0
        self.ids: Counter[str] = Counter()
        self.invited: set[int] = set()
        self.invited_twice = 0

    def delay(self, kind: str, ids: list[int]) -> None:
        self.calls += 1
        self.ids[kind] += len(ids)
        if kind == "invite":
            for i in ids:
                if i in self.invited:
                    self.invited_twice += 1
                self.invited.add(i)


@dataclass
class TickStat:
    at: dt.datetime
    seconds: float
    queries: int
    phase_s: dict[str, float]
    phase_q: dict[str, int]
    phase_db_s: dict[str, float]
    report: dict[str, int]
    catch_up: bool = False
    gap_minutes: float = inf  # since the previous tick


@dataclass
class Run:
    participants: int
    seed_s: float = 0.0
    seed_detail: str = ""
    ticks: list[TickStat] = field(default_factory=list)
    catch_up_until: dt.datetime | None = None
    created: int = 0
    duplicates: int = 0
    lost: int = 0
    unexpected: int = 0
    mismatched: int = 0
    expected_checked: int = 0
    lateness: dict[str, float] = field(default_factory=dict)
    after_close: int = 0
    backlog_end: dict[str, int] = field(default_factory=dict)
    notify: dict[str, int] = field(default_factory=dict)
    invited_twice: int = 0
    week_wall_s: float = 0.0
    extra_ticks: int = 0
    restarts: int = 0


# -- schedule of ticks ------------------------------------------------------------------------


def tick_times(start: dt.datetime, days: int) -> list[dt.datetime]:
    end = start + dt.timedelta(days=days)
    times = set()
    t = start
    while t <= end:
        times.add(t)
        t += dt.timedelta(minutes=COARSE_MINUTES)
    day = start.date() - dt.timedelta(days=1)
    while day <= end.date() + dt.timedelta(days=1):
        centres = [
            dt.datetime.combine(day, FINE_AROUND, tzinfo=ZoneInfo(z)).astimezone(dt.UTC)
            for z in ZONES
        ]
        minutes = [(c, m) for c in centres for m in range(-FINE_BEFORE, FINE_AFTER + 1)]
        ema = dt.datetime.combine(day, dt.time(EMA_HOUR_UTC), tzinfo=dt.UTC)
        minutes += [(ema, m) for m in range(61)]
        for centre, m in minutes:
            at = centre + dt.timedelta(minutes=m)
            if start <= at <= end:
                times.add(at)
        day += dt.timedelta(days=1)
    return sorted(times)


# -- seeding ----------------------------------------------------------------------------------


def create_study():
    import yaml
    from django.contrib.auth import get_user_model

    from studyplatform.studies.launch import model_check_record
    from studyplatform.studies.services import study_create_from_protocol, study_transition

    # No chat here: the arms use the always-registered simulated endpoint.
    doc = yaml.safe_load((ROOT / "examples" / "companion-rct.yaml").read_text())
    doc["study"]["slug"] = STUDY_SLUG
    for arm in doc["arms"]:
        arm["model"] = {"endpoint": "simulated", "name": f"pilot-{arm['key']}"}
    doc["study"].pop("target_enrollment", None)
    # The tick never calls a model; simulated arms need no endpoint for the launch checklist.
    for arm in doc["arms"]:
        arm["model"] = {"endpoint": "simulated", "name": f"sim-{arm['key']}"}
    from studyplatform.accounts.services import email_mark_verified

    researcher = get_user_model().objects.create_user(
        username="tick-bench", email="tick-bench@example.org", password=None
    )
    email_mark_verified(user=researcher, method="command", actor=None)
    study = study_create_from_protocol(doc=doc, author=researcher)
    study = study_transition(study=study, to="piloting", actor=researcher)
    # The launch checklist needs a recent model test per arm; this synthetic study records
    # one (the benchmark measures the platform, not the launch).
    for arm in study.arms.all():
        model_check_record(study=study, arm=arm, ok=True, error="", actor=researcher)
    study = study_transition(study=study, to="recruiting", actor=researcher)
    return study


def participant_code(i: int) -> str:
    chars = []
    for _ in range(8):
        i, digit = divmod(i, len(CODE_ALPHABET))
        chars.append(CODE_ALPHABET[digit])
    return "P-" + "".join(reversed(chars))


def reset_tables() -> None:
    from django.db import connection

    from studyplatform.participants.models import Participant
    from surveys.models import Invitation, Response, ScheduleCursor

    if connection.vendor == "postgresql":
        with connection.cursor() as cur:
            tables = [m._meta.db_table for m in (Response, Invitation, ScheduleCursor, Participant)]
            cur.execute(f"TRUNCATE {', '.join(tables)} CASCADE")
    else:
        for model in (Response, Invitation, ScheduleCursor, Participant):
            model.objects.all().delete()


def analyze() -> None:
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("ANALYZE")


def seed(study, n: int, rng: random.Random) -> tuple[float, str]:
    """N participants and their cursors, as schedule_init would create them. Returns seconds."""
    from django.db import transaction

    from studyplatform.participants.models import Participant
    from surveys import engine
    from surveys import schedule_rules as rules
    from surveys.models import ScheduleCursor

    started = time.perf_counter()
    version = study.current_version
    people = [
        Participant(
            study=study,
            code=participant_code(i),
            language="en",
            timezone=rng.choice(ZONES),
            enrolled_at=START - dt.timedelta(seconds=rng.uniform(0, ENROLL_DAYS * 86400)),
            enrollment_version=version,
            screener_answers={"age": 30, "uses_chatbots": True, "gender": "woman"},
        )
        for i in range(n)
    ]
    for p in people:
        p.last_seen_at = p.enrolled_at
    with transaction.atomic():
        Participant.objects.bulk_create(people, batch_size=5000)
    participants_s = time.perf_counter() - started

    entries = [
        (key, entry)
        for key, entry in engine._entries(version.pk).items()
        if entry["rule"]["type"] in rules.TIME_BASED_RULES
    ]
    compute_started = time.perf_counter()
    cursors = []
    for done, p in enumerate(people, start=1):
        # The body of engine.schedule_init, without its per-participant INSERT.
        ctx = engine.context_for(p, study.duration_days, study.allocation_seed)
        for key, entry in entries:
            cursor = ScheduleCursor(
                participant=p, study=study, entry_key=key, protocol_version=version
            )
            engine._apply(cursor, engine.next_occurrence(entry, ctx, None))
            cursors.append(cursor)
        if done % 20_000 == 0 and done < n:
            print(f"    cursors computed for {done:,}/{n:,} participants", flush=True)
    compute_s = time.perf_counter() - compute_started
    insert_started = time.perf_counter()
    with transaction.atomic():
        ScheduleCursor.objects.bulk_create(cursors, batch_size=5000)
    insert_s = time.perf_counter() - insert_started
    check_seed(study, rng.sample(people, min(SEED_CHECK, n)))
    analyze_started = time.perf_counter()
    analyze()
    analyze_s = time.perf_counter() - analyze_started
    total = time.perf_counter() - started
    detail = (
        f"participants {participants_s:.1f} s, cursors computed {compute_s:.1f} s "
        f"({compute_s / n * 1e3:.2f} ms/participant), inserted {insert_s:.1f} s "
        f"({len(cursors):,} rows), ANALYZE {analyze_s:.1f} s"
    )
    return total, detail


def check_seed(study, sample) -> None:
    """The fast path must equal engine.schedule_init: re-create a sample with the real one."""
    from django.db import transaction

    from surveys import engine
    from surveys.models import ScheduleCursor

    fields = (
        "entry_key",
        "next_opens_at",
        "next_occurrence_key",
        "next_wave",
        "next_closes_at",
        "next_reminders",
        "needs_advance",
    )

    def rows(p):
        qs = ScheduleCursor.objects.filter(participant=p).order_by("entry_key")
        return list(qs.values_list(*fields))

    with transaction.atomic():
        for p in sample:
            seeded = rows(p)
            ScheduleCursor.objects.filter(participant=p).delete()
            p.study = study
            engine.schedule_init(p)
            real = rows(p)
            if seeded != real:
                raise RuntimeError(f"seeded cursors differ from schedule_init for {p.code}")


# -- the simulated week -----------------------------------------------------------------------


def backlog(now: dt.datetime) -> dict[str, int]:
    from surveys.models import Invitation, ScheduleCursor

    return {
        "to_advance": ScheduleCursor.objects.filter(needs_advance=True).count(),
        "due_unmaterialized": ScheduleCursor.objects.filter(
            needs_advance=False, next_opens_at__lte=now
        ).count(),
        "opened_unsent": Invitation.objects.filter(
            status=Invitation.Status.SCHEDULED, opens_at__lte=now
        ).count(),
    }


def wait_for_database(timeout_s: float = 600) -> None:
    from django.db import connection

    deadline = time.monotonic() + timeout_s
    while True:
        connection.close()
        try:
            connection.ensure_connection()
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(5)


def simulate(run: Run, days: int, meter: Meter) -> None:
    from django.db import InterfaceError, OperationalError, connection

    from surveys import engine

    planned = tick_times(START, days)
    end = planned[-1]
    catching_up = True
    week_started = time.perf_counter()
    day_end = START + dt.timedelta(days=1)
    day_first = 0
    at, i = planned[0], 0
    while True:
        meter.reset()
        started = time.perf_counter()
        try:
            with connection.execute_wrapper(meter):
                report = engine.schedule_tick(now=at)
            pending = any(backlog(at).values())  # not measured: outside the execute_wrapper
        except (OperationalError, InterfaceError) as exc:
            # Someone restarted the server: the tick is safe to re-run, so wait and run it again.
            print(f"    database error at the tick {at:%m-%d %H:%M}Z ({exc}); retrying", flush=True)
            wait_for_database()
            run.restarts += 1
            continue
        elapsed = time.perf_counter() - started
        counts = {k: v for k, v in vars(report).items() if k != "notify"}
        phase_s = {p: meter.seconds[p] for p in PHASES}
        phase_s["other"] = max(elapsed - sum(phase_s.values()), 0.0)
        run.ticks.append(
            TickStat(
                at=at,
                seconds=elapsed,
                queries=sum(meter.queries.values()),
                phase_s=phase_s,
                phase_q=dict(meter.queries),
                phase_db_s=dict(meter.db_s),
                report=counts,
                catch_up=catching_up,
                gap_minutes=(at - run.ticks[-1].at).total_seconds() / 60 if run.ticks else inf,
            )
        )
        if catching_up and not pending:
            catching_up = False
            run.catch_up_until = at
        if at >= day_end or at == end:
            chunk = run.ticks[day_first:]
            secs = [t.seconds for t in chunk]
            made = sum(t.report["materialized"] for t in chunk)
            print(
                f"    day {(day_end - START).days:>2} (to {at:%m-%d %H:%M}Z): {len(chunk):>4} "
                f"ticks, p50 {statistics.median(secs):.3f} s, max {max(secs):.3f} s, "
                f"{made:,} materialized, wall {time.perf_counter() - week_started:.0f} s"
                + ("  [catching up]" if catching_up else ""),
                flush=True,
            )
            day_first = len(run.ticks)
            day_end += dt.timedelta(days=1)
        if at >= end:
            break
        while planned[i] <= at:
            i += 1
        # The real beat ticks every minute: while work is pending, so does the simulation.
        following = planned[i]
        if pending and at + dt.timedelta(minutes=1) < following:
            following = at + dt.timedelta(minutes=1)
            run.extra_ticks += 1
        at = following
    run.week_wall_s = time.perf_counter() - week_started
    run.backlog_end = backlog(end)


# -- checks -----------------------------------------------------------------------------------


def check(run: Run, study, days: int, rng: random.Random) -> None:
    from django.db.models import Count, DurationField, ExpressionWrapper, F

    from studyplatform.participants.models import Participant
    from surveys import engine
    from surveys import schedule_rules as rules
    from surveys.models import Invitation

    end = START + dt.timedelta(days=days)
    run.created = Invitation.objects.count()
    run.duplicates = (
        Invitation.objects.values("participant_id", "entry_key", "occurrence_key")
        .annotate(n=Count("id"))
        .filter(n__gt=1)
        .count()
    )
    ids = list(Participant.objects.filter(study=study).values_list("id", flat=True))
    sample = Participant.objects.filter(id__in=rng.sample(ids, min(LOST_SAMPLE, len(ids))))
    entries = [
        e
        for e in engine._entries(study.current_version_id).values()
        if e["rule"]["type"] in rules.TIME_BASED_RULES
    ]
    have: dict[int, dict[tuple[str, str], dt.datetime]] = {}
    for pid, key, occ, opens in Invitation.objects.filter(participant__in=sample).values_list(
        "participant_id", "entry_key", "occurrence_key", "opens_at"
    ):
        have.setdefault(pid, {})[(key, occ)] = opens
    for p in sample:
        ctx = engine.context_for(p, study.duration_days, study.allocation_seed)
        # The last tick runs at `end`, so an occurrence opening exactly then is due too.
        expected = {
            (e["key"], o.occurrence_key): o.opens_at
            for e in entries
            for o in rules.occurrences_between(e, ctx, p.enrolled_at, end + dt.timedelta(0, 0, 1))
        }
        existing = have.get(p.id, {})
        run.expected_checked += len(expected)
        run.lost += sum(1 for k in expected if k not in existing)
        run.unexpected += sum(1 for k in existing if k not in expected)
        run.mismatched += sum(1 for k, v in expected.items() if k in existing and existing[k] != v)

    late = ExpressionWrapper(F("created_at") - F("opens_at"), output_field=DurationField())
    week = Invitation.objects.filter(opens_at__gte=START, opens_at__lte=end)
    run.after_close = week.filter(created_at__gte=F("closes_at")).count()

    def minutes(qs) -> list[float]:
        values = qs.annotate(late=late).values_list("late", flat=True)
        return sorted(d.total_seconds() / 60 for d in values)

    for name, qs in (
        ("week", week),
        ("steady", week.filter(opens_at__gte=run.catch_up_until) if run.catch_up_until else None),
    ):
        values = minutes(qs) if qs is not None else []
        if values:
            run.lateness[f"{name}_p50"] = percentile(values, 0.5)
            run.lateness[f"{name}_p95"] = percentile(values, 0.95)
            run.lateness[f"{name}_max"] = values[-1]


# -- reporting --------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def summary(ticks: list[TickStat]) -> dict[str, float]:
    if not ticks:
        nan = float("nan")
        return {"n": 0, "p50": nan, "p95": nan, "max": nan, "q50": nan, "qmax": nan, "made": 0}
    secs = [t.seconds for t in ticks]
    queries = [t.queries for t in ticks]
    return {
        "n": len(ticks),
        "p50": percentile(secs, 0.5),
        "p95": percentile(secs, 0.95),
        "max": max(secs),
        "q50": percentile(queries, 0.5),
        "qmax": max(queries),
        "made": sum(t.report["materialized"] for t in ticks),
        "wall": sum(secs),
    }


def last_line(run: Run) -> str:
    s = summary(run.ticks)
    return (
        f"participants={run.participants} tick_p50_s={s['p50']:.3f} tick_max_s={s['max']:.3f} "
        f"queries_per_tick={s['qmax']} duplicates={run.duplicates} lost={run.lost}"
    )


def print_run(run: Run) -> None:
    print(f"\n== {run.participants:,} participants ==")
    print(f"  seed: {run.seed_s:.1f} s ({run.seed_detail})")
    parts = [
        ("all ticks", run.ticks),
        ("catch-up", [t for t in run.ticks if t.catch_up]),
        ("steady state", [t for t in run.ticks if not t.catch_up]),
        # A real beat ticks every minute; ticks after a longer gap batch more work than it would.
        ("  1 min after", [t for t in run.ticks if not t.catch_up and t.gap_minutes <= 1]),
        ("  longer gap", [t for t in run.ticks if not t.catch_up and t.gap_minutes > 1]),
    ]
    print(
        f"  {'ticks':<14}{'count':>6}{'p50 s':>9}{'p95 s':>9}{'max s':>9}{'q p50':>7}"
        f"{'q max':>8}{'created':>10}{'created/s':>11}"
    )
    for name, ticks in parts:
        s = summary(ticks)
        rate = s["made"] / s["wall"] if s["n"] and s["wall"] else float("nan")
        print(
            f"  {name:<14}{s['n']:>6}{s['p50']:>9.3f}{s['p95']:>9.3f}{s['max']:>9.3f}"
            f"{s['q50']:>7.0f}{s['qmax']:>8}{s['made']:>10,}{rate:>11,.0f}"
        )
    until = f"{run.catch_up_until:%Y-%m-%d %H:%M}Z" if run.catch_up_until else "never"
    print(f"  catch-up of the enrollment-week backlog ended after the tick at {until}")
    print(
        f"  simulated week: {run.week_wall_s:.1f} s wall; {run.extra_ticks} of the ticks were "
        f"added (next minute) because work was pending; backlog at the end: {run.backlog_end}"
        + (f"; {run.restarts} ticks re-run after a database restart" if run.restarts else "")
    )

    print(
        f"\n  phases (all ticks){'total s':>12}{'share':>7}{'max s':>8}{'q max':>7}{'db share':>10}"
    )
    total = sum(t.seconds for t in run.ticks) or 1.0
    for phase in (*PHASES, "other"):
        spent = sum(t.phase_s[phase] for t in run.ticks)
        db = sum(t.phase_db_s.get(phase, 0.0) for t in run.ticks)
        print(
            f"  {phase:<18}{spent:>12.2f}{spent / total:>7.0%}"
            f"{max(t.phase_s[phase] for t in run.ticks):>8.3f}"
            f"{max(t.phase_q.get(phase, 0) for t in run.ticks):>7}"
            f"{(db / spent if spent else 0):>10.0%}"
        )
    print("\n  slowest ticks: time, queries, work, and phases over 10 ms (s/queries)")
    for t in sorted(run.ticks, key=lambda t: -t.seconds)[:8]:
        work = " ".join(f"{k[:5]}={v}" for k, v in t.report.items() if v)
        phases = " ".join(
            f"{p.strip('_')}={t.phase_s[p]:.2f}/{t.phase_q.get(p, 0)}"
            for p in (*PHASES, "other")
            if t.phase_s[p] >= 0.01
        )
        print(
            f"    {t.at:%m-%d %H:%M}Z {t.seconds:6.2f} s {t.queries:>6} q  {work}"
            f"{'  [catch-up]' if t.catch_up else ''}\n        {phases}"
        )
    lat = run.lateness
    print(
        f"\n  checks: duplicates={run.duplicates}, lost={run.lost} and unexpected={run.unexpected}"
        f" (opens_at differs: {run.mismatched}) of {run.expected_checked:,} expected occurrences"
        f" for {LOST_SAMPLE} sampled participants"
    )
    print(
        f"  invitations: {run.created:,} in the table; notifications enqueued "
        f"{dict(run.notify)} (invited twice: {run.invited_twice})"
    )
    if lat:
        steady = (
            f"; steady state p50 {lat['steady_p50']:.1f}, p95 {lat['steady_p95']:.1f}, "
            f"max {lat['steady_max']:.1f}"
            if "steady_p50" in lat
            else ""
        )
        print(
            f"  lateness (created_at - opens_at, minutes) of invitations opening in the week: "
            f"p50 {lat['week_p50']:.1f}, p95 {lat['week_p95']:.1f}, max {lat['week_max']:.1f}"
            f"{steady}; created after their window closed: {run.after_close:,}"
        )


# -- orchestration ----------------------------------------------------------------------------


def run_size(study, n: int, days: int, meter: Meter, notify: NotifyStub) -> Run:
    reset_tables()
    rng = random.Random(20250602 + n)
    run = Run(participants=n)
    print(f"\nseeding {n:,} participants ...", flush=True)
    run.seed_s, run.seed_detail = seed(study, n, rng)
    print(f"  seeded in {run.seed_s:.1f} s ({run.seed_detail})", flush=True)
    notify.reset()
    print(f"simulating {days} days from {START:%Y-%m-%d %H:%M}Z ...", flush=True)
    simulate(run, days, meter)
    run.notify = dict(notify.ids)
    run.invited_twice = notify.invited_twice
    check(run, study, days, rng)
    return run


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--participants", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=7, help="simulated days of ticks")
    parser.add_argument(
        "--warmup", type=int, default=10_000, help="participants of a first, smaller run (0: none)"
    )
    parser.add_argument(
        "--database-url",
        default=os.environ.get("DATABASE_URL", ""),
        help="PostgreSQL server to create a throwaway database on (default: temp SQLite)",
    )
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)

    info = machine_info()
    workdir = Path(tempfile.mkdtemp(prefix="sp-tick-bench-"))
    redis_proc = None
    postgres: Postgres | None = None
    django_ready = False
    final = ""
    try:
        from cryptography.fernet import Fernet

        env = dict(os.environ)
        if not env.get("REDIS_URL"):
            from studyplatform.core.embedded_redis import start_embedded_redis

            env["REDIS_URL"], redis_proc = start_embedded_redis()
        if args.database_url:
            if not args.database_url.startswith(("postgres://", "postgresql://")):
                parser.error("--database-url must be a PostgreSQL URL (omit it for SQLite)")
            postgres = Postgres(args.database_url, "studyplatform_tick")
            env["DATABASE_URL"] = postgres.url
            database = f"postgresql {postgres.server_version} (throwaway {postgres.name})"
        else:
            import sqlite3

            env["DATABASE_URL"] = f"sqlite:///{workdir / 'tick.sqlite3'}"
            database = f"sqlite {sqlite3.sqlite_version} (temporary file)"
        env.update(
            DJANGO_SETTINGS_MODULE="studyplatform.settings",
            # DEBUG=False so Django keeps no query log; throwaway keys satisfy its checks.
            DEBUG="false",
            SECRET_KEY=secrets.token_urlsafe(48),
            FIELD_ENCRYPTION_KEY=Fernet.generate_key().decode(),
            VAR_DIR=str(workdir / "var"),
            LOG_LEVEL="WARNING",
            CACHE_KEY_PREFIX=f"tick{os.getpid()}",
        )
        os.environ.update(env)
        migrate_and_setup(env, f"{database}")
        django_ready = True

        from surveys import engine, tasks

        notify = NotifyStub()
        tasks.send_notifications = notify  # the tick imports it from the module at call time
        meter = Meter()
        for name in PHASES:
            setattr(engine, name, meter.wrap(name, getattr(engine, name)))

        print(
            f"machine: nproc {info['nproc']}, {info['cpu']}, load at start {info['load']}; "
            f"database: {database}; ticks over {args.days} simulated days every "
            f"{COARSE_MINUTES} min, every minute {FINE_BEFORE} min before to {FINE_AFTER} min "
            f"after 18:00 local in {len(ZONES)} zones and {EMA_HOUR_UTC}:00-{EMA_HOUR_UTC + 1}:00 "
            "UTC, and the next minute while work is pending",
            flush=True,
        )
        study = create_study()
        sizes = [n for n in (args.warmup, args.participants) if n and n < args.participants]
        runs = []
        for n in [*sizes, args.participants]:
            runs.append(run_size(study, n, args.days, meter, notify))
            # Printed as soon as a size is done: a long run keeps what it measured.
            print_run(runs[-1])
            if n != args.participants:
                print(f"\n  warm-up: {last_line(runs[-1])}", flush=True)
        full = runs[-1]
        print()
        if len(runs) > 1:
            small, big = summary(runs[0].ticks), summary(full.ticks)
            small_ss = summary([t for t in runs[0].ticks if not t.catch_up])
            big_ss = summary([t for t in full.ticks if not t.catch_up])
            print(
                f"queries per tick, {runs[0].participants:,} -> {full.participants:,} "
                f"participants: p50 {small['q50']:.0f} -> {big['q50']:.0f}, max {small['qmax']} "
                f"-> {big['qmax']} (steady state max {small_ss['qmax']} -> {big_ss['qmax']})"
            )
            print(f"warm-up: {last_line(runs[0])}")
        s = summary(full.ticks)
        steady = summary([t for t in full.ticks if not t.catch_up])
        verdict = "target met" if s["max"] <= TARGET_S else "target missed"
        print(
            f"{verdict}: slowest tick {s['max']:.3f} s at {full.participants:,} participants "
            f"(target <= {TARGET_S:g} s; steady state only: {steady['max']:.3f} s, "
            f"{'met' if steady['max'] <= TARGET_S else 'missed'})"
        )
        final = last_line(full)
    except KeyboardInterrupt:
        print("interrupted; cleaning up", file=sys.stderr)
    finally:
        if django_ready:
            from django.db import connections

            connections.close_all()
        if postgres is not None:
            try:
                postgres.drop()
            except Exception as exc:  # the server may be restarting: say what is left behind
                print(f"could not drop database {postgres.name}: {exc}", file=sys.stderr)
        if redis_proc is not None:
            from studyplatform.core.embedded_redis import stop_embedded_redis

            stop_embedded_redis(redis_proc)
        shutil.rmtree(workdir, ignore_errors=True)
    if final:
        print(final)
    return 0


if __name__ == "__main__":
    sys.exit(main())
