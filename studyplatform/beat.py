"""The one place that declares periodic work. Each entry says why it runs at that period.

Every entry carries an `expires` shorter than its period, so a backlog after an outage does not
replay a pile of stale ticks.
"""

from __future__ import annotations

BEAT_SCHEDULE = {
    # The /healthz page reports how long ago a worker last ran a task; once a minute is enough to
    # notice a dead worker well before participants notice missing invitations.
    "core-worker-heartbeat": {
        "task": "studyplatform.core.tasks.worker_heartbeat",
        "schedule": 60.0,
        "options": {"expires": 50},
    },
}
