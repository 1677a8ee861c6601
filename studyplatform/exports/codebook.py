"""What every exported column means, the export README and the manifest of file hashes.

Pure Python (no Django). The column lists here are the single source of truth: the builder
writes exactly these columns in this order, the writers take their types from them, and the
codebook shipped in the zip is generated from them, so a column cannot be exported without
being documented.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from analysis.features import DAILY_COLUMNS, TEXT_COLUMNS
from analysis.features.usage import WINDOW_COLUMNS

from .disclosure import SUPPRESSED, age_bands

COLUMN_TYPES = ("string", "integer", "number", "boolean")

# The option value "tables" selects a group of files: responses come as one row per response
# plus one row per answered item.
TABLE_FILES: dict[str, tuple[str, ...]] = {
    "participants": ("participants",),
    "consent": ("consent",),
    "allocation": ("allocation",),
    "responses": ("responses", "answers"),
    "messages": ("messages",),
    "imported": ("imported",),
    "usage_daily": ("usage_daily",),
    "usage_waves": ("usage_waves",),
    "tasks": ("tasks",),
    "compliance": ("compliance",),
    "classifier_labels": ("classifier_labels",),
}
TABLES = tuple(TABLE_FILES)
# Exported when no tables are named. The usage-feature tables are on request: they are derived
# (recomputable from messages and responses) and cost a pass over every message.
DEFAULT_TABLES = ("participants", "consent", "allocation", "responses", "messages", "imported")

CONSENT_BASIS: dict[str, str] = {
    "participants": "Consent to take part (required checkbox 'agree'). Participants who withdrew "
    "and asked for deletion are absent; those who withdrew and let us keep their data appear "
    "with status 'withdrawn'. Pilot testers are absent unless the export included them.",
    "consent": "Consent to take part; records the choices each participant made.",
    "allocation": "Consent to take part (randomization is part of the protocol).",
    "responses": "Consent to take part (questionnaires are part of the protocol). Free-text "
    "answers are passed through the text anonymizer.",
    "answers": "As responses.",
    "items": "As responses (the same answers, one row per response and one column per item).",
    "messages": "Only participants whose latest consent has share_chats = true contribute "
    "message text; the text is passed through the text anonymizer.",
    "imported": "As messages: imported ChatGPT history of participants whose latest consent has "
    "share_chats = true; text passed through the text anonymizer.",
    "usage_daily": "Consent to take part (use of the study chat is part of the protocol). Derived "
    "from the study chats of every exported participant, including those whose consent has "
    "share_chats = false: the rows hold counts, durations and rates computed from the "
    "messages, never any text. Imported history is not counted.",
    "usage_waves": "As usage_daily, linked to the scores of submitted surveys (questionnaires are "
    "part of the protocol).",
    "tasks": "Consent to take part (the daily conversation tasks are part of the protocol). Every "
    "exported participant, including those whose consent has share_chats = false: the rows say "
    "which task was shown and whether the participant chatted afterwards, never any text.",
    "compliance": "As usage_daily: the protocol's usage requirement, checked per local day from "
    "the study chats of every exported participant (counts and durations, never text).",
    "classifier_labels": "Only participants whose consent allowed their chats to be labelled by a "
    "judge model (the protocol's classifiers.consent_checkbox) were ever labelled. The rows hold "
    "the judge's answer codes, never any text, so participants whose consent has share_chats = "
    "false contribute rows too. Labels of deleted messages are absent.",
}


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # one of COLUMN_TYPES
    meaning: str
    unit: str = ""
    allowed: tuple[Any, ...] = ()
    # The export's quasi-identifiers whose information this column carries (states, or lets
    # one infer): where k-anonymity suppresses one of them for a participant, this column is
    # suppressed in every row of that participant (disclosure.DisclosurePlan).
    carries: tuple[str, ...] = ()
    # Text typed by a participant or produced by the model (anonymized, never a category).
    free_text: bool = False
    # What each allowed value means, per language: ((value, {"en": ..., "pt-br": ...}), ...).
    # Written as the instruments' options are ({"value", "label"}), so the SPSS/Stata/R writer
    # (statfiles.py) turns arms, factor levels and answer options into value labels the same way.
    value_labels: tuple[tuple[Any, Mapping[str, str]], ...] = ()

    def english_labels(self) -> dict[str, str]:
        """value (as text) -> its English label (or the first language given)."""
        return {
            str(value): label.get("en") or next(iter(label.values()), str(value))
            for value, label in self.value_labels
        }

    def as_dict(self) -> dict[str, Any]:
        out = {
            "name": self.name,
            "type": self.type,
            "unit": self.unit,
            "allowed": list(self.allowed),
            "meaning": self.meaning,
        }
        if self.carries:
            out["suppressed_with"] = list(self.carries)
        if self.value_labels:
            out["value_labels"] = [
                {"value": value, "label": dict(label)} for value, label in self.value_labels
            ]
        return out


@dataclass(frozen=True)
class FactorShape:
    """One factor of a factorial design: its key (the column name), label and levels."""

    key: str
    label: Mapping[str, str]
    levels: tuple[tuple[str, Mapping[str, str]], ...]


@dataclass(frozen=True)
class StudyShape:
    """What the columns depend on: date mode, the study's arms, consent keys and screener."""

    dates: str  # "relative" or "shifted"
    include_time_of_day: bool
    arms: tuple[str, ...] = ()
    consent_keys: tuple[str, ...] = ()
    genders: tuple[str, ...] = ()
    # Screener questions exported as categorical columns (yes/no and single choice only).
    screener: tuple[tuple[str, tuple[Any, ...], str], ...] = ()
    quasi_identifiers: tuple[str, ...] = field(default=())
    # usage_waves columns that depend on the data and the analysis plan: the outcome scores
    # ("<instrument>.<score>") and the predictors split into within/between parts.
    usage_scores: tuple[str, ...] = ()
    usage_predictors: tuple[str, ...] = ()
    # Each arm's label per language (value labels of the arm column).
    arm_labels: tuple[tuple[str, Mapping[str, str]], ...] = ()
    # Factorial designs: one column per factor wherever the arm is exported.
    factors: tuple[FactorShape, ...] = ()


def time_columns(event: str, what: str, shape: StudyShape) -> list[Column]:
    """The columns that stand for one timestamp: never the timestamp itself."""
    if shape.dates == "relative":
        columns = [
            Column(
                f"{event}_day",
                "integer",
                f"{what}: days since the participant's enrollment (0 = the enrollment day, "
                "counted in the participant's local calendar).",
                unit="days",
            )
        ]
    else:
        columns = [
            Column(
                f"{event}_date",
                "string",
                f"{what}: the local calendar date moved back by a secret per-participant offset "
                "of 1-364 days. Intervals within one participant are exact; dates of different "
                "participants are not comparable.",
                unit="YYYY-MM-DD (shifted)",
            )
        ]
    if shape.include_time_of_day:
        columns.append(
            Column(f"{event}_time", "string", f"{what}: local time of day.", unit="HH:MM")
        )
    return columns


def day_columns(prefix: str, what: str, shape: StudyShape) -> list[Column]:
    """The column that stands for a local calendar day (no time of day)."""
    name = f"{prefix}_" if prefix else ""
    if shape.dates == "relative":
        return [
            Column(
                f"{name}day",
                "integer",
                f"{what}: days since the participant's enrollment (0 = the enrollment day, "
                "local calendar).",
                unit="days",
            )
        ]
    return [
        Column(
            f"{name}date",
            "string",
            f"{what}: the local calendar date moved back by the participant's secret offset "
            "(as every shifted date of that participant).",
            unit="YYYY-MM-DD (shifted)",
        )
    ]


# Usage features (analysis.features; docs/usage_features.md): name -> (type, unit, meaning).
# Per-day columns first, then what only a window has; text markers are counts and rates of
# word lists, never text.
USAGE_FEATURES: dict[str, tuple[str, str, str]] = {
    "active": ("boolean", "", "The participant sent at least one message that day."),
    "messages_sent": ("integer", "messages", "The participant's own (role user) messages."),
    "words_sent": ("integer", "words", "Whitespace-separated words in those messages."),
    "conversations": ("integer", "conversations", "Distinct conversations written in that day."),
    "sessions": (
        "integer",
        "sessions",
        "Sessions starting that day (a gap of more than the session gap, default 30 minutes, "
        "starts a new one).",
    ),
    "active_minutes": ("number", "minutes", "Summed duration of those sessions (at least 1 each)."),
    "session_mean_minutes": ("number", "minutes", "active_minutes / sessions; empty if none."),
    "session_median_minutes": ("number", "minutes", "Median session duration; empty if none."),
    "night_messages": ("integer", "messages", "Own messages sent 00:00-05:59 local time."),
    "night_share": ("number", "0-1", "night_messages / messages_sent; empty if none sent."),
    "assistant_messages": ("integer", "messages", "Assistant messages."),
    "reply_latency_n": ("integer", "messages", "Assistant messages with a measured latency."),
    "reply_latency_ms_sum": ("number", "milliseconds", "Sum of those latencies."),
    "median_reply_latency_ms": ("number", "milliseconds", "Median assistant reply latency."),
    "text_messages": ("integer", "messages", "Own messages with text (text markers' base)."),
    "tokens": ("integer", "tokens", "Word tokens in own messages (see docs: Tokens)."),
    "first_person": ("integer", "tokens", "First-person singular tokens (I, me, my; eu, me...)."),
    "affect_positive": ("integer", "tokens", "Tokens in the positive-affect word list."),
    "affect_negative": ("integer", "tokens", "Tokens in the negative-affect word list."),
    "relationship_phrases": ("integer", "phrases", "Relationship phrases ('you are my friend')."),
    "relationship_messages": ("integer", "messages", "Own messages with a relationship phrase."),
    "first_person_rate": ("number", "per token", "first_person / tokens; empty if no tokens."),
    "positive_affect_rate": ("number", "per token", "affect_positive / tokens."),
    "negative_affect_rate": ("number", "per token", "affect_negative / tokens."),
    "relationship_message_share": (
        "number",
        "0-1",
        "relationship_messages / text_messages; empty if no text.",
    ),
    # window-only columns
    "window_days": ("integer", "days", "Calendar days in the window."),
    "days_active": ("integer", "days", "Days in the window with at least one own message."),
    "share_days_active": ("number", "0-1", "days_active / window_days."),
    "conversation_days": (
        "integer",
        "conversation-days",
        "Sum of daily distinct conversations (a conversation over two days counts twice).",
    ),
    "messages_per_day": ("number", "messages/day", "messages_sent / window_days."),
    "words_per_day": ("number", "words/day", "words_sent / window_days."),
    "sessions_per_day": ("number", "sessions/day", "sessions / window_days."),
    "active_minutes_per_day": ("number", "minutes/day", "active_minutes / window_days."),
    "messages_per_active_day": ("number", "messages/day", "messages_sent / days_active."),
    "mean_session_minutes": ("number", "minutes", "active_minutes / sessions."),
    "mean_reply_latency_ms": ("number", "milliseconds", "reply_latency_ms_sum / reply_latency_n."),
}
# The feature columns themselves come from analysis.features, so the codebook lists exactly
# what the export writes (the export builds its usage tables with the same functions).
USAGE_DAILY_FEATURES: tuple[str, ...] = tuple(
    c for c in DAILY_COLUMNS if c not in ("participant", "date", "study_day")
)
USAGE_WINDOW_FEATURES: tuple[str, ...] = (*WINDOW_COLUMNS, *TEXT_COLUMNS)


def _usage_column(name: str, scope: str) -> Column:
    kind, unit, meaning = USAGE_FEATURES[name]
    return Column(name, kind, f"{meaning} Over {scope}.", unit=unit)


def _qi_note(name: str, shape: StudyShape) -> str:
    if name in shape.quasi_identifiers:
        return f" Quasi-identifier: '{SUPPRESSED}' where suppressed for k-anonymity."
    return ""


def _maybe_star(name: str, values: Sequence[Any], shape: StudyShape) -> tuple[Any, ...]:
    return (*values, SUPPRESSED) if name in shape.quasi_identifiers else tuple(values)


# Columns outside the quasi-identifier's own column that carry it, by table. The arm decides the
# model (names, the provider's finish reasons and error codes, reply latency and length) and the
# system prompt (counted in every prompt's tokens); the block number lets the arm be inferred
# from the other members of a randomization block; a participation status shows in the
# completion and withdrawal dates; the participation language is the consent document's language.
ARM_MESSAGE_COLUMNS = (
    "arm",
    "model_requested",
    "model_reported",
    "finish_reason",
    "error_code",
    "prompt_tokens",
    "completion_tokens",
    "latency_ms",
    # A voice arm's speech models (and whether its participants speak) show in these.
    "modality",
    "audio_ms",
    "stt_ms",
    "tts_ms",
)
ARM_USAGE_FEATURES = ("reply_latency_ms_sum", "median_reply_latency_ms", "mean_reply_latency_ms")
CARRIES: dict[str, dict[str, tuple[str, ...]]] = {
    "participants": {"status": ("completed_", "withdrawn_")},
    "consent": {"language": ("language",)},
    "allocation": {"arm": ("arm", "block_number")},
    "messages": {"arm": ARM_MESSAGE_COLUMNS},
    "imported": {"arm": ARM_MESSAGE_COLUMNS},
    "usage_daily": {"arm": ARM_USAGE_FEATURES},
    "usage_waves": {"arm": ("arm", *ARM_USAGE_FEATURES)},
    # Each arm names its own task list, so the list (and its tasks) tells the arm.
    "tasks": {"arm": ("task_list", "task", "conversation_offered")},
}


def _carries(table: str, shape: StudyShape) -> dict[str, tuple[str, ...]]:
    carries = dict(CARRIES.get(table, {}))
    if table in FACTOR_TABLES and shape.factors:
        # A factor's level is part of what the arm is.
        carries["arm"] = (*carries.get("arm", ()), *(f.key for f in shape.factors))
    return carries


def _carried(table: str, column: Column, shape: StudyShape) -> Column:
    """`column` with the quasi-identifiers of this export it carries, and a note saying so."""
    qis = []
    if column.name in shape.quasi_identifiers and table == "participants":
        qis.append(column.name)
    for qi, names in _carries(table, shape).items():
        if qi not in shape.quasi_identifiers or qi in qis:
            continue
        base = column.name
        for suffix in ("_within", "_between", "_lag"):
            base = base.removesuffix(suffix)
        if (
            column.name in names
            or base in names
            or column.name.startswith(tuple(n for n in names if n.endswith("_")))
        ):
            qis.append(qi)
    if not qis:
        return column
    note = ""
    if column.name not in shape.quasi_identifiers or table != "participants":
        blank = f"'{SUPPRESSED}'" if column.type == "string" else "empty"
        note = (
            f" {blank} for participants whose {', '.join(qis)} is suppressed for k-anonymity "
            "(suppressed in every file, not only in participants)."
        )
    allowed = column.allowed
    if allowed and column.type == "string" and SUPPRESSED not in allowed:
        allowed = (*allowed, SUPPRESSED)
    return dataclasses.replace(
        column, carries=tuple(qis), meaning=column.meaning + note, allowed=allowed
    )


# The tables that carry one column per factor next to the arm.
FACTOR_TABLES = ("participants", "allocation")


def arm_column(meaning: str, shape: StudyShape) -> Column:
    return Column(
        "arm",
        "string",
        meaning,
        allowed=_maybe_star("arm", shape.arms, shape),
        value_labels=tuple((key, label) for key, label in shape.arm_labels if key in shape.arms),
    )


def factor_columns(shape: StudyShape) -> list[Column]:
    """One column per factor of a factorial design: the level key of the participant's arm."""
    columns = []
    for factor in shape.factors:
        label = factor.label.get("en") or next(iter(factor.label.values()), factor.key)
        columns.append(
            Column(
                factor.key,
                "string",
                f"Factor '{factor.key}' ({label}) of the factorial design: the level of the "
                "randomized arm (level keys; labels in value_labels).",
                allowed=tuple(key for key, _ in factor.levels),
                value_labels=factor.levels,
            )
        )
    return columns


def table_columns(name: str, shape: StudyShape) -> list[Column]:
    """The columns of one exported file, in order, each with the quasi-identifiers it carries."""
    return [_carried(name, column, shape) for column in _table_columns(name, shape)]


def _table_columns(name: str, shape: StudyShape) -> list[Column]:
    pid = Column("participant_id", "string", "Participant pseudonym (keyed HMAC; 'p_' + 16 hex).")
    version = Column(
        "protocol_version", "integer", "Protocol version number in force (see protocol_versions)."
    )
    if name == "participants":
        columns = [
            pid,
            Column(
                "status",
                "string",
                "Participation status at export time." + _qi_note("status", shape),
                allowed=_maybe_star("status", ("active", "completed", "withdrawn"), shape),
            ),
            Column(
                "is_pilot", "boolean", "True for pilot testers (only if the export included them)."
            ),
            Column(
                "language",
                "string",
                "Language the participant took part in." + _qi_note("language", shape),
            ),
            Column(
                "age_band",
                "string",
                "Screener age in 10-year bands, 90 and over grouped." + _qi_note("age_band", shape),
                unit="years",
                allowed=_maybe_star("age_band", age_bands(), shape),
            ),
            Column(
                "gender",
                "string",
                "Screener gender answer." + _qi_note("gender", shape),
                allowed=_maybe_star("gender", shape.genders, shape),
            ),
            arm_column("Randomized arm (condition)." + _qi_note("arm", shape), shape),
            *factor_columns(shape),
        ]
        for key, values, text in shape.screener:
            column = f"screener_{key}"
            columns.append(
                Column(
                    column,
                    "string",
                    f"Screener answer to: {text}" + _qi_note(column, shape),
                    allowed=_maybe_star(column, values, shape),
                )
            )
        columns += time_columns("enrolled", "Enrollment", shape)
        columns += time_columns("completed", "Completion (empty if not completed)", shape)
        columns += time_columns("withdrawn", "Withdrawal (empty if not withdrawn)", shape)
        columns += [
            Column("consent_version", "integer", "Version of the latest consent signed."),
            Column(
                "shares_chats",
                "boolean",
                "Latest consent allows de-identified chats in a dataset (share_chats).",
            ),
        ]
        return columns
    if name == "consent":
        columns = [
            pid,
            Column("consent_version", "integer", "Consent document version signed."),
            Column("language", "string", "Language of the consent document."),
            Column("text_hash", "string", "SHA-256 of the consent text signed.", unit="hex"),
            version,
            *time_columns("signed", "Signature", shape),
            Column("is_latest", "boolean", "True for the participant's most recent consent."),
        ]
        columns += [
            Column(f"choice_{key}", "boolean", f"Consent checkbox '{key}' ticked.")
            for key in shape.consent_keys
        ]
        return columns
    if name == "allocation":
        return [
            pid,
            arm_column(
                "Randomized arm; suppressed here wherever it is suppressed in participants.",
                shape,
            ),
            *factor_columns(shape),
            Column("method", "string", "Allocation method (from the protocol)."),
            Column("block_number", "integer", "Randomization block number (block methods only)."),
            *time_columns("allocated", "Allocation", shape),
            version,
        ]
    if name == "responses":
        return [
            Column("response_id", "string", "Response pseudonym ('r_' + 16 hex)."),
            pid,
            Column("instrument", "string", "Instrument key (see instruments)."),
            Column("instrument_version", "string", "Instrument version."),
            Column("schedule_entry", "string", "Protocol schedule entry that invited the survey."),
            Column("wave", "integer", "Wave number of a recurring entry (empty otherwise)."),
            Column("valid", "boolean", "All attention checks passed and required items answered."),
            Column("scores", "string", "JSON object: score name -> value (see instruments)."),
            Column("bands", "string", "JSON object: score name -> severity band label."),
            Column("flags", "string", "JSON list of protocol flags raised by the answers."),
            version,
            *time_columns("started", "Survey started", shape),
            *time_columns("submitted", "Survey submitted", shape),
        ]
    if name == "answers":
        return [
            Column("response_id", "string", "Response pseudonym (joins responses)."),
            pid,
            Column("instrument", "string", "Instrument key."),
            Column("item_id", "string", "Item id (see instruments for text and options)."),
            Column("item_type", "string", "Item type (likert, single_choice, free_text, ...)."),
            Column("value_number", "number", "Numeric answer (numeric items)."),
            Column(
                "value_text",
                "string",
                "Non-numeric answer: a choice value, a JSON list for multiple choice, or "
                "free text with identifiers replaced by typed surrogates such as [PERSON_1].",
                free_text=True,
            ),
        ]
    if name in ("messages", "imported"):
        return [
            Column("message_id", "string", "Message pseudonym ('m_' + 16 hex)."),
            Column("conversation_id", "string", "Conversation pseudonym ('c_' + 16 hex)."),
            Column("parent_message_id", "string", "Pseudonym of the message this one answers."),
            pid,
            Column(
                "role", "string", "Author role.", allowed=("user", "assistant", "system", "tool")
            ),
            Column(
                "status",
                "string",
                "Delivery status of the message.",
                allowed=(
                    "pending",
                    "streaming",
                    "complete",
                    "length",
                    "cancelled",
                    "error",
                    "filtered",
                ),
            ),
            Column(
                "source",
                "string",
                "Where the message came from: 'study' or the import source (e.g. 'chatgpt').",
            ),
            Column("content_type", "string", "Content type of the message (text for chat)."),
            Column("arm", "string", "Arm in force when the message was sent (study chats)."),
            Column("protocol_version", "integer", "Protocol version number in force."),
            Column("model_requested", "string", "Model name the platform asked for."),
            Column("model_reported", "string", "Model name the provider reported."),
            Column("finish_reason", "string", "Provider finish reason."),
            Column(
                "error_code",
                "string",
                "Why a reply did not complete (empty when it did): stopped (the participant "
                "clicked Stop) or disconnected (closed the page) with status cancelled; "
                "upstream_<HTTP status> or upstream_unreachable (the model's side failed) with "
                "status error; internal_database, internal_redis, internal_bug or "
                "internal_interrupted (the platform failed; not the participant's choice) with "
                "status error. Exclude internal_* and upstream_* replies from analyses of "
                "stopping behaviour.",
            ),
            Column("prompt_tokens", "integer", "Prompt tokens.", unit="tokens"),
            Column("completion_tokens", "integer", "Completion tokens.", unit="tokens"),
            Column(
                "latency_ms",
                "integer",
                "From the participant's message to the first token.",
                unit="milliseconds",
            ),
            Column(
                "modality",
                "string",
                "How the participant's message was made: text (typed) or voice (spoken in a "
                "voice arm and transcribed; the text is the transcript). Replies: text.",
                allowed=("text", "voice"),
            ),
            Column(
                "audio_ms",
                "integer",
                "Voice arms. Participant's voice message: length of the recording. Reply: "
                "length of its spoken audio (first synthesis; empty when it was never spoken).",
                unit="milliseconds",
            ),
            Column(
                "stt_ms",
                "integer",
                "Voice arms: time the speech-to-text model took to transcribe the recording.",
                unit="milliseconds",
            ),
            Column(
                "tts_ms",
                "integer",
                "Voice arms: time the text-to-speech model took to speak the finished reply "
                "(first synthesis).",
                unit="milliseconds",
            ),
            *time_columns("created", "Message created", shape),
            Column("n_chars", "integer", "Length of the original text.", unit="characters"),
            Column(
                "text_included",
                "boolean",
                "False for metadata-only rows of participants who did not consent to share chats.",
            ),
            Column(
                "text",
                "string",
                "Message text with identifiers replaced by typed surrogates ([PERSON_1], "
                "[EMAIL_1], ...; numbered per participant). Empty when text_included is false.",
                free_text=True,
            ),
        ]
    if name == "usage_daily":
        return [
            pid,
            *day_columns("", "The local calendar day of the row", shape),
            *(_usage_column(f, "the local day of the row") for f in USAGE_DAILY_FEATURES),
        ]
    if name == "compliance":
        return [
            pid,
            *day_columns("", "The local calendar day of the row", shape),
            Column(
                "period",
                "integer",
                "The requirement period the day belongs to: the study day (daily minimum) or "
                "the study week, 0 = the week starting on the enrollment day (weekly minimum).",
            ),
            Column(
                "active_minutes",
                "number",
                "Active chat minutes of sessions starting that local day, as usage_daily."
                "active_minutes: summed duration of those sessions (at least 1 each).",
                unit="minutes",
            ),
            Column(
                "messages",
                "integer",
                "Messages the participant sent that local day (usage_daily.messages_sent).",
                unit="messages",
            ),
            Column(
                "period_met",
                "boolean",
                "Whether the day's period reached every minimum of the protocol's requirements "
                "(active minutes and/or messages, summed over the period); empty while the "
                "period was still in progress when the export was built.",
            ),
        ]
    if name == "usage_waves":
        columns = [
            pid,
            Column(
                "arm",
                "string",
                "Randomized arm; suppressed here wherever it is suppressed in participants.",
                allowed=_maybe_star("arm", shape.arms, shape),
            ),
            Column("entry", "string", "Protocol schedule entry of the survey occasion."),
            Column(
                "occurrence_number",
                "integer",
                "1, 2, ... : the participant's completed occasions of this entry in time order "
                "(stands in for the schedule's occurrence key, which can hold a date).",
            ),
            Column(
                "wave",
                "integer",
                "Analysis wave: whole 7-day periods from enrollment to the occasion's opening, "
                "rounded (baseline 0).",
                unit="weeks",
            ),
            *time_columns("submitted", "Last instrument of the occasion submitted", shape),
            *day_columns("window_start", "First day of the usage window (inclusive)", shape),
            *day_columns(
                "window_end",
                "Day after the window (exclusive): the survey's own local day, not counted",
                shape,
            ),
            *(_usage_column(f, "the window before the survey") for f in USAGE_WINDOW_FEATURES),
        ]
        columns += [
            Column(score, "number", f"Survey score {score} (instrument.score; see instruments).")
            for score in shape.usage_scores
        ]
        for predictor in shape.usage_predictors:
            columns += [
                Column(
                    f"{predictor}_within",
                    "number",
                    f"{predictor} minus the participant's mean over their occasions.",
                ),
                Column(
                    f"{predictor}_between",
                    "number",
                    f"The participant's mean {predictor} over their occasions.",
                ),
            ]
        columns += [
            Column(
                f"{lagged}_lag",
                "number",
                f"{lagged} at the participant's previous wave (wave - 1); empty if not answered.",
            )
            for lagged in (*shape.usage_scores, *shape.usage_predictors)
        ]
        return columns
    if name == "tasks":
        return [
            pid,
            *day_columns("", "The study day the task was for (local calendar)", shape),
            Column("task_list", "string", "Key of the protocol's task list the task came from."),
            Column("task", "string", "Key of the task (item) in that list (see the protocol)."),
            Column(
                "conversation_offered",
                "boolean",
                "The task card offered a button that opens a new conversation about the task.",
            ),
            *time_columns("shown", "Task first shown (home or chat page)", shape),
            Column(
                "conversation_started",
                "boolean",
                "The participant opened a conversation from the task card.",
            ),
            Column(
                "conversation_id",
                "string",
                "Pseudonym of that conversation ('c_' + 16 hex; joins messages); empty if none.",
            ),
            Column(
                "chatted_after",
                "boolean",
                "The participant sent a study-chat message on the same study day at or after the "
                "task was first shown (in any conversation).",
            ),
            Column(
                "minutes_to_first_message",
                "integer",
                "From the task's first showing to that first message, rounded to whole "
                "minutes; empty if none.",
                unit="minutes",
            ),
        ]
    if name == "classifier_labels":
        return [
            Column(
                "message_id",
                "string",
                "Pseudonym of the labelled message (joins messages); empty for whole-conversation "
                "classifiers. An exchange's label is on its assistant reply, a window's on its "
                "last user message.",
            ),
            Column("conversation_id", "string", "Conversation pseudonym (joins messages)."),
            pid,
            Column("classifier", "string", "Classifier key (see classifiers in codebook.json)."),
            Column("classifier_version", "integer", "Classifier version."),
            Column(
                "scope",
                "string",
                "What the judge read.",
                allowed=("user_message", "assistant_message", "exchange", "window", "conversation"),
            ),
            Column(
                "judge",
                "string",
                "The judge that answered, as endpoint/model (see classifiers in codebook.json).",
            ),
            Column(
                "anonymized_text",
                "boolean",
                "True when the judge read the anonymized text, false when it read the raw text.",
            ),
            Column(
                "outcome",
                "string",
                "label: the judge answered one of the classifier's levels; unparseable: it "
                "answered twice with something else (no label is guessed); gated_out: not asked, "
                "because the gating classifier's answer did not open this one.",
                allowed=("label", "unparseable", "gated_out"),
            ),
            Column(
                "label",
                "string",
                "The level code the judge chose (empty unless outcome is label); the levels and "
                "their labels are under classifiers in codebook.json.",
            ),
        ]
    raise ValueError(f"unknown table {name!r}")


def classifier_entry(
    summary: Mapping[str, Any], *, judge: str, validation: Mapping[str, Any] | None, note: str
) -> dict[str, Any]:
    """Codebook entry for one classifier version and judge: the question asked, its levels as
    value labels (the shape instrument items use for options: value and per-language label),
    and its validation against human coders, or a note that none exists."""
    return {
        "key": summary["key"],
        "version": summary["version"],
        "title": dict(summary.get("title") or {}),
        "scope": summary["scope"],
        "window_turns": summary.get("window_turns"),
        "question": dict(summary.get("question") or {}),
        "type": summary["output_type"],
        "options": [
            {"value": level["code"], "label": dict(level["label"])} for level in summary["levels"]
        ],
        "gate": summary.get("gate"),
        "judge": judge,
        "generation": dict(summary.get("generation") or {}),
        "citation": summary.get("source", ""),
        "validation": dict(validation) if validation else None,
        "validation_note": note,
    }


def instrument_entry(instrument: Any, *, custom: bool) -> dict[str, Any]:
    """Codebook entry for one instrument: items (text only where licensed), options, scoring."""
    licence = dict(instrument.licence or {})
    # Shipped instruments list the languages whose wording may be redistributed; a researcher's
    # own instrument is theirs to publish.
    licensed = set(instrument.languages if custom else licence.get("wording_shipped", []))
    items = []
    for item in instrument.items:
        text = {lang: t for lang, t in (item.text or {}).items() if lang in licensed}
        items.append(
            {
                "id": item.id,
                "type": item.type,
                "text": text or None,
                "options": [{"value": o.value, "label": dict(o.label)} for o in item.options],
                "reverse_scored": item.reverse_scored,
                "min": item.min,
                "max": item.max,
            }
        )
    scores = [
        {
            "name": s.name,
            "method": s.method,
            "items": list(s.items),
            "multiplier": s.multiplier,
            "range": [s.min, s.max],
            "missing_rule": s.missing.rule,
            "max_missing": s.missing.max_missing,
            "bands": [{"label": b.label, "min": b.min, "max": b.max} for b in s.bands],
        }
        for s in instrument.scores
    ]
    return {
        "key": instrument.key,
        "version": instrument.version,
        "title": dict(instrument.title),
        "custom": custom,
        "licence": {"status": licence.get("status", "researcher-defined" if custom else "")},
        "item_text_languages": sorted(licensed),
        "citation": (instrument.source or {}).get("citation", ""),
        "scoring_source": (instrument.source or {}).get("scoring", ""),
        "items": items,
        "scores": scores,
    }


def build_codebook(
    *,
    study_title: str,
    tables: Mapping[str, Mapping[str, Any]],
    columns: Mapping[str, Sequence[Column]],
    instruments: Sequence[Mapping[str, Any]],
    protocol_versions: Sequence[Mapping[str, Any]],
    anonymization: Mapping[str, Any],
    classifiers: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """The machine-readable codebook (codebook.json)."""
    out = {
        "study": study_title,
        "tables": {
            name: {
                "file": info["file"],
                "rows": info["rows"],
                "consent_basis": CONSENT_BASIS[name],
                "columns": [c.as_dict() for c in columns[name]],
            }
            for name, info in tables.items()
        },
        "instruments": list(instruments),
        "protocol_versions": list(protocol_versions),
        "anonymization": dict(anonymization),
    }
    if classifiers:
        out["classifiers"] = list(classifiers)
    return out


# How to open each statistical-package format (README.md of the export; docs/exports.md).
FORMAT_OPENING = {
    "sav": "Open in SPSS with File > Open > Data, or `GET FILE='participants.sav'.`; in R with "
    "`haven::read_sav()`; in Python with `pyreadstat.read_sav()`.",
    "dta": "Open in Stata with `use participants.dta, clear` (`label list` shows the codes); "
    "in R with `haven::read_dta()`; in Python with `pyreadstat.read_dta()`.",
    "r": 'In R, with the unzipped folder as the working directory: `source("load.R")`, then '
    "`export$participants` and so on (base R only; no packages needed).",
}


def readme_text(codebook: Mapping[str, Any]) -> str:
    """The human-readable README.md for the export."""
    anon = codebook["anonymization"]
    k_report = anon.get("k_anonymity") or {}
    lines = [
        f"# Anonymized dataset: {codebook['study']}",
        "",
        "Every column of every file is described in `codebook.json`; `manifest.json` lists the",
        "SHA-256 of every file. Check the files with the manifest before analysis.",
        "",
        "## Files",
        "",
        "| File | Rows | Consent basis |",
        "|---|---|---|",
    ]
    for info in codebook["tables"].values():
        lines.append(f"| `{info['file']}` | {info['rows']} | {info['consent_basis']} |")
    file_format = codebook.get("file_format")
    if file_format:
        # Statistical-package formats (statfiles.py): how codes, labels and missing values work.
        lines += ["", "## File format", "", file_format["notes"]]
        lines += ["", FORMAT_OPENING[file_format["format"]]]

    if codebook.get("classifiers"):
        lines += [
            "",
            "## Conversation classifiers",
            "",
            "`classifier_labels` holds a judge model's answer per message (or conversation) for",
            "each classifier below; `codebook.json` gives each one's question and levels.",
            "Validation against human coders (Cohen's kappa and F1, 95% bootstrap intervals):",
            "",
        ]
        for entry in codebook["classifiers"]:
            lines.append(
                f"- `{entry['key']}@{entry['version']}` ({entry['judge']}): "
                f"{entry['validation_note']}"
            )
    lines += [
        "",
        "## How the data were de-identified",
        "",
        "- No names, e-mail addresses, phone numbers, panel ids, IP addresses, exact timestamps or",
        "  internal database ids are included.",
        "- Participant, conversation, message and response ids are keyed HMAC-SHA256 pseudonyms",
        f"  under a key made for this export (key fingerprint `{anon['key_fingerprint']}`).",
    ]
    if anon.get("key_reused"):
        lines.append(
            "  The key was deliberately reused from an earlier export, so pseudonyms match it."
        )
    else:
        lines.append("  Pseudonyms cannot be matched with those of any other export.")
    if anon["dates"] == "relative":
        lines.append(
            "- Dates are days since each participant's enrollment (day 0), local calendar."
        )
    else:
        lines.append(
            "- Dates are shifted back by a secret per-participant offset of 1-364 days;"
            " intervals within a participant are kept."
        )
    lines.append(
        "- Local time of day (HH:MM) is "
        + ("included." if anon["include_time_of_day"] else "not included.")
    )
    chat = (
        "are left out"
        if anon["chat_mode"] == "exclude"
        else "appear as metadata rows without text (text_included = false)"
    )
    lines += [
        f"- Messages of participants who did not consent to share their chats {chat}.",
        "- Message text and free-text answers were passed through the text anonymizer with",
        "  each participant's own identifiers; detected identifiers are replaced by typed",
        "  surrogates such as `[PERSON_1]`, consistent within a participant.",
        "",
        "Detections replaced, by type:",
        "",
    ]
    counts = anon.get("detection_counts") or {}
    if counts:
        lines += [f"- {kind}: {n}" for kind, n in sorted(counts.items())]
    else:
        lines.append("- none")
    lines += [
        "",
        "## Demographics and k-anonymity",
        "",
        "Ages are given in 10-year bands (90 and over grouped). Every combination of the",
        f"quasi-identifiers {', '.join(k_report.get('quasi_identifiers', [])) or '(none)'} is",
        f"shared by at least k = {k_report.get('k')} participants; values were replaced by `*`",
        "where needed (cell suppression). Suppressed cells per column:",
        "",
    ]
    for qi, n in (k_report.get("suppressed_cells") or {}).items():
        lines.append(f"- {qi}: {n}")
    lines += [
        "- rows with every quasi-identifier suppressed: "
        f"{k_report.get('rows_fully_suppressed', 0)}",
        "",
        f"Equivalence classes: {k_report.get('equivalence_classes', 0)}; smallest class: "
        f"{k_report.get('smallest_class', 0)}; k reached: "
        f"{'yes' if k_report.get('satisfied', True) else 'no (fewer than k participants)'}.",
        "",
    ]
    control = anon.get("disclosure_control") or {}
    lines += [
        "The suppression applies to the whole dataset, not only to the participants file: where",
        "a participant's value is suppressed, every column of every file that carries it (or",
        "lets it be inferred) is suppressed in that participant's rows too ('*' in text columns,",
        "empty in numeric ones). Every file was read back and checked for this before the zip",
        "was made.",
        "",
    ]
    for qi, count in (control.get("participants_suppressed") or {}).items():
        carried = ", ".join(f"`{c}`" for c in (control.get("columns") or {}).get(qi, []))
        lines.append(f"- {qi}: suppressed for {count} participant(s), in {carried or '-'}")
    if control.get("participants_suppressed"):
        lines.append("")
    if "arm" in (control.get("participants_suppressed") or {}):
        lines += [
            "The text of the assistant's replies is kept for these participants; its wording may",
            "still hint at the model or the system prompt.",
            "",
        ]
    lines += [
        "Automated de-identification misses some identifiers. Do not try to re-identify anyone,",
        "and report anything identifying you find to the study team.",
        "",
    ]
    return "\n".join(lines)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def manifest(directory: Path, names: Sequence[str]) -> dict[str, Any]:
    """SHA-256 and size of every listed file in `directory`."""
    return {
        "algorithm": "sha256",
        "files": {
            name: {
                "sha256": sha256_file(directory / name),
                "bytes": (directory / name).stat().st_size,
            }
            for name in sorted(names)
        },
    }


def dumps(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False, indent=2, sort_keys=False, default=str) + "\n"
