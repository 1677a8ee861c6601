"""Job leases: how analysis runs, dataset exports and data downloads survive a dead worker.

A job row is claimed with a conditional UPDATE that succeeds when the row is pending, or running
with an expired lease (a worker died holding it: takeover). The claim writes the owner (host, pid,
task id), an expiry JOB_LEASE_SECONDS ahead and increments `attempts`. While it works, the owner
extends the expiry (heartbeat), again by a conditional UPDATE that matches only while it still
owns the row; a worker whose lease was taken over gets zero rows back, stops, and never writes its
artefact. Finishing (done or failed) is conditional on ownership too, so a job is finished once.

Nothing notices a dead worker by itself: Celery's late acknowledgement redelivers the task only
after the broker's visibility timeout (an hour on Redis). The beat sweep `leases_sweep` looks for
running rows whose lease expired (and pending rows nobody picked up) and dispatches their task
again; after JOB_MAX_ATTEMPTS claims that all ended with an expired lease, the job is failed with
the reason, audited, and its requester told (each job kind says how, see `JobKind`).

Each app registers its job kind (`job_kind_register`) when it starts, so core imports no app.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import close_old_connections, connections, models
from django.db.models import F, Q
from django.db.models.functions import Coalesce
from django.utils import timezone
from django.utils.module_loading import import_string

log = logging.getLogger(__name__)


class LeaseFields(models.Model):
    """The lease columns every leased job row carries (abstract: each app has its own table)."""

    # host:pid:task-id of the worker holding the job; kept after it finishes (who did it).
    lease_owner = models.CharField(max_length=200, blank=True, default="")
    # Running rows only: when a takeover becomes allowed unless the owner heartbeats first.
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    # How many times a worker claimed the job (1 for a job that ran once).
    attempts = models.PositiveSmallIntegerField(default=0)
    # When the task was last sent (by the sweep), so a queued re-dispatch is not repeated.
    dispatched_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        abstract = True


class LeaseLost(Exception):
    """This worker no longer owns the job: another took it over, or it was finished/failed."""


@dataclass(frozen=True)
class JobKind:
    """How the lease machinery treats one job model. The model carries LeaseFields, `status`,
    `error` and `finished_at`, and a `Status` choices class with PENDING, RUNNING and FAILED."""

    name: str  # audit prefix and registry key, e.g. "analysis_run"
    label: str  # for people, e.g. "analysis run"
    model: type[models.Model]
    # Dotted path of the Celery task that runs the job (called with the row's pk). The sweep
    # imports it when it sends the task again, so registering a kind at start-up imports no
    # task module.
    task: str
    # The study the audit event belongs to.
    study_slug: Callable[[Any], str]
    # Tells the requester that the job failed for good; None when the page they watch says it.
    notify_failed: Callable[[Any], None] | None = None
    error_max_length: int = 300

    @property
    def pending(self) -> str:
        return self.model.Status.PENDING

    @property
    def running(self) -> str:
        return self.model.Status.RUNNING

    @property
    def failed(self) -> str:
        return self.model.Status.FAILED


JOB_KINDS: dict[str, JobKind] = {}


def job_kind_register(kind: JobKind) -> JobKind:
    JOB_KINDS[kind.name] = kind
    return kind


def job_kind_of(model: type[models.Model]) -> JobKind:
    for kind in JOB_KINDS.values():
        if kind.model is model:
            return kind
    raise LookupError(f"{model.__name__} is not a registered leased job")


def requester_emailer(*, what: str, page: str, page_label: str) -> Callable[[Any], None]:
    """A `notify_failed` for jobs a researcher requested from a study's console page: emails the
    row's `created_by` (nobody without an address) with the stored error and a link to `page`,
    a URL name taking the study's slug (e.g. "console:monitor_exports")."""

    def notify(row: Any) -> None:
        from django.core.mail import send_mail
        from django.urls import reverse

        user = row.created_by
        address = getattr(user, "email", "") if user is not None else ""
        if not address:
            return
        study = row.study
        url = f"{settings.SITE_URL}{reverse(page, kwargs={'slug': study.slug})}"
        send_mail(
            f"[{study.slug}] {what} {row.pk} failed",
            f"The {what} {row.pk} you requested for study '{study.title}' failed:\n\n"
            f"{row.error}\n\nSee the study's {page_label}: {url}\n",
            settings.DEFAULT_FROM_EMAIL,
            [address],
        )

    return notify


def lease_seconds() -> int:
    return int(getattr(settings, "JOB_LEASE_SECONDS", 300))


def max_attempts() -> int:
    return int(getattr(settings, "JOB_MAX_ATTEMPTS", 3))


def pending_redispatch_seconds() -> int:
    return int(getattr(settings, "JOB_PENDING_REDISPATCH_SECONDS", 900))


def lease_owner_name(task_id: str | None = None) -> str:
    """Who holds a lease: host and pid say which worker process; the task id which delivery."""
    return f"{socket.gethostname()}:{os.getpid()}:{task_id or uuid.uuid4().hex}"[:200]


@dataclass(frozen=True)
class Lease:
    kind: JobKind
    pk: int
    owner: str
    attempt: int

    def _mine(self):
        return self.kind.model.objects.filter(
            pk=self.pk, status=self.kind.running, lease_owner=self.owner
        )

    def heartbeat(self, *, now: dt.datetime | None = None, **fields: Any) -> bool:
        """Extend the lease (and write `fields`, e.g. progress) if this worker still owns it."""
        now = now or timezone.now()
        return (
            self._mine().update(
                lease_expires_at=now + dt.timedelta(seconds=lease_seconds()),
                heartbeat_at=now,
                **fields,
            )
            == 1
        )

    def require(self, **fields: Any) -> None:
        """Heartbeat, or raise LeaseLost so the caller stops before doing more work."""
        if not self.heartbeat(**fields):
            raise LeaseLost(f"{self.kind.label} {self.pk}: lease of {self.owner} lost")

    def finish(self, *, status: str, **fields: Any) -> bool:
        """Move the job out of running (done/failed) if this worker still owns it."""
        now = timezone.now()
        fields.setdefault("finished_at", now)
        return (
            self._mine().update(status=status, lease_expires_at=None, heartbeat_at=now, **fields)
            == 1
        )

    def fail(self, error: str) -> bool:
        return self.finish(status=self.kind.failed, error=error[: self.kind.error_max_length])

    def owns(self, row: Any) -> bool:
        """For code that already holds the row (locked): is it still ours and running?"""
        return row.status == self.kind.running and row.lease_owner == self.owner


def job_claim(
    model: type[models.Model], pk: int, *, owner: str | None = None, **fields: Any
) -> Lease | None:
    """`lease_claim` for a registered job model, as this process when no owner is given;
    `fields` are set on the row with the claim (progress reset, start time)."""
    return lease_claim(job_kind_of(model), pk, owner=owner or lease_owner_name(), **fields)


def job_run(
    kind: JobKind,
    pk: int,
    *,
    task_id: str | None,
    claim: Callable[..., Lease | None],
    work: Callable[[Lease], Any],
) -> None:
    """What each leased job's Celery task does: `claim` the row (pending, or running with an
    expired lease: its worker died) and do the `work`. A delivery that finds the row missing,
    finished or held by a live worker does nothing, and one that finds its last attempt dead
    fails it for good (`lease_fail_exhausted`)."""
    lease = claim(pk, owner=lease_owner_name(task_id))
    if lease is None:
        if not lease_fail_exhausted(kind, pk):
            log.info("%s %s is missing, finished or held by another worker", kind.label, pk)
        return
    work(lease)


def lease_claim(
    kind: JobKind, pk: int, *, owner: str, now: dt.datetime | None = None, **fields: Any
) -> Lease | None:
    """Claim a pending job, or take over a running one whose lease expired (fewer than
    JOB_MAX_ATTEMPTS claims so far). None when another worker holds it, it is finished, or its
    attempts are used up (see `lease_fail_exhausted`)."""
    now = now or timezone.now()
    claimable = Q(status=kind.pending) | Q(
        Q(lease_expires_at__lt=now) | Q(lease_expires_at__isnull=True),
        status=kind.running,
        attempts__lt=max_attempts(),
    )
    claimed = (
        kind.model.objects.filter(claimable, pk=pk).update(
            status=kind.running,
            lease_owner=owner,
            lease_expires_at=now + dt.timedelta(seconds=lease_seconds()),
            heartbeat_at=now,
            attempts=F("attempts") + 1,
            **fields,
        )
        == 1
    )
    if not claimed:
        return None
    attempt = kind.model.objects.filter(pk=pk).values_list("attempts", flat=True).first() or 1
    if attempt > 1:
        log.warning("%s %s taken over by %s (attempt %s)", kind.label, pk, owner, attempt)
    return Lease(kind=kind, pk=pk, owner=owner, attempt=attempt)


def _stopped_reason(kind: JobKind, row: Any) -> str:
    # What the requester reads first (the console shortens long errors): what happened and what
    # to do; then, for the operator, which worker held the last lease and when it ran out.
    when = row.lease_expires_at.strftime("%Y-%m-%d %H:%M:%S UTC") if row.lease_expires_at else "?"
    return (
        f"The worker stopped {row.attempts} times while running this {kind.label}, so it was "
        "not retried again. Request it again; tell the platform operator if it keeps failing. "
        f"(Last lease: {row.lease_owner or 'unknown worker'}, expired {when}.)"
    )


def lease_fail_exhausted(kind: JobKind, pk: int, *, now: dt.datetime | None = None) -> bool:
    """Fail a running job whose lease expired after its last allowed attempt: the reason is
    stored, an audit event written and the requester told. True when this call failed it."""
    now = now or timezone.now()
    row = kind.model.objects.filter(pk=pk).first()
    if row is None:
        return False
    reason = _stopped_reason(kind, row)[: kind.error_max_length]
    failed = (
        kind.model.objects.filter(
            Q(lease_expires_at__lt=now) | Q(lease_expires_at__isnull=True),
            pk=pk,
            status=kind.running,
            attempts__gte=max_attempts(),
        ).update(status=kind.failed, error=reason, finished_at=now, lease_expires_at=None)
        == 1
    )
    if not failed:
        return False
    from studyplatform.core.audit import audit_record

    row.refresh_from_db()
    log.error("%s %s failed for good: %s", kind.label, pk, reason)
    audit_record(
        actor=None,
        action=f"{kind.name}.failed",
        target=row,
        study_slug=kind.study_slug(row),
        data={"attempts": row.attempts, "last_owner": row.lease_owner, "reason": reason},
    )
    if kind.notify_failed is None:
        return True
    try:
        kind.notify_failed(row)
    except Exception:  # the failure is recorded and audited; a mail error must not undo that
        log.exception("could not tell the requester that %s %s failed", kind.label, pk)
    return True


def leases_sweep(*, now: dt.datetime | None = None) -> dict[str, int]:
    """Re-dispatch jobs whose worker died (expired lease) or that nobody picked up; fail those
    out of attempts. Returns counts for the log."""
    now = now or timezone.now()
    counts = {"redispatched": 0, "failed": 0}
    quiet = now - dt.timedelta(seconds=pending_redispatch_seconds())
    for kind in JOB_KINDS.values():
        manager = kind.model.objects
        expired = Q(lease_expires_at__lt=now) | Q(lease_expires_at__isnull=True)
        exhausted = manager.filter(expired, status=kind.running, attempts__gte=max_attempts())
        # Only the keys: an analysis run's row can carry megabytes of report and results.
        for pk in list(exhausted.values_list("pk", flat=True)):
            counts["failed"] += lease_fail_exhausted(kind, pk, now=now)
        # Expired leases are re-sent once per expiry (dispatched_at after the expiry means a
        # message is already queued) and again after the pending delay if that one got lost.
        # Pending rows are re-sent when neither creation nor the last dispatch is recent.
        last_sent = Coalesce("dispatched_at", "created_at")
        due = manager.alias(last_sent=last_sent).filter(
            Q(expired, status=kind.running, attempts__lt=max_attempts())
            & (
                Q(dispatched_at__isnull=True)
                | Q(dispatched_at__lt=F("lease_expires_at"))
                | Q(dispatched_at__lt=quiet)
            )
            | Q(status=kind.pending, last_sent__lt=quiet)
        )
        for pk in list(due.values_list("pk", flat=True)[:500]):
            # Conditional, so two sweeps at once send one message.
            sent = manager.filter(
                Q(dispatched_at__isnull=True) | Q(dispatched_at__lt=now), pk=pk
            ).update(dispatched_at=now)
            if sent == 1:
                log.warning("%s %s re-dispatched by the lease sweep", kind.label, pk)
                import_string(kind.task).delay(pk)
                counts["redispatched"] += 1
    return counts


class Keepalive:
    """Heartbeat a lease from a background thread while a long step runs in this one.

    Steps that report progress heartbeat at every report; this covers the stretches between
    (one large model fit, one large table) so a live worker never loses its lease because a
    step outlasted JOB_LEASE_SECONDS. It only ever extends the lease: noticing a lost lease is
    left to the worker's own conditional writes, which stop it and discard its artefact.
    """

    def __init__(self, lease: Lease) -> None:
        self.lease = lease
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"lease-{lease.pk}", daemon=True)

    def _run(self) -> None:
        period = max(lease_seconds() / 3, 0.5)
        try:
            while not self._stop.wait(period):
                try:
                    close_old_connections()
                    self.lease.heartbeat()
                except Exception:
                    log.exception(
                        "lease heartbeat of %s %s failed", self.lease.kind.label, self.lease.pk
                    )
        finally:
            connections.close_all()

    def __enter__(self) -> Keepalive:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


def fault_injection_pause() -> None:
    """Fault-injection hook: JOB_TEST_STEP_DELAY_SECONDS (environment only, 0 by default) sleeps
    between job steps so a test can kill a worker mid-job. No protocol or request can set it."""
    delay = float(getattr(settings, "JOB_TEST_STEP_DELAY_SECONDS", 0) or 0)
    if delay > 0:
        time.sleep(delay)
