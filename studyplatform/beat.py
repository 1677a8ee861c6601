"""The one place that declares periodic work. Each entry says why it runs at that period.

Every entry carries an `expires` shorter than its period, so a backlog after an outage does not
replay a pile of stale ticks.
"""

from __future__ import annotations

from celery.schedules import crontab

BEAT_SCHEDULE = {
    # Survey invitations open at minute precision (a 18:00 local survey should arrive at 18:00);
    # each tick is bounded bulk work, and expires before the next one so ticks never pile up.
    "surveys-schedule-tick": {
        "task": "surveys.tasks.schedule_tick",
        "schedule": 60.0,
        "options": {"expires": 55},
    },
    # /healthz fails when a worker has not run this for HEALTH_WORKER_MAX_AGE_S (90 s), or beat
    # has not published anything for HEALTH_BEAT_MAX_AGE_S; every 30 s lets two ticks be missed
    # before either fails, and gives a fresh `make run` a healthy page within its first minute.
    # The task is trivial (one Redis SET), so the period costs nothing.
    # Usage nudges go out at a local time of day the protocol sets (e.g. 19:00): every minute
    # keeps them on time like survey invitations; a tick is a bounded batch of claimed rows and
    # expires before the next one.
    "compliance-nudge-tick": {
        "task": "studyplatform.compliance.tasks.nudge_tick",
        "schedule": 60.0,
        "options": {"expires": 55},
    },
    "core-worker-heartbeat": {
        "task": "studyplatform.core.tasks.worker_heartbeat",
        "schedule": 30.0,
        "options": {"expires": 25},
    },
    # Analysis runs, exports and data downloads hold a lease (JOB_LEASE_SECONDS, 5 min) that
    # their worker renews; a killed worker's job sits until this sweep re-dispatches it (or
    # fails it after JOB_MAX_ATTEMPTS). Every minute keeps the wait close to the lease length
    # and costs three small queries; expires before the next run, since the next
    # sweep finds the same rows.
    "core-job-lease-sweep": {
        "task": "studyplatform.core.tasks.job_lease_sweep",
        "schedule": 60.0,
        "options": {"expires": 55},
    },
    # A safety alert that failed to be raised (bad configuration, a database error) is retried
    # by its own task; this sweep catches the ones whose retries ran out. Every 5 minutes keeps
    # a missed alert well inside any protocol's response time; expires before the next run.
    "safety-alert-sweep": {
        "task": "studyplatform.safety.tasks.safety_alert_sweep",
        "schedule": 300.0,
        "options": {"expires": 290},
    },
    # A reply whose process could not record its end (database down at that moment, process
    # killed) stays `streaming`; this finalises those older than STALE_REPLY_AFTER_S (10 min)
    # as error / internal_interrupted. Every 5 minutes bounds how long such a row misleads the
    # console and exports to ~15 minutes; a run is one indexed query. Expires before the next.
    "chat-stale-reply-sweep": {
        "task": "studyplatform.chat.tasks.stale_reply_sweep",
        "schedule": 300.0,
        "options": {"expires": 290},
    },
    # Safety reviewers get one email per alert when it is raised; a daily digest of the alerts
    # still unresolved catches the ones that email did not get acted on. Once a day, before the
    # working day starts in Europe (07:00 UTC); a digest more than 6 h late is dropped, since the
    # next day's digest will carry the same alerts.
    "safety-digest": {
        "task": "studyplatform.safety.tasks.safety_digest",
        "schedule": crontab(hour=7, minute=0),
        "options": {"expires": 6 * 3600},
    },
    # Export zips hold study data outside the database; they are deleted EXPORT_EXPIRY_DAYS
    # after they are built. Expiry is measured in days, so a daily sweep (03:00 UTC, a quiet
    # hour) is precise enough; a sweep more than 12 h late is dropped, the next one catches up.
    "exports-expire": {
        "task": "studyplatform.exports.tasks.expire_exports",
        "schedule": crontab(hour=3, minute=0),
        "options": {"expires": 12 * 3600},
    },
    # Closed studies whose protocol deletes chat text N days after closing (chat/retention.py).
    # The delay is counted in days, so a daily run (02:30 UTC, a quiet hour, before the export
    # sweep) deletes the text within a day of its due date; a run more than 12 h late is
    # dropped, since the next one does the same work (the sweep is idempotent).
    "chat-text-retention": {
        "task": "studyplatform.chat.tasks.chat_text_retention_sweep",
        "schedule": crontab(hour=2, minute=30),
        "options": {"expires": 12 * 3600},
    },
    # Participants' "download my data" archives (encrypted, but identifiable) are deleted
    # DATA_DOWNLOAD_EXPIRY_HOURS after they are built (72 by default); downloads already refuse
    # an expired archive, so an hourly sweep only bounds how long the file lingers.
    "participants-downloads-expire": {
        "task": "studyplatform.participants.tasks.expire_data_downloads",
        "schedule": crontab(minute=17),
        "options": {"expires": 50 * 60},
    },
}
