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
from surveys.instruments import Instrument, get_instrument, load_instrument_dict
from surveys.models import Response

from .. import codebook as cb
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
from .labels import classifier_entries, classifier_label_batches
from .options import screener_export_questions
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
        self.instruments: dict[tuple[str, int], Instrument | None] = {}
        self.instrument_entries: dict[tuple[str, str], dict[str, Any]] = {}
        # Decided from the k-anonymized participants table before any file is written.
        self.plan = DisclosurePlan()

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
        return cb.StudyShape(
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

    def write_responses(self, people, shape) -> dict[str, int]:
        """responses and answers in one pass over the responses (two files, bounded batches)."""
        response_columns = cb.table_columns("responses", shape)
        answer_columns = cb.table_columns("answers", shape)
        ext = EXTENSIONS[self.fmt]
        response_writer = open_writer(
            self.fmt, self.directory / f"responses{ext}", response_columns, disclosure=self.plan
        )
        answer_writer = open_writer(
            self.fmt, self.directory / f"answers{ext}", answer_columns, disclosure=self.plan
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
        responses: list[dict] = []
        answers: list[dict] = []
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
                for item_id, value in (response.answers or {}).items():
                    answers.append(
                        self.answer_row(
                            person, rid, response.instrument_key, instrument, item_id, value
                        )
                    )
                if len(responses) >= BATCH or len(answers) >= BATCH:
                    response_writer.write_batch(responses)
                    answer_writer.write_batch(answers)
                    counts["responses"] += len(responses)
                    counts["answers"] += len(answers)
                    responses, answers = [], []
            response_writer.write_batch(responses)
            answer_writer.write_batch(answers)
            counts["responses"] += len(responses)
            counts["answers"] += len(answers)
        finally:
            response_writer.close()
            answer_writer.close()
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
                for name in ("responses", "answers"):
                    columns[name] = cb.table_columns(name, shape)
                    written[name] = {"file": f"{name}{ext}", "rows": counts[name]}
            elif table in ("messages", "imported"):
                write(table, self.message_batches(people, imported=table == "imported"))
            elif table == "usage_daily":
                write(table, usage_daily_rows(self, usage, by_code, shape))
            elif table == "usage_waves":
                write(table, usage_waves_rows(self, usage, by_code, shape, published))
            elif table == "classifier_labels":
                write(table, classifier_label_batches(self, people))
            self.report(int(90 * done / steps), table)

        checked = self.verify_disclosure(columns, written)
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
        (self.directory / "codebook.json").write_text(cb.dumps(codebook), encoding="utf-8")
        (self.directory / "README.md").write_text(cb.readme_text(codebook), encoding="utf-8")
        files = [info["file"] for info in written.values()] + ["codebook.json", "README.md"]
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
