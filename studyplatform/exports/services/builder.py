"""Building one export: tables -> files -> codebook, README, manifest -> zip.

The build reads the identity vault only to learn what to remove: each participant's name, e-mail
and ids feed the text anonymizer as known identifiers, and the vault's date shift moves dates in
"shifted" mode. Nothing from the vault is written out. Large tables (messages, responses) are
read with `.iterator(chunk_size=BATCH)` and written batch by batch, so memory stays bounded.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import shutil
import zipfile
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from studyplatform.chat.models import Conversation, Message
from studyplatform.core.i18n import localized
from studyplatform.participants.models import (
    Allocation,
    ConsentRecord,
    Identity,
    Participant,
)
from studyplatform.studies.models import ProtocolVersion
from studyplatform.studies.protocol.factors import arm_levels, factor_definitions
from surveys.instruments import Instrument, get_instrument, load_instrument_dict
from surveys.models import Response

from .. import codebook as cb
from .. import statfiles
from ..anonymize import Anonymizer, KnownIdentifiers
from ..disclosure import (
    DisclosureLeak,
    DisclosurePlan,
    age_band,
    disclosure_verify,
    k_anonymize,
)
from ..models import DatasetExport
from ..pseudonyms import Pseudonymizer
from ..writers import EXTENSIONS, open_writer, read_rows, write_table
from .compliance import compliance_rows
from .labels import classifier_entries, classifier_label_batches
from .options import screener_export_questions
from .tasks import task_rows
from .usage import usage_daily_rows, usage_frames_load, usage_waves_rows

log = logging.getLogger(__name__)

BATCH = 2000
# A fixed timestamp inside the zip: the archive carries no clock time, and the same data gives
# the same bytes.
ZIP_DATE = (1980, 1, 1, 0, 0, 0)

Progress = Callable[[int, str], None]


@dataclass
class Person:
    """One exported participant: pseudonym, local calendar and what the anonymizer must remove."""

    pk: int
    pid: str
    tz: ZoneInfo
    enrolled_local: dt.date
    shift_days: int | None
    shares_chats: bool
    known: KnownIdentifiers
    _anonymizer: Anonymizer | None = None

    @property
    def anonymizer(self) -> Anonymizer:
        # One per participant for the whole export, so "Ana" is [PERSON_1] in her messages
        # and in her survey answers alike.
        if self._anonymizer is None:
            self._anonymizer = Anonymizer(known=self.known)
        return self._anonymizer


@dataclass
class _Result:
    zip_path: Path
    detection_counts: Counter = field(default_factory=Counter)
    disclosure: dict[str, Any] = field(default_factory=dict)
    # Who is in the zip (participant primary keys): a later withdrawal with deletion revokes it.
    participant_pks: frozenset[int] = frozenset()


def _zone(name: str, fallback: str) -> ZoneInfo:
    for candidate in (name, fallback, "UTC"):
        try:
            return ZoneInfo(candidate)
        except (ZoneInfoNotFoundError, ValueError):
            continue
    return ZoneInfo("UTC")


def _labels(value: Any) -> dict[str, str]:
    """A protocol text as {language: text} (a plain string is the English text)."""
    if isinstance(value, dict):
        return {lang: str(text) for lang, text in value.items()}
    return {"en": str(value)}


class Builder:
    """Writes every requested table of one export into `directory` and zips them."""

    def __init__(self, export: DatasetExport, directory: Path, report: Progress) -> None:
        self.export = export
        self.study = export.study
        self.options = export.options
        self.directory = directory
        self.report = report
        self.pseudo = Pseudonymizer(bytes.fromhex(export.key))
        self.counts: Counter[str] = Counter()
        self.fmt = self.options["format"]
        self.versions = {
            v.pk: v for v in ProtocolVersion.objects.filter(study=self.study).order_by("number")
        }
        self.arms = {arm.pk: arm.key for arm in self.study.arms.all()}
        # {arm key: {factor: level}}; a version's arms as it defined them (the latest wins), so
        # an arm a later version removed keeps its levels.
        self.arm_levels: dict[str, dict[str, str]] = {}
        for v in self.versions.values():
            self.arm_levels.update(arm_levels(v.content or {}))
        self.factors = factor_definitions(self.study.protocol)
        self.instruments: dict[tuple[str, int], Instrument | None] = {}
        self.instrument_entries: dict[tuple[str, str], dict[str, Any]] = {}
        # Decided from the k-anonymized participants table before any file is written.
        self.plan = DisclosurePlan()
        # What the SPSS/Stata writers had to note per file (statfiles.WriteNotes).
        self.format_notes: dict[str, statfiles.WriteNotes] = {}
        # Columns of tables that depend on the data rather than the study's shape (items).
        self.extra_columns: dict[str, list[cb.Column]] = {}

    # ---- shape and people

    def shape(self) -> cb.StudyShape:
        screener = self.study.protocol.get("screener", {}).get("questions", [])
        genders: tuple[Any, ...] = ()
        for question in screener:
            if question.get("key") == "gender":
                genders = tuple(o["value"] for o in question.get("options", []))
        extra = []
        for question in screener_export_questions(self.study):
            if question["type"] == "yes_no":
                values: tuple[Any, ...] = ("yes", "no")
            else:
                values = tuple(str(o["value"]) for o in question.get("options", []))
            # The codebook is in English (the fallback every protocol provides).
            extra.append((question["key"], values, localized(question.get("text"), "en")))
        consent_keys: list[str] = []
        for document in self.study.consent_documents.all():
            for box in document.checkboxes:
                if box["key"] not in consent_keys:
                    consent_keys.append(box["key"])
        factors = tuple(
            cb.FactorShape(
                key=f["key"],
                label=_labels(f["label"]),
                levels=tuple((lv["key"], _labels(lv["label"])) for lv in f["levels"]),
            )
            for f in self.factors
        )
        return cb.StudyShape(
            factors=factors,
            arm_labels=tuple(
                (arm.key, _labels(arm.label or arm.key)) for arm in self.study.arms.all()
            ),
            dates=self.options["dates"],
            include_time_of_day=self.options["include_time_of_day"],
            arms=tuple(sorted(self.arms.values())),
            consent_keys=tuple(consent_keys),
            genders=genders,
            screener=tuple(extra),
            quasi_identifiers=tuple(self.options["quasi_identifiers"]),
        )

    def participants(self):
        # Withdrawn-with-deletion participants never appear; pilots only when asked for.
        qs = Participant.objects.filter(study=self.study).exclude(
            status=Participant.Status.WITHDRAWN, withdrawal_mode=Participant.Withdrawal.DELETE
        )
        if not self.options["include_pilot"]:
            qs = qs.filter(is_pilot=False)
        return qs.order_by("pk")

    def load_people(self, participants: list[Participant]) -> dict[int, Person]:
        pks = [p.pk for p in participants]
        identities = {i.participant_id: i for i in Identity.objects.filter(study=self.study)}
        latest: dict[int, ConsentRecord] = {}
        signatures: dict[int, set[str]] = {}
        records = ConsentRecord.objects.filter(participant__study=self.study).order_by(
            "participant_id", "-signed_at", "-pk"
        )
        for record in records.iterator(chunk_size=BATCH):
            latest.setdefault(record.participant_id, record)
            if record.signature_name:
                signatures.setdefault(record.participant_id, set()).add(record.signature_name)
        people: dict[int, Person] = {}
        wanted = set(pks)
        for participant in participants:
            if participant.pk not in wanted:
                continue
            identity = identities.get(participant.pk)
            tz = _zone(participant.timezone, self.study.timezone)
            names = set(signatures.get(participant.pk, set()))
            emails: set[str] = set()
            ids = {participant.code}
            if identity is not None:
                names.add(identity.name)
                emails.add(identity.email)
                ids |= {identity.panel_pid, identity.panel_study_id, identity.panel_session_id}
            record = latest.get(participant.pk)
            people[participant.pk] = Person(
                pk=participant.pk,
                pid=self.pseudo("participant", participant.pk),
                tz=tz,
                enrolled_local=participant.enrolled_at.astimezone(tz).date(),
                shift_days=identity.date_shift_days if identity is not None else None,
                shares_chats=bool(record and record.allows("share_chats")),
                known=KnownIdentifiers(
                    names=tuple(sorted(n for n in names if n)),
                    emails=tuple(sorted(e for e in emails if e)),
                    ids=tuple(sorted(i for i in ids if i)),
                ),
            )
        self.latest_consent = latest
        return people

    # ---- values

    def when(self, person: Person, event: str, moment: dt.datetime | None) -> dict[str, Any]:
        """The columns for one timestamp: a day number or a shifted date, maybe HH:MM."""
        relative = self.options["dates"] == "relative"
        values: dict[str, Any] = {}
        local = moment.astimezone(person.tz) if moment is not None else None
        if relative:
            values[f"{event}_day"] = (
                (local.date() - person.enrolled_local).days if local is not None else None
            )
        else:
            values[f"{event}_date"] = (
                (local.date() - dt.timedelta(days=person.shift_days)).isoformat()
                if local is not None and person.shift_days is not None
                else None
            )
        if self.options["include_time_of_day"]:
            values[f"{event}_time"] = local.strftime("%H:%M") if local is not None else None
        return values

    def scrub(self, person: Person, text: str) -> str:
        result = person.anonymizer.anonymize(text)
        self.counts.update(span.type for span in result.spans)
        return result.text

    def scrub_many(self, person: Person, texts: list[str]) -> list[str]:
        results = person.anonymizer.anonymize_many(texts)
        for result in results:
            self.counts.update(span.type for span in result.spans)
        return [r.text for r in results]

    def version_number(self, version_id: int | None) -> int | None:
        version = self.versions.get(version_id)
        return version.number if version is not None else None

    # ---- tables

    def demographics(self, participants: list[Participant], people: dict[int, Person]):
        allocations = {
            a.participant_id: a
            for a in Allocation.objects.filter(participant__study=self.study).only(
                "participant_id", "arm_id"
            )
        }
        rows = []
        for participant in participants:
            answers = participant.screener_answers or {}
            allocation = allocations.get(participant.pk)
            row = {
                "participant_id": people[participant.pk].pid,
                "status": participant.status,
                "language": participant.language,
                "age_band": age_band(answers.get("age")),
                "gender": answers.get("gender"),
                "arm": self.arms.get(allocation.arm_id) if allocation else None,
            }
            levels = self.arm_levels.get(row["arm"], {})
            for factor in self.factors:
                row[factor["key"]] = levels.get(factor["key"])
            for question in screener_export_questions(self.study):
                value = answers.get(question["key"])
                if isinstance(value, bool):
                    value = "yes" if value else "no"
                row[f"screener_{question['key']}"] = None if value is None else str(value)
            rows.append(row)
        published, report = k_anonymize(rows, self.options["quasi_identifiers"], self.options["k"])
        return {row["participant_id"]: row for row in published}, report

    def participants_rows(self, participants, people, published) -> Iterator[list[dict]]:
        batch = []
        for participant in participants:
            person = people[participant.pk]
            record = self.latest_consent.get(participant.pk)
            row = dict(published[person.pid])
            row["is_pilot"] = participant.is_pilot
            row.update(self.when(person, "enrolled", participant.enrolled_at))
            row.update(self.when(person, "completed", participant.completed_at))
            row.update(self.when(person, "withdrawn", participant.withdrawn_at))
            row["consent_version"] = record.version if record else None
            row["shares_chats"] = person.shares_chats
            batch.append(row)
        yield batch

    def consent_rows(self, people) -> Iterator[list[dict]]:
        records = ConsentRecord.objects.filter(participant__study=self.study).order_by(
            "participant_id", "signed_at", "pk"
        )
        batch: list[dict] = []
        for record in records.iterator(chunk_size=BATCH):
            person = people.get(record.participant_id)
            if person is None:
                continue
            row = {
                "participant_id": person.pid,
                "consent_version": record.version,
                "language": record.language,
                "text_hash": record.text_hash,
                "protocol_version": self.version_number(record.protocol_version_id),
                "is_latest": self.latest_consent.get(record.participant_id) == record,
            }
            row.update(self.when(person, "signed", record.signed_at))
            for key, value in (record.choices or {}).items():
                row[f"choice_{key}"] = bool(value)
            batch.append(row)
            if len(batch) >= BATCH:
                yield batch
                batch = []
        yield batch

    def allocation_rows(self, people, published) -> Iterator[list[dict]]:
        rows = []
        allocations = Allocation.objects.filter(participant__study=self.study).order_by(
            "participant_id"
        )
        for allocation in allocations.iterator(chunk_size=BATCH):
            person = people.get(allocation.participant_id)
            if person is None:
                continue
            row = {
                "participant_id": person.pid,
                # The arm as published in participants, so a suppressed arm stays suppressed.
                "arm": published[person.pid]["arm"],
                **{f["key"]: published[person.pid].get(f["key"]) for f in self.factors},
                "method": allocation.method,
                "block_number": allocation.block_number,
                "protocol_version": self.version_number(allocation.protocol_version_id),
            }
            row.update(self.when(person, "allocated", allocation.allocated_at))
            rows.append(row)
        yield rows

    def instrument(self, key: str, version_id: int) -> Instrument | None:
        cache_key = (key, version_id)
        if cache_key not in self.instruments:
            version = self.versions.get(version_id)
            custom = {
                i.get("key"): i
                for i in (version.content if version else {})
                .get("surveys", {})
                .get("instruments", [])
            }
            instrument: Instrument | None = None
            is_custom = key in custom
            try:
                instrument = load_instrument_dict(custom[key]) if is_custom else get_instrument(key)
            except (KeyError, ValueError):
                log.warning("export: instrument %s not loadable; answers treated as text", key)
            self.instruments[cache_key] = instrument
            if instrument is not None:
                entry_key = (instrument.key, instrument.version)
                if entry_key not in self.instrument_entries:
                    self.instrument_entries[entry_key] = cb.instrument_entry(
                        instrument, custom=is_custom
                    )
        return self.instruments[cache_key]

    def answer_row(self, person, response_pid, instrument_key, instrument, item_id, value):
        item = None
        if instrument is not None:
            try:
                item = instrument.item(item_id)
            except KeyError:
                item = None
        options = set(item.option_values()) if item is not None else set()

        def text_of(v: Any) -> Any:
            # Only a listed option value passes as it is; any other string may be typed by the
            # participant, so it goes through the anonymizer.
            if isinstance(v, str):
                return v if v in options else self.scrub(person, v)
            return v

        number = None
        text: Any = None
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, int | float):
            number = float(value)
        elif isinstance(value, list | tuple):
            text = [text_of(v) for v in value]
        elif isinstance(value, dict):
            text = {str(k): text_of(v) for k, v in value.items()}
        elif value is not None:
            text = text_of(str(value))
        return {
            "response_id": response_pid,
            "participant_id": person.pid,
            "instrument": instrument_key,
            "item_id": item_id,
            "item_type": item.type if item is not None else "unknown",
            "value_number": number,
            "value_text": text,
        }

    def items_layout(self, responses) -> tuple[list[cb.Column], dict[tuple[str, str], str]]:
        """The wide items table's columns: every item of every instrument answered (the latest
        version's definition of an item wins), wording only where licensed (as the codebook)."""
        pairs = set(
            responses.order_by().values_list("instrument_key", "protocol_version_id").distinct()
        )
        by_key: dict[str, dict[str, Any]] = {}
        for key, version_id in sorted(pairs, key=lambda pair: (pair[0], pair[1] or 0)):
            instrument = self.instrument(key, version_id)
            if instrument is None:
                continue
            items = by_key.setdefault(key, {})
            for item in instrument.items:
                items[item.id] = item
        texts: dict[tuple[str, str], str] = {}
        for entry in self.instrument_entries.values():
            for item in entry["items"]:
                wording = item["text"] or {}
                if wording:
                    texts[(entry["key"], item["id"])] = wording.get("en") or next(
                        iter(wording.values())
                    )
        return statfiles.items_columns(
            {key: list(items.values()) for key, items in by_key.items()}, texts
        )

    def write_responses(self, people, shape) -> dict[str, int]:
        """responses and answers in one pass over the responses (two files, bounded batches);
        for the statistical packages also `items`, one row per response and a column per item
        (what SPSS, Stata and R users analyse, with the options as value labels)."""
        response_columns = cb.table_columns("responses", shape)
        answer_columns = cb.table_columns("answers", shape)
        ext = EXTENSIONS[self.fmt]
        response_writer = open_writer(
            self.fmt,
            self.directory / f"responses{ext}",
            response_columns,
            disclosure=self.plan,
            file_label=f"{self.study.title}: responses",
        )
        answer_writer = open_writer(
            self.fmt,
            self.directory / f"answers{ext}",
            answer_columns,
            disclosure=self.plan,
            file_label=f"{self.study.title}: answers",
        )
        counts = {"responses": 0, "answers": 0}
        qs = (
            Response.objects.filter(
                participant__study=self.study,
                status=Response.Status.SUBMITTED,
                superseded_by__isnull=True,
            )
            .select_related("invitation")
            .order_by("participant_id", "started_at", "pk")
        )
        items_writer = None
        item_names: dict[tuple[str, str], str] = {}
        numeric: set[str] = set()
        if self.fmt in statfiles.STAT_FORMATS:
            item_columns, item_names = self.items_layout(qs)
            numeric = {c.name for c in item_columns if c.type == "number"}
            self.extra_columns["items"] = item_columns
            items_writer = open_writer(
                self.fmt,
                self.directory / f"items{ext}",
                item_columns,
                disclosure=self.plan,
                file_label=f"{self.study.title}: items",
            )
            counts["items"] = 0
        responses: list[dict] = []
        answers: list[dict] = []
        wide: list[dict] = []
        try:
            for response in qs.iterator(chunk_size=BATCH):
                person = people.get(response.participant_id)
                if person is None:
                    continue
                rid = self.pseudo("response", response.pk)
                instrument = self.instrument(response.instrument_key, response.protocol_version_id)
                row = {
                    "response_id": rid,
                    "participant_id": person.pid,
                    "instrument": response.instrument_key,
                    "instrument_version": response.instrument_version,
                    "schedule_entry": response.invitation.entry_key,
                    "wave": response.invitation.wave,
                    "valid": response.valid,
                    "scores": response.scores or {},
                    "bands": response.bands or {},
                    "flags": response.flags or [],
                    "protocol_version": self.version_number(response.protocol_version_id),
                }
                row.update(self.when(person, "started", response.started_at))
                row.update(self.when(person, "submitted", response.submitted_at))
                responses.append(row)
                item_row = {
                    "response_id": rid,
                    "participant_id": person.pid,
                    "instrument": response.instrument_key,
                }
                for item_id, value in (response.answers or {}).items():
                    answer = self.answer_row(
                        person, rid, response.instrument_key, instrument, item_id, value
                    )
                    answers.append(answer)
                    # Answers to keys that are not items of the instrument stay in answers only.
                    column = item_names.get((response.instrument_key, item_id))
                    if column is not None:
                        item_row[column] = (
                            answer["value_number"] if column in numeric else answer["value_text"]
                        )
                wide.append(item_row)
                if len(responses) >= BATCH or len(answers) >= BATCH:
                    response_writer.write_batch(responses)
                    answer_writer.write_batch(answers)
                    counts["responses"] += len(responses)
                    counts["answers"] += len(answers)
                    if items_writer is not None:
                        items_writer.write_batch(wide)
                        counts["items"] += len(wide)
                    responses, answers, wide = [], [], []
            response_writer.write_batch(responses)
            answer_writer.write_batch(answers)
            counts["responses"] += len(responses)
            counts["answers"] += len(answers)
            if items_writer is not None:
                items_writer.write_batch(wide)
                counts["items"] += len(wide)
        finally:
            response_writer.close()
            answer_writer.close()
            if items_writer is not None:
                items_writer.close()
        writers = [("responses", response_writer), ("answers", answer_writer)]
        if items_writer is not None:
            writers.append(("items", items_writer))
        for name, writer in writers:
            if getattr(writer, "notes", None) is not None:
                self.format_notes[name] = writer.notes
        return counts

    def message_batches(self, people, *, imported: bool) -> Iterator[list[dict]]:
        metadata_only = self.options["chat_mode"] == "metadata"
        sources = dict(
            Conversation.objects.filter(participant__study=self.study, imported=True).values_list(
                "pk", "import_source"
            )
        )
        qs = (
            Message.objects.filter(participant__study=self.study, imported=imported)
            .order_by("participant_id", "conversation_id", "created_at", "pk")
            .only(
                "pk",
                "conversation_id",
                "participant_id",
                "parent_id",
                "role",
                "content",
                "status",
                "created_at",
                "arm_id",
                "protocol_version_id",
                "model_requested",
                "model_reported",
                "finish_reason",
                "error_code",
                "prompt_tokens",
                "completion_tokens",
                "latency_ms",
                "content_type",
                "modality",
                "audio_ms",
                "stt_ms",
                "tts_ms",
            )
        )
        pending: list[tuple[Person, Message]] = []
        for message in qs.iterator(chunk_size=BATCH):
            person = people.get(message.participant_id)
            if person is None:
                continue
            if not person.shares_chats and not metadata_only:
                continue
            pending.append((person, message))
            if len(pending) >= BATCH:
                yield self.message_rows(pending, sources)
                pending = []
        yield self.message_rows(pending, sources)

    def message_rows(self, pending, sources) -> list[dict]:
        # Anonymize per participant in one call (anonymize_many is several times faster).
        texts: dict[int, list[str]] = {}
        for person, message in pending:
            if person.shares_chats:
                texts.setdefault(person.pk, []).append(message.content or "")
        scrubbed: dict[int, Iterator[str]] = {}
        people = {person.pk: person for person, _ in pending}
        for pk, values in texts.items():
            scrubbed[pk] = iter(self.scrub_many(people[pk], values))
        rows = []
        for person, message in pending:
            row = {
                "message_id": self.pseudo("message", message.pk),
                "conversation_id": self.pseudo("conversation", message.conversation_id),
                "parent_message_id": self.pseudo("message", message.parent_id),
                "participant_id": person.pid,
                "role": message.role,
                "status": message.status,
                "source": sources.get(message.conversation_id) or "study",
                "content_type": message.content_type or "text",
                "arm": self.arms.get(message.arm_id),
                "protocol_version": self.version_number(message.protocol_version_id),
                "model_requested": message.model_requested,
                "model_reported": message.model_reported,
                "finish_reason": message.finish_reason,
                "error_code": message.error_code,
                "prompt_tokens": message.prompt_tokens,
                "completion_tokens": message.completion_tokens,
                "latency_ms": message.latency_ms,
                "modality": message.modality,
                "audio_ms": message.audio_ms,
                "stt_ms": message.stt_ms,
                "tts_ms": message.tts_ms,
                # After retention removed the text, its length was kept in text_chars.
                "n_chars": message.text_chars
                if message.text_deleted_at
                else len(message.content or ""),
                "text_included": person.shares_chats and message.text_deleted_at is None,
                "text": next(scrubbed[person.pk]) if person.shares_chats else None,
            }
            row.update(self.when(person, "created", message.created_at))
            rows.append(row)
        return rows

    # ---- the whole build

    def run(self) -> _Result:
        shape = self.shape()
        tables = self.options["tables"]
        ext = EXTENSIONS[self.fmt]
        participants = list(self.participants())
        people = self.load_people(participants)
        usage = None
        by_code = {p.code: people[p.pk] for p in participants}
        if "usage_daily" in tables or "usage_waves" in tables:
            usage = usage_frames_load(
                study=self.study, codes=list(by_code), include_pilot=self.options["include_pilot"]
            )
            # usage_waves has a column per outcome score and per predictor part.
            shape = dataclasses.replace(
                shape, usage_scores=usage.scores, usage_predictors=usage.predictors
            )
        published, k_report = self.demographics(participants, people)
        self.plan = DisclosurePlan.from_published(
            list(published.values()), self.options["quasi_identifiers"]
        )
        steps = len(tables) + 1
        written: dict[str, dict[str, Any]] = {}
        columns: dict[str, list[cb.Column]] = {}

        def write(name: str, batches) -> None:
            columns[name] = cb.table_columns(name, shape)
            rows = write_table(
                self.fmt,
                self.directory / f"{name}{ext}",
                columns[name],
                batches,
                disclosure=self.plan,
                file_label=f"{self.study.title}: {name}",
                notes=self.format_notes,
            )
            written[name] = {"file": f"{name}{ext}", "rows": rows}

        for done, table in enumerate(tables, start=1):
            if table == "participants":
                write("participants", self.participants_rows(participants, people, published))
            elif table == "consent":
                write("consent", self.consent_rows(people))
            elif table == "allocation":
                write("allocation", self.allocation_rows(people, published))
            elif table == "responses":
                counts = self.write_responses(people, shape)
                for name in counts:  # responses, answers (and items for SPSS, Stata, R)
                    columns[name] = self.extra_columns.get(name) or cb.table_columns(name, shape)
                    written[name] = {"file": f"{name}{ext}", "rows": counts[name]}
            elif table in ("messages", "imported"):
                write(table, self.message_batches(people, imported=table == "imported"))
            elif table == "usage_daily":
                write(table, usage_daily_rows(self, usage, by_code, shape))
            elif table == "usage_waves":
                write(table, usage_waves_rows(self, usage, by_code, shape, published))
            elif table == "tasks":
                write(table, task_rows(self, people))

            elif table == "compliance":
                write(table, compliance_rows(self, participants, people, shape))

            elif table == "classifier_labels":
                write(table, classifier_label_batches(self, people))
            self.report(int(90 * done / steps), table)

        checked = self.verify_disclosure(columns, written)
        extra_files = []
        if self.fmt == "r":
            # Written after the check: it holds the codebook's labels and levels, no data.
            script = statfiles.r_script(
                self.study.title, {name: info["file"] for name, info in written.items()}, columns
            )
            (self.directory / statfiles.R_SCRIPT).write_text(script, encoding="utf-8")
            extra_files.append(statfiles.R_SCRIPT)
        anonymization = {
            "dates": self.options["dates"],
            "include_time_of_day": self.options["include_time_of_day"],
            "chat_mode": self.options["chat_mode"],
            "include_pilot": self.options["include_pilot"],
            "format": self.fmt,
            "tables": tables,
            "key_fingerprint": self.export.key_fingerprint,
            "key_reused": self.export.reuse_key_of_id is not None
            or self.options.get("reuse_key_of") is not None,
            "pseudonyms": "HMAC-SHA256 under a random 32-byte per-export key, first 16 hex",
            "detection_counts": dict(sorted(self.counts.items())),
            "k_anonymity": k_report.as_dict(),
            "disclosure_control": {
                "participants_suppressed": self.plan.counts(),
                "columns": {
                    qi: [
                        f"{written[name]['file']}:{c.name}"
                        for name in written
                        for c in columns[name]
                        if qi in c.carries
                    ]
                    for qi in self.options["quasi_identifiers"]
                },
                "rows_checked": checked,
            },
        }
        codebook = cb.build_codebook(
            study_title=self.study.title,
            tables=written,
            columns=columns,
            instruments=[self.instrument_entries[k] for k in sorted(self.instrument_entries)],
            protocol_versions=[
                {
                    "number": v.number,
                    "content_hash": v.content_hash,
                    "status_at_creation": v.status_at_creation,
                }
                for v in self.versions.values()
            ],
            anonymization=anonymization,
            classifiers=classifier_entries(self.study, self.versions.values(), people)
            if "classifier_labels" in tables
            else (),
        )
        statfiles.annotate_codebook(codebook, self.fmt, columns, self.format_notes)
        (self.directory / "codebook.json").write_text(cb.dumps(codebook), encoding="utf-8")
        (self.directory / "README.md").write_text(cb.readme_text(codebook), encoding="utf-8")
        files = [info["file"] for info in written.values()] + [
            *extra_files,
            "codebook.json",
            "README.md",
        ]
        (self.directory / "manifest.json").write_text(
            cb.dumps(cb.manifest(self.directory, files)), encoding="utf-8"
        )
        zip_path = self.directory / "export.zip"
        with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED) as archive:
            for name in [*files, "manifest.json"]:
                info = zipfile.ZipInfo(name, date_time=ZIP_DATE)
                info.compress_type = zipfile.ZIP_DEFLATED
                with (
                    (self.directory / name).open("rb") as source,
                    archive.open(info, "w") as target,
                ):
                    shutil.copyfileobj(source, target, 1 << 20)
        self.report(95, "zip")
        return _Result(
            zip_path,
            self.counts,
            k_report.as_dict(),
            participant_pks=frozenset(p.pk for p in participants),
        )

    # ---- the post-build check

    def forbidden_values(self) -> dict[str, set[str]]:
        """Values that must never sit in a (non free-text) cell of a participant whose arm is
        suppressed: every arm key and every model name any version of the protocol used."""
        values = {key for key in self.arms.values() if key}
        for arm in self.study.arms.all():
            values.add(getattr(arm, "model_name", "") or "")
        for version in self.versions.values():
            for arm in (version.content or {}).get("arms", []) or []:
                model = arm.get("model") if isinstance(arm, dict) else None
                if isinstance(model, dict) and isinstance(model.get("name"), str):
                    values.add(model["name"])
        return {"arm": {v for v in values if v}}

    def verify_disclosure(self, columns: dict[str, list[cb.Column]], written) -> int:
        """Read every data file back and fail the build if one still carries a suppressed
        quasi-identifier. Every file in the build directory is checked, so a table written
        outside `write` cannot slip into the zip unchecked."""
        by_file = {info["file"]: name for name, info in written.items()}
        paths = sorted(self.directory.iterdir())
        for path in paths:
            if path.name not in by_file:
                raise DisclosureLeak(f"{path.name}: not a documented table of this export")
        if not self.plan.suppressed:
            return 0  # nothing was suppressed, so no cell can carry a suppressed value
        tables = []
        for path in paths:
            name = by_file[path.name]
            tables.append((path.name, columns[name], read_rows(self.fmt, path, columns[name])))
        return disclosure_verify(tables, self.plan, self.forbidden_values())
