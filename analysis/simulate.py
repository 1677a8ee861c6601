"""Adversarial simulated cohorts with a known truth, as the frames a real study's data gives.

:func:`simulate_cohort` draws a cohort from a latent daily process and returns it as
:class:`analysis.pipeline.StudyFrames` (participants, messages with timestamps, invitations,
scored responses — the shapes :func:`analysis.data.load_study_frames` builds), so a simulated
cohort goes through :func:`analysis.pipeline.analyse`, the code path of a researcher's report.
``benchmarks/analysis_validity.py`` runs the scenarios of issue 13 through it; the tests use a
few replicates; ``simulate_study`` uses the same latent core (:func:`latent_people`,
:func:`latent_days`, :func:`wellbeing`) to fill a study in the database.

The latent process, per participant *i* and local study day *d* (day 0 = enrolment day):

* **person**: wellbeing level ``αᵢ ~ N(50, person_sd²)`` (WHO-5 percentage points; every
  outcome is drawn on this scale and mapped to its instrument), usage level
  ``log λᵢ = log(usage_mean) − σ²/2 + σ·(−confounding·zᵢ + √(1−confounding²)·wᵢ)`` with ``zᵢ``
  the standardised ``αᵢ`` (so ``confounding > 0``: people with lower wellbeing use more, the
  between-person confounding a within-person estimate must not pick up), a within-person
  effect ``βᵢ ~ N(effect, effect_sd²)``, a night-chat propensity, an arm;
* **mood**: a daily deviation ``mᵢd`` (stationary AR(1), ``mood_ar``, SD ``mood_sd``), also on
  the days before enrolment (the recall period of the baseline survey);
* **usage**: messages on day *d* ``~ Poisson(λᵢ · (1 + novelty·e^(−d/novelty_days)) ·
  exp(driftᵢd − reverse·mᵢd/mood_sd))``: an AR(1) drift makes weeks differ within a person,
  ``novelty`` makes use decline after the first weeks, ``reverse`` makes low mood drive use
  (reverse causation: use then has no effect of its own on wellbeing). Messages are spread over
  sessions with timestamps, each answered by an assistant message;
* **outcome** of occasion *t* completed on local day *cₜ*::

      Wᵢₜ = αᵢ + mean(mᵢ over the recall_days days before cₜ) − baseline_shift·[t = 0]
            + arm_effect·weeksₜ·[arm = treatment]
            + βᵢ·(g(Uᵢ,ₜ₋₁) − g(λᵢ·window_days))·[t ≥ 2] + εᵢₜ,   εᵢₜ ~ N(0, noise_sd²)

  with ``Uᵢ,ₜ₋₁`` the messages sent in the ``window_days`` whole local days before the local
  day occasion *t − 1* was completed (or, if it was missed, was due) — exactly the window
  :func:`analysis.features.windows_before` cuts — and ``g`` the identity (``usage_scale =
  "count"``) or ``log1p``. Occasion 0 is the baseline at enrolment: the window before it starts
  before enrolment (it holds at most the first day or two of platform use), so the first
  follow-up carries no effect.
  WHO-5 percentage is ``W`` rounded to a multiple of 4 in [0, 100]; PHQ-9 total is
  ``27·(1 − W/100)`` rounded in [0, 27].

**The estimand** (:meth:`CohortSpec.truth`): the average over people of the lagged
within-person effect — how much higher the outcome at occasion *t* is, in the outcome's units,
when usage (on the ``usage_scale``) in the window before occasion *t − 1* is one unit above
the person's usual level. That is what a lagged within-person model (usage before *t − 1*
predicting the outcome at *t*) estimates. There is no same-period effect: usage in the window
before occasion *t* does not change the outcome at *t*, so the true coefficient of a
same-period (``<x>_within``) term is 0 and any non-zero value it shows is association
(drift shared with the lagged window, reverse causation, recall overlap).

**Observation**: the baseline is always answered (it is part of enrolment); follow-ups are
skipped at random with probability ``skip``; after each occasion a participant leaves the
study (stops answering and chatting) with probability
``logistic(logit(dropout) − dropout_informative·z)``, ``z`` the standardised wellbeing the
person *would* report at the next occasion (missing not at random: people leave when they are
about to feel worse). Completion is ``Exp(3 h)`` after opening, or with probability ``late``
1 to ``late_days`` days after it (irregular completion). Surveys open at enrolment (baseline)
and at 18:00 local every ``every_days`` days.

No Django imports.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from analysis.linking import assign_waves
from analysis.pipeline import StudyFrames

__all__ = [
    "INSTRUMENTS",
    "CohortSpec",
    "LatentDays",
    "LatentPeople",
    "SimulatedCohort",
    "latent_days",
    "latent_people",
    "message_times",
    "simulate_cohort",
    "wellbeing",
]

# The outcome each instrument reports, and its units per wellbeing point (PHQ-9 counts
# symptoms, so higher is worse: 27 points over the 100-point wellbeing range, sign flipped).
INSTRUMENTS: dict[str, tuple[str, float]] = {
    "who5": ("percentage", 1.0),
    "phq9": ("total", -27 / 100),
}
ARMS = ("control", "treatment")
LOG_RATE_SD = 0.7  # between-person SD of log usage: usage is right-skewed across people
DRIFT_AR, DRIFT_SD = 0.7, 0.35  # week-to-week variation of a person's use (as simulate_study)
MINUTES_PER_DAY = 24 * 60


@dataclass(frozen=True)
class CohortSpec:
    """The knobs of a simulated cohort (module docstring: what each does)."""

    participants: int = 150
    waves: int = 6  # occasions, baseline included
    every_days: int = 7  # 7 weekly, 30 monthly
    window_days: int = 7  # the usage window the truth refers to (the plan's window_days)
    instrument: str = "who5"
    usage_scale: str = "count"  # "count" or "log1p": the scale the effect is linear in
    effect: float = 0.0  # lagged within-person effect, wellbeing points per usage unit
    effect_sd: float = 0.0  # SD of that effect across people
    confounding: float = 0.0  # -1..1: correlation of usage level with low wellbeing
    baseline_shift: float = 0.0  # wellbeing points lower at baseline than afterwards
    novelty: float = 0.0  # extra use at the start: rate × (1 + novelty·e^(−day/novelty_days))
    novelty_days: float = 10.0
    reverse: float = 0.0  # log usage rate per SD of low mood (mood drives use)
    dropout: float = 0.0  # chance of leaving after each occasion
    dropout_informative: float = 0.0  # log-odds of leaving per SD of lower next wellbeing
    skip: float = 0.1  # chance of missing one follow-up occasion
    late: float = 0.0  # share of occasions completed 1..late_days days after opening
    late_days: float = 5.0
    recall_days: int = 14  # WHO-5 and PHQ-9 ask about the last two weeks
    mood_ar: float = 0.5  # day-to-day autocorrelation of mood
    mood_sd: float = 12.0
    person_sd: float = 15.0
    noise_sd: float = 6.0
    usage_mean: float = 4.0  # messages a day for the average person
    arm_effect: float = 0.0  # wellbeing points per week of study in the treatment arm
    timezone: str = "UTC"
    start: str = "2026-01-05"  # local date of the first possible enrolment (a Monday)

    def __post_init__(self) -> None:
        if self.participants < 1:
            raise ValueError("participants must be at least 1")
        if self.waves < 2:
            raise ValueError("waves must be at least 2 (baseline and one follow-up)")
        if self.every_days < 1 or self.window_days < 1 or self.recall_days < 1:
            raise ValueError("every_days, window_days and recall_days must be at least 1")
        if self.instrument not in INSTRUMENTS:
            raise ValueError(f"instrument must be one of {sorted(INSTRUMENTS)}")
        if self.usage_scale not in ("count", "log1p"):
            raise ValueError("usage_scale must be 'count' or 'log1p'")
        if not -1 <= self.confounding <= 1:
            raise ValueError("confounding must be between -1 and 1")
        for name in ("dropout", "skip", "late"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"{name} must be in [0, 1)")
        if self.late and not 1 <= self.late_days < self.every_days:
            # A late answer must not arrive after the next occasion has opened.
            raise ValueError("late_days must be at least 1 and less than every_days")

    @property
    def outcome(self) -> str:
        """The analysis column of the outcome, ``<instrument>.<score>``."""
        return f"{self.instrument}.{INSTRUMENTS[self.instrument][0]}"

    @property
    def days(self) -> int:
        """Study days simulated: through the last occasion's latest completion."""
        return (self.waves - 1) * self.every_days + math.ceil(self.late_days) + 2

    def truth(self) -> float:
        """The true lagged within-person effect in the outcome's units (module docstring)."""
        return self.effect * INSTRUMENTS[self.instrument][1]

    def with_(self, **changes: Any) -> CohortSpec:
        return replace(self, **changes)


@dataclass
class LatentPeople:
    alpha: np.ndarray  # wellbeing level
    rate: np.ndarray  # messages a day (λ)
    beta: np.ndarray  # lagged within-person effect
    night: np.ndarray  # chance a session starts at night
    arm: np.ndarray  # 0 control, 1 treatment


@dataclass
class LatentDays:
    mood: np.ndarray  # (n, recall_days + days): mood of study day d at column d + recall_days
    planned: np.ndarray  # (n, days) messages drawn per study day

    def recall_mean(self, pid: np.ndarray, day: np.ndarray, recall_days: int) -> np.ndarray:
        """Mean mood over the ``recall_days`` days before study day ``day`` (vectorised)."""
        csum = np.concatenate(
            [np.zeros((self.mood.shape[0], 1)), np.cumsum(self.mood, axis=1)], axis=1
        )
        col = np.clip(day, 0, self.mood.shape[1] - recall_days) + recall_days
        return (csum[pid, col] - csum[pid, col - recall_days]) / recall_days


def latent_people(rng: np.random.Generator, n: int, spec: CohortSpec) -> LatentPeople:
    z = rng.standard_normal(n)
    w = rng.standard_normal(n)
    c = spec.confounding
    log_rate = (
        math.log(spec.usage_mean)
        - LOG_RATE_SD**2 / 2
        + LOG_RATE_SD * (-c * z + math.sqrt(1 - c * c) * w)
    )
    arm = np.arange(n) % 2
    rng.shuffle(arm)
    return LatentPeople(
        alpha=50 + spec.person_sd * z,
        rate=np.exp(log_rate),
        beta=spec.effect + spec.effect_sd * rng.standard_normal(n),
        night=rng.beta(1.0, 12.0, size=n),
        arm=arm,
    )


def _ar1(rng: np.random.Generator, n: int, length: int, ar: float, sd: float) -> np.ndarray:
    """Stationary AR(1) paths with marginal SD ``sd``."""
    out = np.empty((n, length))
    out[:, 0] = rng.normal(0, sd, size=n)
    innovation = sd * math.sqrt(1 - ar * ar)
    for t in range(1, length):
        out[:, t] = ar * out[:, t - 1] + rng.normal(0, innovation, size=n)
    return out


def latent_days(
    rng: np.random.Generator, people: LatentPeople, days: int, spec: CohortSpec
) -> LatentDays:
    n = len(people.alpha)
    mood = _ar1(rng, n, spec.recall_days + days, spec.mood_ar, spec.mood_sd)
    drift = _ar1(rng, n, days, DRIFT_AR, DRIFT_SD)
    d = np.arange(days)
    novelty = 1 + spec.novelty * np.exp(-d / spec.novelty_days)
    own_mood = mood[:, spec.recall_days :]
    rate = (
        people.rate[:, None]
        * novelty[None, :]
        * np.exp(drift - spec.reverse * own_mood / spec.mood_sd)
    )
    return LatentDays(mood=mood, planned=rng.poisson(rate))


def message_times(
    rng: np.random.Generator,
    counts: np.ndarray,
    night: np.ndarray,
    first_minute: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """User message times: (participant index, local minutes since midnight of study day 0).

    The ``counts[i, d]`` messages of a day fall into ``1 + Poisson(k/6)`` sessions (at most
    ``k``) starting at night (00:00-06:00) with the person's ``night`` chance, otherwise
    08:00-23:30, messages ``Exp(2 min)`` apart. On day 0 nothing is before ``first_minute``
    (the enrolment). Sorted by participant, then time.
    """
    i_idx, d_idx = np.nonzero(counts)
    k = counts[i_idx, d_idx]
    if k.size == 0:
        return np.zeros(0, np.int64), np.zeros(0)
    n_sess = np.minimum(k, 1 + rng.poisson(k / 6))
    s_i, s_d = np.repeat(i_idx, n_sess), np.repeat(d_idx, n_sess)
    at_night = rng.random(s_i.size) < night[s_i]
    start = np.where(
        at_night, rng.uniform(0, 6 * 60, s_i.size), rng.uniform(8 * 60, 23.5 * 60, s_i.size)
    )
    first = np.where(s_d == 0, first_minute[s_i], 0.0)
    start = np.where(
        start < first, first + rng.uniform(0, 1, s_i.size) * (23.5 * 60 - first), start
    )
    start = start + s_d * MINUTES_PER_DAY
    # Each message picks a session of its day; within a session messages follow each other.
    sess_offset = np.concatenate([[0], np.cumsum(n_sess)[:-1]])
    m_sess = np.repeat(sess_offset, k) + np.floor(rng.random(k.sum()) * np.repeat(n_sess, k))
    m_sess = np.sort(m_sess.astype(np.int64))
    gaps = rng.exponential(2.0, size=m_sess.size)
    csum = np.cumsum(gaps)
    opens = np.r_[True, m_sess[1:] != m_sess[:-1]]
    before = np.maximum.accumulate(np.where(opens, csum - gaps, 0.0))
    minutes = start[m_sess] + (csum - before)
    pid = s_i[m_sess]
    order = np.lexsort((minutes, pid))
    return pid[order], minutes[order]


def daily_counts(pid: np.ndarray, minutes: np.ndarray, n: int, days: int) -> np.ndarray:
    """Messages per participant per local study day (days past ``days`` are dropped)."""
    day = np.floor(minutes / MINUTES_PER_DAY).astype(np.int64)
    keep = (day >= 0) & (day < days)
    out = np.zeros((n, days), dtype=np.int64)
    np.add.at(out, (pid[keep], day[keep]), 1)
    return out


def window_usage(usage: np.ndarray, pid: np.ndarray, day: np.ndarray, window: int) -> np.ndarray:
    """Messages in the ``window`` whole days before study day ``day`` (pre-enrolment days: 0)."""
    csum = np.concatenate([np.zeros((usage.shape[0], 1)), np.cumsum(usage, axis=1)], axis=1)
    end = np.clip(day, 0, usage.shape[1])
    start = np.clip(day - window, 0, usage.shape[1])
    return csum[pid, end] - csum[pid, start]


def wellbeing(
    rng: np.random.Generator,
    spec: CohortSpec,
    people: LatentPeople,
    latent: LatentDays,
    *,
    pid: np.ndarray,
    day: np.ndarray,
    baseline: np.ndarray,
    weeks: np.ndarray,
    lag_usage: np.ndarray,
) -> np.ndarray:
    """Latent wellbeing ``W`` of occasions (module docstring), before rounding to a score.

    ``lag_usage`` is the messages in the window before the previous occasion, NaN where the
    occasion has no post-enrolment previous occasion (baseline and the first follow-up).
    """
    if spec.usage_scale == "log1p":
        g, usual = np.log1p(lag_usage), np.log1p(people.rate[pid] * spec.window_days)
    else:
        g, usual = lag_usage, people.rate[pid] * spec.window_days
    effect = np.where(np.isnan(g), 0.0, people.beta[pid] * (g - usual))
    return (
        people.alpha[pid]
        + latent.recall_mean(pid, day, spec.recall_days)
        - spec.baseline_shift * baseline
        + spec.arm_effect * weeks * people.arm[pid]
        + effect
        + rng.normal(0, spec.noise_sd, size=pid.size)
    )


def score(instrument: str, w: np.ndarray) -> list[dict[str, int]]:
    """Instrument scores from latent wellbeing (rounded and bounded as real answers are)."""
    if instrument == "who5":
        raw = np.clip(np.rint(w / 4), 0, 25).astype(int)
        return [{"raw": int(r), "percentage": int(4 * r)} for r in raw]
    total = np.clip(np.rint(27 * (1 - w / 100)), 0, 27).astype(int)
    return [{"total": int(t)} for t in total]


@dataclass
class SimulatedCohort:
    spec: CohortSpec
    frames: StudyFrames
    occasions: pd.DataFrame  # every scheduled occasion with its latent values (for tests)
    usage: np.ndarray  # realised messages per participant per study day


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


def simulate_cohort(spec: CohortSpec, seed: int | np.random.SeedSequence = 0) -> SimulatedCohort:
    """Draw one cohort (module docstring) as the frames :func:`analysis.pipeline.analyse` takes."""
    rng = np.random.default_rng(seed)
    n, days = spec.participants, spec.days
    people = latent_people(rng, n, spec)
    latent = latent_days(rng, people, days, spec)

    # Enrolment: a local date in the first week and a daytime minute.
    day0 = pd.Timestamp(spec.start) + pd.to_timedelta(rng.integers(0, 7, size=n), unit="D")
    enrol_minute = rng.uniform(8 * 60, 20 * 60, size=n)
    pid, minutes = message_times(rng, latent.planned, people.night, enrol_minute + 1)

    # Occasions: k = 0 (baseline, at enrolment) .. waves-1 (18:00 local every every_days days).
    k = np.arange(spec.waves)
    o_pid = np.repeat(np.arange(n), spec.waves)
    o_k = np.tile(k, n)
    opens = np.where(o_k == 0, enrol_minute[o_pid] + 1, o_k * spec.every_days * 1440 + 18 * 60)
    delay = np.minimum(rng.exponential(3 * 60, size=o_pid.size), 47 * 60)
    if spec.late:
        late = (rng.random(o_pid.size) < spec.late) & (o_k > 0)
        late_delay = rng.uniform(1, spec.late_days, size=o_pid.size) * 1440
        delay = np.where(late, late_delay, delay)
    done_at = opens + delay
    done_day = np.floor(done_at / 1440).astype(np.int64)

    # Truth needs the realised daily usage (what the features will count), before dropout
    # truncates it; dropout only removes usage after the occasions that are still observed.
    usage = daily_counts(pid, minutes, n, days)
    own_window = window_usage(usage, o_pid, done_day, spec.window_days)
    lag = np.full(o_pid.size, np.nan)
    has_prev = o_k >= 2
    lag[has_prev] = own_window[np.flatnonzero(has_prev) - 1]
    w = wellbeing(
        rng,
        spec,
        people,
        latent,
        pid=o_pid,
        day=done_day,
        baseline=(o_k == 0).astype(float),
        weeks=done_at / (7 * 1440),
        lag_usage=lag,
    )

    # Observation: skips at random, then dropout driven by the next (unreported) wellbeing.
    answered = (o_k == 0) | (rng.random(o_pid.size) >= spec.skip)
    stays = np.ones(o_pid.size, dtype=bool)
    stop_minute = np.full(n, np.inf)
    if spec.dropout:
        z = (w - 50) / math.sqrt(spec.person_sd**2 + spec.mood_sd**2 + spec.noise_sd**2)
        grid = z.reshape(n, spec.waves)
        leave_p = 1 / (1 + np.exp(-(_logit(spec.dropout) - spec.dropout_informative * grid)))
        leaves = rng.random((n, spec.waves)) < leave_p
        # Leaving after occasion j (decided on the wellbeing of occasion j + 1) removes j + 1 ...
        after = np.zeros((n, spec.waves), dtype=bool)
        after[:, 1:] = np.cumsum(leaves[:, 1:], axis=1) > 0
        stays = ~after.reshape(-1)
        first_gone = np.where(after.any(axis=1), after.argmax(axis=1), spec.waves)
        gone = first_gone < spec.waves
        stop_minute[gone] = opens.reshape(n, spec.waves)[gone, first_gone[gone]]
    observed = answered & stays
    keep = minutes < stop_minute[pid]
    pid, minutes = pid[keep], minutes[keep]
    usage = daily_counts(pid, minutes, n, days)

    frames = _frames(
        spec, rng, people, day0, enrol_minute, pid, minutes, o_pid, o_k, opens, done_at, observed, w
    )
    occasions = pd.DataFrame(
        {
            "participant": _codes(n)[o_pid],
            "k": o_k,
            "day": done_day,
            "wellbeing": w,
            "lag_usage": lag,
            "window_usage": own_window,
            "observed": observed,
            "stays": stays,
            "arm": np.array(ARMS)[people.arm[o_pid]],
        }
    )
    return SimulatedCohort(spec=spec, frames=frames, occasions=occasions, usage=usage)


def _codes(n: int) -> np.ndarray:
    return np.array([f"P{i:05d}" for i in range(n)])


def _utc(day0: pd.DatetimeIndex, idx: np.ndarray, minutes: np.ndarray, zone: str) -> pd.Series:
    """Local wall-clock minutes since each participant's day 0 as UTC instants."""
    local = day0.to_numpy()[idx] + (minutes * 60e9).astype("timedelta64[ns]")
    stamps = pd.DatetimeIndex(local)
    if zone != "UTC":
        stamps = stamps.tz_localize(zone, ambiguous=True, nonexistent="shift_forward")
        return pd.Series(stamps.tz_convert("UTC"))
    return pd.Series(stamps.tz_localize("UTC"))


def _frames(
    spec: CohortSpec,
    rng: np.random.Generator,
    people: LatentPeople,
    day0: pd.DatetimeIndex,
    enrol_minute: np.ndarray,
    pid: np.ndarray,
    minutes: np.ndarray,
    o_pid: np.ndarray,
    o_k: np.ndarray,
    opens: np.ndarray,
    done_at: np.ndarray,
    observed: np.ndarray,
    w: np.ndarray,
) -> StudyFrames:
    n = spec.participants
    codes = _codes(n)
    participants = pd.DataFrame(
        {
            "participant": codes,
            "timezone": spec.timezone,
            "enrolled_at": _utc(day0, np.arange(n), enrol_minute, spec.timezone),
            "language": "en",
            "arm": np.array(ARMS)[people.arm],
            "status": "completed",
        }
    )

    # User message j is row 2j and its reply row 2j + 1 (as the database's ids order them).
    sent = _utc(day0, pid, minutes, spec.timezone).dt.tz_localize(None).to_numpy()
    latency = rng.integers(600, 5000, size=pid.size).astype(float)
    week = np.floor(minutes / (7 * MINUTES_PER_DAY)).astype(np.int64)
    conversation = (pid * 1000 + week).astype(str)  # one conversation per participant-week
    both = np.repeat(np.arange(pid.size), 2)
    is_reply = np.tile([False, True], pid.size)
    created = sent[both] + np.where(is_reply, latency[both], 0.0).astype("timedelta64[ms]")
    messages = pd.DataFrame(
        {
            "participant": codes[pid][both],
            "conversation": conversation[both],
            "role": np.where(is_reply, "assistant", "user"),
            "created_at": pd.to_datetime(created, utc=True),
            "latency_ms": np.where(is_reply, latency[both], np.nan),
            "imported": False,
            "text": None,
        }
    )

    follow_up = "weekly" if spec.every_days == 7 else "followup"
    entry = np.where(o_k == 0, "baseline", follow_up)
    day_of = o_k * spec.every_days
    occurrence = np.where(o_k == 0, "enrollment", np.char.add("d", day_of.astype(str)))
    opens_utc = _utc(day0, o_pid, opens, spec.timezone)
    done_utc = _utc(day0, o_pid, done_at, spec.timezone)
    invitations = pd.DataFrame(
        {
            "participant": codes[o_pid],
            "entry": entry,
            "occurrence": occurrence,
            "entry_wave": pd.array([None if j == 0 else int(j) for j in o_k], dtype="Int64"),
            "status": np.where(observed, "completed", "expired"),
            "opens_at": opens_utc,
            "completed_at": done_utc.where(observed),
        }
    )
    invitations["wave"] = assign_waves(invitations, participants)

    rows = np.flatnonzero(observed)
    responses = pd.DataFrame(
        {
            "participant": codes[o_pid[rows]],
            "entry": entry[rows],
            "occurrence": occurrence[rows],
            "opens_at": opens_utc.iloc[rows].reset_index(drop=True),
            "submitted_at": done_utc.iloc[rows].reset_index(drop=True),
            "instrument": spec.instrument,
            "scores": score(spec.instrument, w[rows]),
        }
    )
    responses["wave"] = assign_waves(responses, participants)
    return StudyFrames(participants, messages, invitations, responses)
