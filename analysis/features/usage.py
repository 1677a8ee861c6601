"""Usage features per participant per local day, imported-history baselines, and windows.

Inputs are plain frames the Django side builds (see ``docs/usage_features.md``):

* messages: ``participant, conversation, role, created_at (tz-aware), text, [words],
  [latency_ms], imported``;
* participants: ``participant, timezone (IANA), enrolled_at (UTC), arm, language``;
* tz_changes (optional): ``participant, effective_from (UTC), timezone``.

Local time: ``participants.timezone`` is the zone in force before the participant's first
``tz_changes`` row; each change applies from its ``effective_from`` (inclusive) until the next.
A message's local wall-clock time comes from the zone in force at its UTC instant, so DST is
handled by the tz database and a participant who moves gets the new zone from that moment on.
Conversion is vectorised: the messages are grouped by zone and each group goes through one
``tz_convert`` call.

Everything runs on integer codes and int64 nanoseconds with numpy (``bincount`` for sums, a
sort only for sessions, hash factorisation for day groups), which keeps 10 million messages in
a few seconds. No Django imports.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = [
    "DAILY_USAGE_COLUMNS",
    "IMPORTED_COLUMNS",
    "SUMMARY_COLUMNS",
    "WINDOW_COLUMNS",
    "Prepared",
    "daily_from_prepared",
    "daily_usage",
    "imported_baseline",
    "local_times",
    "participant_summary",
    "prepare",
    "window_features",
    "windows_before",
]

NS_PER_MINUTE = 60 * 1_000_000_000
NS_PER_DAY = 24 * 60 * NS_PER_MINUTE
NIGHT_END_NS = 6 * 60 * NS_PER_MINUTE  # night is local 00:00 up to (not including) 06:00
_DAY_BITS = 21  # room for ~5,700 years of days in a (participant, day) key

DAILY_USAGE_COLUMNS: tuple[str, ...] = (
    "participant",
    "date",
    "study_day",
    "active",
    "messages_sent",
    "words_sent",
    "conversations",
    "sessions",
    "active_minutes",
    "session_mean_minutes",
    "session_median_minutes",
    "night_messages",
    "night_share",
    "assistant_messages",
    "reply_latency_n",
    "reply_latency_ms_sum",
    "median_reply_latency_ms",
)

IMPORTED_COLUMNS: tuple[str, ...] = (
    "participant",
    "imported_messages",
    "imported_words",
    "imported_conversations",
    "imported_days_active",
    "imported_first_date",
    "imported_last_date",
    "imported_messages_per_active_day",
)

SUMMARY_COLUMNS: tuple[str, ...] = (
    "participant",
    "days_active",
    "first_active_date",
    "last_active_date",
    "messages_sent",
    "words_sent",
    "sessions",
    "active_minutes",
    "messages_per_active_day",
    "night_share",
)

# Columns of the daily frame that add up over days; window_features sums whichever are present.
ADDITIVE_COLUMNS: tuple[str, ...] = (
    "messages_sent",
    "words_sent",
    "conversations",
    "sessions",
    "active_minutes",
    "night_messages",
    "assistant_messages",
    "reply_latency_n",
    "reply_latency_ms_sum",
    # text markers (analysis.features.daily)
    "text_messages",
    "tokens",
    "first_person",
    "affect_positive",
    "affect_negative",
    "relationship_phrases",
    "relationship_messages",
)

WINDOW_COLUMNS: tuple[str, ...] = (
    "window_days",
    "days_active",
    "share_days_active",
    "messages_sent",
    "words_sent",
    "conversation_days",
    "sessions",
    "active_minutes",
    "night_messages",
    "assistant_messages",
    "reply_latency_n",
    "reply_latency_ms_sum",
    "messages_per_day",
    "words_per_day",
    "sessions_per_day",
    "active_minutes_per_day",
    "messages_per_active_day",
    "mean_session_minutes",
    "night_share",
    "mean_reply_latency_ms",
)


# --------------------------------------------------------------------------------------------
# input handling and local time


def _utc_ns(values: pd.Series | pd.Index | Sequence, name: str) -> np.ndarray:
    """int64 UTC nanoseconds of a tz-aware datetime column (any unit)."""
    idx = pd.DatetimeIndex(values)
    if idx.tz is None:
        raise ValueError(f"{name} must be timezone-aware (UTC); got naive timestamps")
    if idx.hasnans:
        raise ValueError(f"{name} has missing timestamps")
    return idx.as_unit("ns").asi8


def _require(frame: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{what} frame is missing columns {missing}")


def _participant_index(
    codes: pd.Series | np.ndarray, participants: pd.DataFrame, what: str
) -> np.ndarray:
    """Row of ``participants`` for each code (hash factorisation; uniques looked up once)."""
    local_codes, uniques = pd.factorize(
        np.asarray(codes) if not isinstance(codes, pd.Series) else codes
    )
    pos = pd.Index(participants["participant"]).get_indexer(uniques)
    if (pos < 0).any():
        unknown = [str(u) for u in np.asarray(uniques)[pos < 0][:5]]
        raise ValueError(f"{what} refers to participants not in the participants frame: {unknown}")
    if (local_codes < 0).any():
        raise ValueError(f"{what} has rows without a participant code")
    return pos[local_codes].astype(np.int64)


def _wall_clock(utc_ns: np.ndarray, tz: str) -> np.ndarray:
    """Local wall-clock time (as naive int64 ns) of UTC instants in zone ``tz``."""
    try:
        idx = pd.DatetimeIndex(utc_ns.view("M8[ns]")).tz_localize("UTC").tz_convert(tz)
    except Exception as exc:  # zoneinfo raises several types for a bad name
        raise ValueError(f"unknown time zone {tz!r}") from exc
    return idx.tz_localize(None).as_unit("ns").asi8


def local_times(
    participant_index: np.ndarray,
    utc_ns: np.ndarray,
    participants: pd.DataFrame,
    tz_changes: pd.DataFrame | None = None,
) -> np.ndarray:
    """Local wall-clock int64 ns for each (participant row, UTC instant) pair.

    ``participant_index`` indexes rows of ``participants``. Vectorised: one ``tz_convert`` per
    distinct zone, never a Python loop over rows.
    """
    pidx = np.asarray(participant_index, dtype=np.int64)
    utc = np.asarray(utc_ns, dtype=np.int64)
    tz_names = pd.Series(participants["timezone"], dtype=object)
    if tz_names.isna().any():
        missing = participants["participant"][tz_names.isna().to_numpy()].tolist()[:5]
        raise ValueError(f"participants without a timezone: {missing}")
    zone_codes, zones = pd.factorize(tz_names.to_numpy())
    zones = list(zones)
    codes = zone_codes[pidx] if pidx.size else np.zeros(0, dtype=np.int64)

    if tz_changes is not None and len(tz_changes) and pidx.size:
        _require(tz_changes, ("participant", "effective_from", "timezone"), "tz_changes")
        ch_p = _participant_index(tz_changes["participant"], participants, "tz_changes")
        ch_t = _utc_ns(tz_changes["effective_from"], "tz_changes.effective_from")
        ch_zone = []
        for name in tz_changes["timezone"].astype(object):
            if name not in zones:
                zones.append(name)
            ch_zone.append(zones.index(name))
        affected = np.flatnonzero(np.isin(pidx, np.unique(ch_p)))
        if affected.size:
            left = pd.DataFrame({"t": utc[affected], "p": pidx[affected], "i": affected})
            right = pd.DataFrame({"t": ch_t, "p": ch_p, "zone": np.asarray(ch_zone)})
            # backward: the latest change with effective_from <= the instant
            joined = pd.merge_asof(
                left.sort_values("t", kind="stable"),
                right.sort_values("t", kind="stable"),
                on="t",
                by="p",
                direction="backward",
            )
            has = joined["zone"].notna().to_numpy()
            codes = codes.copy()
            codes[joined["i"].to_numpy()[has]] = joined["zone"].to_numpy()[has].astype(np.int64)

    out = np.empty(utc.size, dtype=np.int64)
    for k, zone in enumerate(zones):
        sel = np.flatnonzero(codes == k)
        if sel.size:
            out[sel] = _wall_clock(utc[sel], str(zone))
    return out


def _day(local_ns: np.ndarray) -> np.ndarray:
    return np.floor_divide(local_ns, NS_PER_DAY)


def _dates(days: np.ndarray) -> np.ndarray:
    return (np.asarray(days, dtype=np.int64) * NS_PER_DAY).view("M8[ns]")


@dataclass
class Prepared:
    """Messages as aligned numpy arrays (original row order) plus their day groups.

    ``gid`` is the (participant, local day) group of each non-imported message, -1 for
    imported ones; groups are numbered in (participant, day) order.
    """

    pidx: np.ndarray
    utc: np.ndarray
    local: np.ndarray
    day: np.ndarray
    user: np.ndarray
    assistant: np.ndarray
    imported: np.ndarray
    conv: np.ndarray
    latency: np.ndarray
    gid: np.ndarray
    group_pidx: np.ndarray
    group_day: np.ndarray
    participants: pd.DataFrame
    messages: pd.DataFrame
    tz_changes: pd.DataFrame | None

    @property
    def n_groups(self) -> int:
        return int(self.group_pidx.size)


def prepare(
    messages: pd.DataFrame,
    participants: pd.DataFrame,
    tz_changes: pd.DataFrame | None = None,
) -> Prepared:
    """Validate inputs and compute local times and (participant, local day) groups once."""
    _require(messages, ("participant", "conversation", "role", "created_at"), "messages")
    _require(participants, ("participant", "timezone"), "participants")
    if participants["participant"].duplicated().any():
        raise ValueError("participants frame has duplicate participant codes")
    n = len(messages)
    pidx = _participant_index(messages["participant"], participants, "messages")
    utc = _utc_ns(messages["created_at"], "messages.created_at") if n else np.zeros(0, np.int64)
    local = local_times(pidx, utc, participants, tz_changes)
    day = _day(local)
    role = messages["role"]
    user = (role == "user").to_numpy(dtype=bool, na_value=False)
    assistant = (role == "assistant").to_numpy(dtype=bool, na_value=False)
    if "imported" in messages.columns:
        imported = messages["imported"].fillna(False).to_numpy(dtype=bool)
    else:
        imported = np.zeros(n, dtype=bool)
    conv = messages["conversation"]
    if isinstance(conv.dtype, pd.CategoricalDtype):
        conv_codes = conv.cat.codes.to_numpy().astype(np.int64)
    else:
        conv_codes = pd.factorize(conv)[0].astype(np.int64)
    if "latency_ms" in messages.columns:
        latency = pd.to_numeric(messages["latency_ms"]).to_numpy(dtype=float, na_value=np.nan)
    else:
        latency = np.full(n, np.nan)

    live = np.flatnonzero(~imported)
    gid = np.full(n, -1, dtype=np.int64)
    if live.size:
        d0 = int(day[live].min())
        span = int(day[live].max()) - d0
        if span >= 1 << _DAY_BITS:
            raise ValueError("messages span more than 5,000 years; check created_at")
        key = (pidx[live] << _DAY_BITS) | (day[live] - d0)
        codes, uniques = pd.factorize(key, sort=True)
        gid[live] = codes
        group_pidx = uniques >> _DAY_BITS
        group_day = (uniques & ((1 << _DAY_BITS) - 1)) + d0
    else:
        group_pidx = np.zeros(0, dtype=np.int64)
        group_day = np.zeros(0, dtype=np.int64)
    return Prepared(
        pidx=pidx,
        utc=utc,
        local=local,
        day=day,
        user=user,
        assistant=assistant,
        imported=imported,
        conv=conv_codes,
        latency=latency,
        gid=gid,
        group_pidx=np.asarray(group_pidx, dtype=np.int64),
        group_day=np.asarray(group_day, dtype=np.int64),
        participants=participants,
        messages=messages,
        tz_changes=tz_changes,
    )


def _words(messages: pd.DataFrame, rows: np.ndarray) -> np.ndarray:
    """Words of the given rows: the ``words`` column where present, else counted from text."""
    words = np.full(rows.size, np.nan)
    if "words" in messages.columns:
        words = pd.to_numeric(messages["words"].take(rows)).to_numpy(dtype=float, na_value=np.nan)
    need = np.flatnonzero(np.isnan(words))
    if need.size and "text" in messages.columns:
        from analysis.features.text_markers import to_arrow_text, word_counts

        words[need] = word_counts(to_arrow_text(messages["text"]).take(rows[need]))
    return np.nan_to_num(words, nan=0.0)


# --------------------------------------------------------------------------------------------
# daily usage


def _group_median(values: np.ndarray, groups: np.ndarray, n_groups: int) -> np.ndarray:
    out = np.full(n_groups, np.nan)
    if values.size:
        med = pd.Series(values).groupby(groups, sort=False).median()
        out[med.index.to_numpy()] = med.to_numpy()
    return out


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    num = np.asarray(num, dtype=float)
    den = np.asarray(den, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)


def daily_from_prepared(
    prep: Prepared, *, session_gap_minutes: float = 30, min_session_minutes: float = 1.0
) -> pd.DataFrame:
    """The daily usage frame from already prepared messages (see :func:`daily_usage`)."""
    G = prep.n_groups
    gid = prep.gid
    live = gid >= 0
    user = prep.user & live
    u_rows = np.flatnonzero(user)
    g_user = gid[u_rows]

    messages_sent = np.bincount(g_user, minlength=G)
    words = _words(prep.messages, u_rows)
    words_sent = np.bincount(g_user, weights=words, minlength=G)
    if np.all(words == np.round(words)):
        words_sent = np.round(words_sent).astype(np.int64)

    # distinct conversations the participant wrote in that day: unique (group, conversation)
    n_conv = int(prep.conv.max()) + 1 if prep.conv.size else 1
    pair = pd.unique(g_user * n_conv + prep.conv[u_rows])
    conversations = np.bincount(np.asarray(pair) // n_conv, minlength=G)

    tod = prep.local[u_rows] - prep.day[u_rows] * NS_PER_DAY
    night_messages = np.bincount(g_user[tod < NIGHT_END_NS], minlength=G)

    asst = prep.assistant & live
    assistant_messages = np.bincount(gid[asst], minlength=G)
    lat_rows = np.flatnonzero(asst & np.isfinite(prep.latency))
    g_lat = gid[lat_rows]
    lat = prep.latency[lat_rows]
    reply_latency_n = np.bincount(g_lat, minlength=G)
    reply_latency_sum = np.bincount(g_lat, weights=lat, minlength=G)
    median_latency = _group_median(lat, g_lat, G)

    sessions, active_minutes, session_median = _sessions(
        prep, G, session_gap_minutes=session_gap_minutes, min_session_minutes=min_session_minutes
    )

    study_day = _study_day(prep)
    return pd.DataFrame(
        {
            "participant": prep.participants["participant"].to_numpy()[prep.group_pidx],
            "date": _dates(prep.group_day),
            "study_day": study_day,
            "active": messages_sent > 0,
            "messages_sent": messages_sent,
            "words_sent": words_sent,
            "conversations": conversations,
            "sessions": sessions,
            "active_minutes": active_minutes,
            "session_mean_minutes": _ratio(active_minutes, sessions),
            "session_median_minutes": session_median,
            "night_messages": night_messages,
            "night_share": _ratio(night_messages, messages_sent),
            "assistant_messages": assistant_messages,
            "reply_latency_n": reply_latency_n,
            "reply_latency_ms_sum": reply_latency_sum,
            "median_reply_latency_ms": median_latency,
        },
        columns=list(DAILY_USAGE_COLUMNS),
    )


def _sessions(
    prep: Prepared, G: int, *, session_gap_minutes: float, min_session_minutes: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sessions per day (by start day), their summed and median durations in minutes."""
    if session_gap_minutes <= 0:
        raise ValueError("session_gap_minutes must be positive")
    if min_session_minutes < 0:
        raise ValueError("min_session_minutes must not be negative")
    rows = np.flatnonzero(prep.gid >= 0)
    p, t = prep.pidx[rows], prep.utc[rows]
    if rows.size > 1:
        dp, dt = np.diff(p), np.diff(t)
        # Django usually hands rows ordered by (participant, created_at): skip the sort then.
        if not (np.all(dp >= 0) and np.all((dp > 0) | (dt >= 0))):
            order = _participant_time_order(p, t)
            rows, p, t = rows[order], p[order], t[order]
    if rows.size == 0:
        zero = np.zeros(G, dtype=np.int64)
        return zero, np.zeros(G), np.full(G, np.nan)
    gap_ns = session_gap_minutes * NS_PER_MINUTE
    new = np.empty(rows.size, dtype=bool)
    new[0] = True
    new[1:] = (p[1:] != p[:-1]) | ((t[1:] - t[:-1]) > gap_ns)
    first = np.flatnonzero(new)
    last = np.append(first[1:], rows.size) - 1
    # Elapsed real time (UTC), so a DST change inside a session does not stretch or shrink it.
    # Every session lasts at least min_session_minutes: a lone message is "1 minute of use",
    # and adding a quick second message never makes a session shorter than that.
    minutes = np.maximum((t[last] - t[first]) / NS_PER_MINUTE, min_session_minutes)
    g_start = prep.gid[rows[first]]  # a session belongs to the local day it starts on
    sessions = np.bincount(g_start, minlength=G)
    active = np.bincount(g_start, weights=minutes, minlength=G)
    return sessions, active, _group_median(minutes, g_start, G)


def _participant_time_order(p: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Order by (participant, time).

    Logs are usually almost in order (an assistant row stamped after the next user row), and
    a stable sort of one int64 key is then near-linear (timsort finds the runs), several
    times faster than ``lexsort``. The key puts each participant in its own block of
    microseconds (database timestamps have microsecond resolution; rows within one
    microsecond keep their input order). Falls back to ``lexsort`` if the key would overflow.
    """
    us = t // 1000
    t_min = int(us.min())
    block = int(us.max()) - t_min + 1
    if block * (int(p.max()) + 1) < (1 << 62):
        return np.argsort(p * block + (us - t_min), kind="stable")
    return np.lexsort((t, p))


def _study_day(prep: Prepared) -> np.ndarray:
    """Local date minus the local enrolment date (0 = enrolment day); NaN if not enrolled."""
    G = prep.n_groups
    if "enrolled_at" not in prep.participants.columns or G == 0:
        return np.full(G, np.nan)
    enrolled = pd.DatetimeIndex(prep.participants["enrolled_at"])
    if enrolled.tz is None and not enrolled.isna().all():
        raise ValueError("participants.enrolled_at must be timezone-aware (UTC)")
    ok = ~enrolled.isna()
    enrol_day = np.full(len(enrolled), np.nan)
    if ok.any():
        rows = np.flatnonzero(ok)
        ns = enrolled[ok].as_unit("ns").asi8
        enrol_day[rows] = _day(local_times(rows, ns, prep.participants, prep.tz_changes))
    return prep.group_day - enrol_day[prep.group_pidx]


def daily_usage(
    messages: pd.DataFrame,
    participants: pd.DataFrame,
    *,
    tz_changes: pd.DataFrame | None = None,
    session_gap_minutes: float = 30,
    min_session_minutes: float = 1.0,
) -> pd.DataFrame:
    """Usage per participant per local day, from non-imported messages.

    One row per (participant, local date) with at least one non-imported message of either
    role, ordered by participant then date; columns ``DAILY_USAGE_COLUMNS``. Definitions are in
    ``docs/usage_features.md``.
    """
    prep = prepare(messages, participants, tz_changes)
    return daily_from_prepared(
        prep, session_gap_minutes=session_gap_minutes, min_session_minutes=min_session_minutes
    )


# --------------------------------------------------------------------------------------------
# imported history


def imported_baseline(
    messages: pd.DataFrame,
    participants: pd.DataFrame,
    *,
    tz_changes: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Baseline usage from history imported before enrolment, one row per participant.

    Counts the participant's own (role user) imported messages; dates are local dates in the
    participant's zone at the time. Participants without imported history get zeros and NaT.
    Columns ``IMPORTED_COLUMNS``.
    """
    prep = prepare(messages, participants, tz_changes)
    P = len(participants)
    rows = np.flatnonzero(prep.imported & prep.user)
    p = prep.pidx[rows]
    n_msgs = np.bincount(p, minlength=P)
    words = _words(messages, rows)
    n_words = np.bincount(p, weights=words, minlength=P)
    if np.all(words == np.round(words)):
        n_words = np.round(n_words).astype(np.int64)
    n_conv = int(prep.conv.max()) + 1 if prep.conv.size else 1
    conv_pairs = np.asarray(pd.unique(p * n_conv + prep.conv[rows]))
    n_conversations = np.bincount(conv_pairs // n_conv, minlength=P)
    day = prep.day[rows]
    d0 = int(day.min()) if day.size else 0
    day_pairs = np.asarray(pd.unique((p << _DAY_BITS) | (day - d0)))
    n_days = np.bincount(day_pairs >> _DAY_BITS, minlength=P)
    first = np.full(P, np.iinfo(np.int64).max)
    last = np.full(P, np.iinfo(np.int64).min)
    np.minimum.at(first, p, day)
    np.maximum.at(last, p, day)
    has = n_msgs > 0
    first_date = pd.Series(_dates(np.where(has, first, 0))).where(has)
    last_date = pd.Series(_dates(np.where(has, last, 0))).where(has)
    return pd.DataFrame(
        {
            "participant": participants["participant"].to_numpy(),
            "imported_messages": n_msgs,
            "imported_words": n_words,
            "imported_conversations": n_conversations,
            "imported_days_active": n_days,
            "imported_first_date": first_date.to_numpy(),
            "imported_last_date": last_date.to_numpy(),
            "imported_messages_per_active_day": _ratio(n_msgs, n_days),
        },
        columns=list(IMPORTED_COLUMNS),
    )


# --------------------------------------------------------------------------------------------
# participant summary and windows


def participant_summary(daily: pd.DataFrame) -> pd.DataFrame:
    """Whole-study totals per participant from a daily frame (``SUMMARY_COLUMNS``)."""
    if daily.empty:
        return pd.DataFrame({c: pd.Series(dtype=_summary_dtype(c)) for c in SUMMARY_COLUMNS})
    active = daily[daily["active"]]
    g = daily.groupby("participant", sort=True)
    out = pd.DataFrame(
        {
            "days_active": g["active"].sum().astype(np.int64),
            "first_active_date": active.groupby("participant")["date"].min(),
            "last_active_date": active.groupby("participant")["date"].max(),
            "messages_sent": g["messages_sent"].sum(),
            "words_sent": g["words_sent"].sum(),
            "sessions": g["sessions"].sum(),
            "active_minutes": g["active_minutes"].sum(),
            "night_messages": g["night_messages"].sum(),
        }
    )
    out["messages_per_active_day"] = _ratio(out["messages_sent"], out["days_active"])
    out["night_share"] = _ratio(out["night_messages"], out["messages_sent"])
    out = out.rename_axis("participant").reset_index()
    return out[list(SUMMARY_COLUMNS)]


def _summary_dtype(column: str) -> str:
    if column == "participant":
        return "object"
    if column.endswith("_date"):
        return "datetime64[ns]"
    return "float64"


def _as_days(values: pd.Series, name: str) -> np.ndarray:
    """Local calendar dates (naive, midnight) as int days since the epoch."""
    idx = pd.DatetimeIndex(pd.to_datetime(values))
    if idx.tz is not None:
        raise ValueError(f"{name} must be local calendar dates (naive), not tz-aware instants")
    if idx.hasnans:
        raise ValueError(f"{name} has missing dates")
    ns = idx.as_unit("ns").asi8
    if np.any(ns % NS_PER_DAY):
        raise ValueError(f"{name} must be dates (midnight), not times of day")
    return ns // NS_PER_DAY


def window_features(daily: pd.DataFrame, windows: pd.DataFrame) -> pd.DataFrame:
    """Aggregate daily rows over ``[start, end)`` local-date windows, one row per window.

    ``windows`` has ``participant, start, end`` (local calendar dates; start inclusive, end
    exclusive) and any other columns (kept). Vectorised: cumulative sums of the daily columns
    in (participant, date) order and two ``searchsorted`` lookups per window, so millions of
    windows cost one sort. Sums of every additive daily column present, per-day means over the
    window's calendar days, share of days active, and ratios recomputed from sums (night share,
    mean session length, mean reply latency, text-marker rates). Columns: the window columns,
    then ``WINDOW_COLUMNS`` and the text-marker window columns when the daily frame has them.
    """
    _require(windows, ("participant", "start", "end"), "windows")
    _require(daily, ("participant", "date", "active"), "daily")
    out = windows.reset_index(drop=True).copy()
    w_start = _as_days(out["start"], "windows.start") if len(out) else np.zeros(0, np.int64)
    w_end = _as_days(out["end"], "windows.end") if len(out) else np.zeros(0, np.int64)
    if np.any(w_end < w_start):
        raise ValueError("a window ends before it starts")

    codes, _ = pd.factorize(
        pd.concat([daily["participant"], out["participant"]], ignore_index=True).astype(object)
    )
    d_code, w_code = codes[: len(daily)], codes[len(daily) :]
    d_day = _as_days(daily["date"], "daily.date") if len(daily) else np.zeros(0, np.int64)
    all_days = np.concatenate([d_day, w_start, w_end])
    base = int(all_days.min()) if all_days.size else 0
    span = 1 << _DAY_BITS

    def key(code: np.ndarray, day: np.ndarray) -> np.ndarray:
        return code.astype(np.int64) * span + (day - base)

    d_key = key(d_code, d_day)
    order = np.argsort(d_key, kind="stable")
    sorted_key = d_key[order]
    lo = np.searchsorted(sorted_key, key(w_code, w_start), side="left")
    hi = np.searchsorted(sorted_key, key(w_code, w_end), side="left")

    def window_sum(column: str | np.ndarray) -> np.ndarray:
        values = daily[column].to_numpy() if isinstance(column, str) else column
        values = np.nan_to_num(
            values[order].astype(float if values.dtype.kind == "f" else np.int64)
        )
        csum = np.concatenate(([0], np.cumsum(values)))
        return csum[hi] - csum[lo]

    days = (w_end - w_start).astype(np.int64)
    out["window_days"] = days
    out["days_active"] = window_sum(daily["active"].to_numpy().astype(np.int64))
    out["share_days_active"] = _ratio(out["days_active"], days)
    sums = {c: window_sum(c) for c in ADDITIVE_COLUMNS if c in daily.columns}
    for c, v in sums.items():
        out["conversation_days" if c == "conversations" else c] = v
    if "messages_sent" in sums:
        out["messages_per_day"] = _ratio(sums["messages_sent"], days)
        out["messages_per_active_day"] = _ratio(sums["messages_sent"], out["days_active"])
    for c in ("words_sent", "sessions", "active_minutes"):
        if c in sums:
            out[f"{c.replace('_sent', '')}_per_day"] = _ratio(sums[c], days)
    if "sessions" in sums:
        out["mean_session_minutes"] = _ratio(sums["active_minutes"], sums["sessions"])
    if "night_messages" in sums:
        out["night_share"] = _ratio(sums["night_messages"], sums["messages_sent"])
    if "reply_latency_n" in sums:
        out["mean_reply_latency_ms"] = _ratio(sums["reply_latency_ms_sum"], sums["reply_latency_n"])
    if "tokens" in sums:
        out["first_person_rate"] = _ratio(sums["first_person"], sums["tokens"])
        out["positive_affect_rate"] = _ratio(sums["affect_positive"], sums["tokens"])
        out["negative_affect_rate"] = _ratio(sums["affect_negative"], sums["tokens"])
        out["relationship_message_share"] = _ratio(
            sums["relationship_messages"], sums["text_messages"]
        )
    # Conversation-classifier rates (analysis/features/classifiers.py): share of the window's
    # labelled units with the feature, from the summed daily counts; NaN without labels.
    for c in daily.columns:
        if c.startswith("cls_") and c.endswith("_n"):
            feature = c[: -len("_n")]
            out[f"{feature}_rate"] = _ratio(window_sum(f"{feature}_hits"), window_sum(c))
    return out


def windows_before(
    events: pd.DataFrame,
    participants: pd.DataFrame,
    *,
    days: int = 7,
    at: str = "at",
    tz_changes: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Windows of the ``days`` whole local days before each event (e.g. a completed survey).

    ``events`` has ``participant`` and a tz-aware UTC column ``at``. The event's own local date
    is excluded (it is only partly observed): ``end`` = local date of the event, ``start`` =
    ``end - days``. Returns ``events`` with ``start`` and ``end`` added, ready for
    :func:`window_features`.
    """
    out = events.reset_index(drop=True).copy()
    if len(out) == 0:
        out["start"] = pd.Series(dtype="datetime64[ns]")
        out["end"] = pd.Series(dtype="datetime64[ns]")
        return out
    pidx = _participant_index(out["participant"], participants, "events")
    local = local_times(pidx, _utc_ns(out[at], f"events.{at}"), participants, tz_changes)
    end = _day(local)
    out["start"] = _dates(end - days)
    out["end"] = _dates(end)
    return out
