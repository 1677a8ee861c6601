"""Chat background work: the retention sweep that deletes chat text of closed studies, and the
sweep that records replies abandoned in `streaming`."""

from __future__ import annotations

from celery import shared_task


@shared_task(
    name="studyplatform.chat.tasks.chat_text_retention_sweep",
    ignore_result=True,
    # A large closed study can hold hundreds of thousands of messages; the sweep commits batch
    # by batch and resumes where it stopped, but should normally finish in one run.
    soft_time_limit=3600,
    time_limit=3700,
)
def chat_text_retention_sweep() -> None:
    """Delete chat text of closed studies whose protocol says so, once their delay has passed."""
    from .retention import chat_text_retention_sweep as sweep

    sweep()


@shared_task(name="studyplatform.chat.tasks.stale_reply_sweep", ignore_result=True)
def stale_reply_sweep() -> int:
    """Record replies abandoned in `streaming` as interrupted on our side (beat.py)."""
    from .services import stale_replies_finish

    return stale_replies_finish()
