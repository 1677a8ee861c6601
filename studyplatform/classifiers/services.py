"""Classification runs: start one (checked, audited), then execute it as a leased job.

Execution, per batch of conversations and per classifier (in protocol order, so a gate's parent
is labelled before its children):
1. build the units (units.py) from the consenting participants' messages, anonymized when asked;
2. hash exactly what would be sent (definition hash, language, gate answer, excerpt) with a
   keyed HMAC, and reuse a stored label with that hash (same target: unchanged; another target:
   copied) instead of calling the judge;
3. close gated units whose parent answer does not open them (no call);
4. ask the judge about the rest, concurrently (judge.py), within the budget, and store the
   labels after every chunk, so a worker killed mid-run loses at most one chunk and the next
   worker (lease takeover) pays only for what is not stored yet.

Consent rule (docs/classifiers.md): nothing is sent unless the protocol version the run uses
has `classifiers.send_to_judge: true`, and only for participants whose latest consent record
ticked the protocol's `classifiers.consent_checkbox`.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import itertools
import json
import logging
import queue
import random
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone
from django.utils.crypto import salted_hmac

from studyplatform.chat.models import Conversation, Message
from studyplatform.core.audit import audit_record
from studyplatform.core.leases import Lease, LeaseLost, fault_injection_pause, job_claim
from studyplatform.core.model_endpoints import EndpointUnavailable, endpoint_resolve
from studyplatform.core.provider_config import ApiKeyUnavailable, api_key_read
from studyplatform.participants.models import ConsentRecord, Participant
from studyplatform.studies.models import Study

from . import judge as judge_mod
from .anonymization import AnonymizerMissing, text_anonymizers
from .library import Definition, Judge, ProtocolClassifiers, protocol_classifiers
from .models import ClassificationRun, ClassifierLabel
from .units import Turn, Unit, count_units, units_for

log = logging.getLogger(__name__)

MAX_CONCURRENCY = 32
MAX_SAMPLE = 100_000
MAX_CALLS = 10_000_000
MAX_TOKENS = 10_000_000_000
MAX_SEED = 2**31 - 1
CONVERSATION_BATCH = 200
# Labels are stored after every chunk of judge calls (at least this many, or four per concurrent
# request): what a killed worker loses, and how often progress moves.
CHUNK_MIN = 32
# A chunk smaller than that is stored after this many seconds without a write (a slow judge).
FLUSH_SECONDS = 2.0
HEARTBEAT_SECONDS = 30.0
PARAM_FIELDS = {
    "classifiers",
    "arms",
    "date_from",
    "date_to",
    "sample",
    "seed",
    "max_judge_calls",
    "max_tokens",
    "concurrency",
    "text",
    "include_pilot",
}
LABELLABLE_REPLY = (Message.Status.COMPLETE, Message.Status.LENGTH)


class RunRefused(ValueError):
    """The run cannot start; `errors` maps each offending field to a researcher-facing reason."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors


def study_classifiers(study: Study) -> ProtocolClassifiers | None:
    content = study.current_version.content if study.current_version_id else {}
    return protocol_classifiers((content or {}).get("classifiers"))


def _int(value: Any, field: str, low: int, high: int, errors: dict[str, str]) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value.strip())
        else:
            errors[field] = "must be a whole number"
            return None
    if not low <= value <= high:
        errors[field] = f"must be between {low} and {high}"
        return None
    return value


def _keys(value: Any, field: str, allowed: list[str], errors: dict[str, str]) -> list[str]:
    if value is None or value == []:
        return list(allowed)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        errors[field] = "must be a list of keys"
        return []
    if len(value) > 50:
        errors[field] = "at most 50 keys"
        return []
    unknown = [v[:40] for v in value if v not in allowed]
    if unknown:
        errors[field] = f"unknown: {', '.join(unknown[:5])} (known: {', '.join(allowed)})"
        return []
    return list(dict.fromkeys(value))


def _date(value: Any, field: str, errors: dict[str, str]) -> str | None:
    if value is None or value == "":
        return None
    try:
        if not isinstance(value, str) or len(value) != 10:
            raise ValueError(value)
        return dt.date.fromisoformat(value).isoformat()
    except ValueError:
        errors[field] = "must be a date as YYYY-MM-DD"
        return None


def run_params_clean(*, study: Study, data: Mapping[str, Any]) -> dict[str, Any]:
    """The run parameters, checked against the study's protocol; RunRefused names each bad
    field. Every input has a maximum (docs/classifiers.md lists them)."""
    errors: dict[str, str] = {}
    if not isinstance(data, Mapping):
        raise RunRefused({"body": "must be a mapping of fields"})
    unknown = sorted(str(k)[:40] for k in data if k not in PARAM_FIELDS)
    if unknown:
        errors["body"] = "unknown fields: " + ", ".join(unknown[:10])
    section = study_classifiers(study)
    if section is None:
        raise RunRefused({"classifiers": "the study's protocol lists no classifiers"})
    if not section.send_to_judge:
        raise RunRefused(
            {
                "classifiers": "the protocol does not allow sending chat text to a judge model "
                "(classifiers.send_to_judge is false)"
            }
        )
    keys = _keys(
        data.get("classifiers"), "classifiers", [d.key for d in section.definitions], errors
    )
    arm_keys = list(study.arms.order_by("key").values_list("key", flat=True))
    arms = _keys(data.get("arms"), "arms", arm_keys, errors)
    date_from = _date(data.get("date_from"), "date_from", errors)
    date_to = _date(data.get("date_to"), "date_to", errors)
    if date_from and date_to and date_from > date_to:
        errors["date_to"] = "must not be before date_from"
    sample = _int(data.get("sample"), "sample", 1, MAX_SAMPLE, errors)
    seed = _int(data.get("seed"), "seed", 0, MAX_SEED, errors)
    max_calls = _int(data.get("max_judge_calls"), "max_judge_calls", 1, MAX_CALLS, errors)
    max_tokens = _int(data.get("max_tokens"), "max_tokens", 1, MAX_TOKENS, errors)
    if (
        max_calls is None
        and max_tokens is None
        and not ({"max_judge_calls", "max_tokens"} & set(errors))
    ):
        errors["max_judge_calls"] = "set a budget: max_judge_calls, max_tokens or both"
    concurrency = _int(data.get("concurrency"), "concurrency", 1, MAX_CONCURRENCY, errors)
    text = data.get("text", section.text) or section.text
    if text not in ("anonymized", "raw"):
        errors["text"] = "must be anonymized or raw"
    include_pilot = data.get("include_pilot")
    if include_pilot is not None and not isinstance(include_pilot, bool):
        errors["include_pilot"] = "must be true or false"
    if errors:
        raise RunRefused(errors)
    # Only the classifiers asked for, plus the gates they need (a child cannot run alone).
    by_key = section.by_key()
    wanted = set(keys)
    for key in keys:
        parent = by_key[key].gate_parent
        while parent:
            wanted.add(parent)
            parent = by_key[parent].gate_parent
    return {
        "classifiers": [d.key for d in section.definitions if d.key in wanted],
        "arms": arms,
        "date_from": date_from,
        "date_to": date_to,
        "sample": sample,
        "seed": seed if seed is not None else random.SystemRandom().randrange(MAX_SEED),
        "max_judge_calls": max_calls,
        "max_tokens": max_tokens,
        "concurrency": concurrency or 8,
        "text": text,
        "include_pilot": include_pilot
        if include_pilot is not None
        else study.status in (Study.Status.DRAFT, Study.Status.PILOTING),
    }


def classification_run_create(
    *, study: Study, created_by, data: Mapping[str, Any], enqueue: bool = True
) -> ClassificationRun:
    """Check the request, record the run (audited) and queue it once that commits."""
    params = run_params_clean(study=study, data=data)
    section = study_classifiers(study)
    assert section is not None  # run_params_clean refused otherwise
    used = [d.summary() for d in section.definitions if d.key in params["classifiers"]]
    with transaction.atomic():
        run = ClassificationRun.objects.create(
            study=study,
            created_by=created_by,
            protocol_version=study.current_version,
            params=params,
            classifiers=used,
        )
        audit_record(
            actor=created_by,
            action="classification_run.created",
            target=run,
            study_slug=study.slug,
            data={
                "params": params,
                "classifiers": [c["ref"] for c in used],
                "judges": sorted({f"{c['judge']['endpoint']}/{c['judge']['model']}" for c in used}),
            },
        )
        if enqueue:
            from .tasks import classification_run_task

            transaction.on_commit(lambda: classification_run_task.delay(run.id))
    return run


def classification_run_claim(run_id: int, *, owner: str | None = None) -> Lease | None:
    """Claim a pending run, or take over one whose worker died. Progress restarts from the
    labels stored so far; what was spent (calls, tokens) is kept, as it was paid."""
    return job_claim(
        ClassificationRun,
        run_id,
        owner=owner,
        started_at=timezone.now(),
        progress=0,
        units_done=0,
    )


# -- execution -----------------------------------------------------------------------------------


def content_hash(definition: Definition, language: str, gate_answer: str, unit: Unit) -> str:
    """Keyed hash of exactly what decides the judge's answer (see ClassifierLabel)."""
    payload = json.dumps(
        [definition.definition_hash, language.lower(), gate_answer, list(unit.turns)],
        ensure_ascii=False,
    )
    return salted_hmac("studyplatform.classifiers.content", payload).hexdigest()


@dataclass
class _Pending:
    unit: Unit
    participant_id: int
    language: str
    content_hash: str
    request: judge_mod.Request


class _Runner:
    def __init__(self, run: ClassificationRun, lease: Lease) -> None:
        self.run = run
        self.lease = lease
        self.params = run.params
        section = protocol_classifiers((run.protocol_version.content or {}).get("classifiers"))
        if section is None or not section.send_to_judge:
            raise RunRefused({"classifiers": "the protocol no longer allows sending chat text"})
        self.section = section
        self.definitions = [d for d in section.definitions if d.key in self.params["classifiers"]]
        self.by_key = {d.key: d for d in self.definitions}
        self.budget = judge_mod.Budget(
            calls_left=None
            if self.params.get("max_judge_calls") is None
            else max(0, self.params["max_judge_calls"] - run.judge_calls),
            tokens_left=None
            if self.params.get("max_tokens") is None
            else self.params["max_tokens"] - run.tokens,
        )
        self.concurrency = min(int(self.params.get("concurrency") or 8), MAX_CONCURRENCY)
        # Judge calls run on an event loop in a thread of their own; this thread stores results.
        self.loop = asyncio.new_event_loop()
        self.loop_thread = threading.Thread(
            target=self.loop.run_forever, name=f"judge-{run.pk}", daemon=True
        )
        self.loop_thread.start()
        self.clients: dict[str, Any] = {}
        self.targets: dict[Judge, judge_mod.Target] = {}
        self.units_done = 0
        self.request_keys = itertools.count()

    # selection

    def select(self) -> tuple[list[int], dict[int, Participant]]:
        study = self.run.study
        people = Participant.objects.filter(study=study)
        if not self.params.get("include_pilot"):
            people = people.filter(is_pilot=False)
        latest: dict[int, ConsentRecord] = {}
        records = ConsentRecord.objects.filter(participant__in=people).order_by(
            "participant_id", "-signed_at", "-pk"
        )
        for record in records.only("participant_id", "choices", "signed_at"):
            latest.setdefault(record.participant_id, record)
        checkbox = self.section.consent_checkbox
        allowed = {
            p.pk: p
            for p in people.only("pk", "language", "study_id")
            if p.pk in latest and latest[p.pk].allows(checkbox)
        }
        skipped = people.count() - len(allowed)
        conversations = Conversation.objects.filter(participant_id__in=list(allowed))
        if self.params.get("arms"):
            conversations = conversations.filter(arm__key__in=self.params["arms"])
        if self.dated:
            in_range = self._in_range(Message.objects.filter(conversation__in=conversations))
            conversations = conversations.filter(pk__in=in_range.values("conversation_id"))
        ids = sorted(conversations.values_list("pk", flat=True))
        sample = self.params.get("sample")
        if sample and sample < len(ids):
            ids = sorted(random.Random(self.params.get("seed", 0)).sample(ids, sample))
        self.lease.require(conversations=len(ids), skipped_participants=skipped)
        return ids, allowed

    def _in_range(self, messages):
        """Messages sent within the run's dates, read as whole days in the study's time zone."""
        zone = ZoneInfo(self.run.study.timezone or "UTC")
        if self.params.get("date_from"):
            day = dt.date.fromisoformat(self.params["date_from"])
            messages = messages.filter(created_at__gte=dt.datetime.combine(day, dt.time(), zone))
        if self.params.get("date_to"):
            day = dt.date.fromisoformat(self.params["date_to"]) + dt.timedelta(days=1)
            messages = messages.filter(created_at__lt=dt.datetime.combine(day, dt.time(), zone))
        return messages

    @property
    def dated(self) -> bool:
        return bool(self.params.get("date_from") or self.params.get("date_to"))

    def count_total(self, ids: list[int]) -> int:
        counts = {"user": 0, "assistant": 0, "exchanges": 0}
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            base = self._in_range(
                Message.objects.filter(conversation_id__in=chunk, text_deleted_at__isnull=True)
            )
            counts["user"] += base.filter(role=Message.Role.USER).count()
            replies = base.filter(role=Message.Role.ASSISTANT, status__in=LABELLABLE_REPLY)
            counts["assistant"] += replies.count()
            counts["exchanges"] += replies.filter(parent__role=Message.Role.USER).count()
        return sum(count_units(d.scope, conversations=len(ids), **counts) for d in self.definitions)

    # judge plumbing

    def target_for(self, judge: Judge) -> judge_mod.Target:
        if judge not in self.targets:
            # Resolved here, right before the calls: registration can change while a study runs.
            endpoint = endpoint_resolve(name=judge.endpoint, model=judge.model)
            key = (
                ""
                if endpoint.is_simulated
                else api_key_read(endpoint.provider_config(), endpoint.kind)
            )
            self.targets[judge] = judge_mod.Target(
                endpoint=endpoint.name,
                kind=endpoint.kind,
                base_url=endpoint.base_url,
                model=judge.model,
                api_key=key,
                timeout_s=float(getattr(settings, "CLASSIFIER_JUDGE_TIMEOUT_SECONDS", 60)),
                max_retries=int(getattr(settings, "CLASSIFIER_JUDGE_MAX_RETRIES", 3)),
                backoff_s=float(getattr(settings, "CLASSIFIER_JUDGE_BACKOFF_SECONDS", 0.5)),
            )
        return self.targets[judge]

    def client_for(self, target: judge_mod.Target):
        if target.kind == "simulated":
            return None
        if target.endpoint not in self.clients:
            self.clients[target.endpoint] = judge_mod.new_client(target, self.concurrency)
        return self.clients[target.endpoint]

    def close(self) -> None:
        for client in self.clients.values():
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(client.aclose(), self.loop).result(timeout=10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.loop_thread.join(timeout=10)
        self.loop.close()

    # the work

    def execute(self) -> str:
        ids, people = self.select()
        total = self.count_total(ids)
        self.lease.require(units_total=total)
        self.total = max(total, 1)
        for start in range(0, len(ids), CONVERSATION_BATCH):
            batch = ids[start : start + CONVERSATION_BATCH]
            units = self._units(batch, people)
            # Classifiers of one gate depth are independent: their judge calls share one
            # fan-out. Children wait for their parents' labels (the next tier).
            for tier in self.tiers:
                to_ask = []
                for definition in tier:
                    to_ask += self._classify(definition, units[definition.key])
                for judge in dict.fromkeys(d.judge for d, _ in to_ask):
                    self._ask([item for item in to_ask if item[0].judge == judge])
                    if self.budget.exhausted:
                        return "budget"
        return "done"

    @property
    def tiers(self) -> list[list[Definition]]:
        depth: dict[str, int] = {}
        for d in self.definitions:  # protocol order puts parents first (validated)
            depth[d.key] = depth[d.gate_parent] + 1 if d.gate_parent else 0
        return [
            [d for d in self.definitions if depth[d.key] == level]
            for level in range(max(depth.values(), default=-1) + 1)
        ]

    def _units(
        self, batch: list[int], people: dict[int, Participant]
    ) -> dict[str, list[tuple[Unit, int, str]]]:
        conversations = {
            c.pk: c
            for c in Conversation.objects.filter(pk__in=batch).only(
                "pk", "participant_id", "active_leaf_id"
            )
        }
        # With dates, a unit is labelled when its target message is in range; its context
        # (earlier turns) may be older.
        in_range = (
            set(
                self._in_range(Message.objects.filter(conversation_id__in=batch)).values_list(
                    "pk", flat=True
                )
            )
            if self.dated
            else None
        )
        turns = conversation_turns(conversations, anonymize=self.params.get("text") == "anonymized")
        out: dict[str, list[tuple[Unit, int, str]]] = {d.key: [] for d in self.definitions}
        for pk in batch:
            conversation = conversations[pk]
            person = people[conversation.participant_id]
            for definition in self.definitions:
                for unit in units_for(
                    definition.scope,
                    pk,
                    turns[pk],
                    window_turns=definition.window_turns,
                    active_leaf_id=conversation.active_leaf_id,
                ):
                    outside = in_range is not None and unit.message_id is not None
                    if outside and unit.message_id not in in_range:
                        continue
                    out[definition.key].append((unit, person.pk, person.language or "en"))
        return out

    def _classify(
        self, definition: Definition, units: list[tuple[Unit, int, str]]
    ) -> list[tuple[Definition, _Pending]]:
        """Store what needs no judge call (unchanged, copied, gated out); return the rest."""
        if not units:
            return []
        judge = definition.judge
        assert judge is not None  # the protocol validator requires one
        labels = ClassifierLabel.objects.filter(
            classifier_key=definition.key,
            classifier_version=definition.version,
            judge_endpoint=judge.endpoint,
            judge_model=judge.model,
        )
        keys = [u.target_key for u, _, _ in units]
        existing = {
            row[0]: row[1:]
            for row in labels.filter(target_key__in=keys).values_list(
                "target_key", "content_hash", "run_id"
            )
        }
        gate_answers: dict[str, str] = {}
        if definition.gate_parent:
            parent = self.by_key[definition.gate_parent]
            gate_answers = dict(
                ClassifierLabel.objects.filter(
                    classifier_key=parent.key,
                    classifier_version=parent.version,
                    judge_endpoint=parent.judge.endpoint,
                    judge_model=parent.judge.model,
                    target_key__in=keys,
                ).values_list("target_key", "label")
            )
        pending: list[_Pending] = []
        copies: list[tuple[_Pending, str, str]] = []
        gated: list[_Pending] = []
        unchanged = reused = 0
        for unit, participant_id, language in units:
            gate_answer = ""
            if definition.gate_parent:
                if unit.target_key not in gate_answers:
                    continue  # the parent has no answer yet (budget or judge error): not now
                gate_answer = gate_answers[unit.target_key] or "-"
            digest = content_hash(definition, language, gate_answer, unit)
            stored = existing.get(unit.target_key)
            if stored is not None and stored[0] == digest:
                unchanged += 1
                # Labelled before this run: a call saved. Labelled by this run before a
                # takeover: already counted when it was paid for.
                reused += stored[1] != self.run.pk
                continue
            system, user = judge_mod.build_prompt(definition, language, unit.turns)
            item = _Pending(
                unit=unit,
                participant_id=participant_id,
                language=language,
                content_hash=digest,
                request=judge_mod.Request(
                    key=next(self.request_keys),
                    system=system,
                    user=user,
                    codes=definition.codes,
                    generation=definition.generation_settings(),
                ),
            )
            if definition.gate_parent and gate_answer not in definition.gate_levels:
                gated.append(item)
            else:
                pending.append(item)
        # The same question about the same text, answered for another target: copy it.
        cached = {}
        hashes = [p.content_hash for p in pending]
        for start in range(0, len(hashes), 500):
            cached.update(
                {
                    h: (outcome, label)
                    for h, outcome, label in ClassifierLabel.objects.filter(
                        definition_hash=definition.definition_hash,
                        judge_endpoint=judge.endpoint,
                        judge_model=judge.model,
                        content_hash__in=hashes[start : start + 500],
                        outcome__in=(
                            ClassifierLabel.Outcome.LABEL,
                            ClassifierLabel.Outcome.UNPARSEABLE,
                        ),
                    ).values_list("content_hash", "outcome", "label")
                }
            )
        to_ask = []
        for item in pending:
            if item.content_hash in cached:
                copies.append((item, *cached[item.content_hash]))
            else:
                to_ask.append(item)
        now = timezone.now()
        rows = [
            self._row(definition, p, outcome, label, now, from_cache=True)
            for p, outcome, label in copies
        ]
        rows += [
            self._row(definition, p, ClassifierLabel.Outcome.GATED_OUT, "", now) for p in gated
        ]
        self._store(
            rows,
            done=unchanged + len(rows),
            cache_hits=reused + len(copies),
            gated_out=len(gated),
        )
        return [(definition, item) for item in to_ask]

    def _ask(self, to_ask: list[tuple[Definition, _Pending]]) -> None:
        """Send `to_ask` to the judge from the run's event-loop thread, `concurrency` at a time,
        and store outcomes here as they arrive (every chunk), so the judge never waits for the
        database and a dead worker loses only what was in flight or not yet stored."""
        target = self.target_for(to_ask[0][0].judge)
        by_key = {p.request.key: (d, p) for d, p in to_ask}
        arrived: queue.SimpleQueue[judge_mod.Outcome] = queue.SimpleQueue()
        chunk_size = max(self.concurrency * 4, CHUNK_MIN)
        # At most two chunks answered but not stored: what a killed worker can lose.
        admit = asyncio.Semaphore(2 * chunk_size)
        future = asyncio.run_coroutine_threadsafe(
            judge_mod.judge_many(
                [p.request for _, p in to_ask],
                target,
                budget=self.budget,
                concurrency=self.concurrency,
                client=self.client_for(target),
                on_outcome=arrived.put,
                admit=admit,
            ),
            self.loop,
        )
        buffer: list[judge_mod.Outcome] = []
        last_write = time.monotonic()
        try:
            while True:
                with contextlib.suppress(queue.Empty):
                    buffer.append(arrived.get(timeout=0.2))
                finished = future.done() and arrived.empty()
                quiet = time.monotonic() - last_write
                if len(buffer) >= chunk_size or (buffer and (finished or quiet > FLUSH_SECONDS)):
                    self._store_outcomes([(*by_key[o.key], o) for o in buffer])
                    for _ in buffer:
                        self.loop.call_soon_threadsafe(admit.release)
                    buffer = []
                    last_write = time.monotonic()
                    fault_injection_pause()
                elif quiet > HEARTBEAT_SECONDS:
                    # A slow judge: keep the lease while waiting for answers.
                    self.lease.require()
                    last_write = time.monotonic()
                if finished:
                    break
            future.result()  # JudgeRejected and other failures of the fan-out surface here
        finally:
            if not future.done():
                # This worker is stopping (lease lost, killed, failed): send nothing more.
                self.budget.cancelled = True
                future.cancel()

    def _row(
        self,
        definition: Definition,
        item: _Pending,
        outcome: str,
        label: str,
        now: dt.datetime,
        *,
        from_cache: bool = False,
        result: judge_mod.Outcome | None = None,
    ) -> ClassifierLabel:
        return ClassifierLabel(
            study_id=self.run.study_id,
            participant_id=item.participant_id,
            conversation_id=item.unit.conversation_id,
            message_id=item.unit.message_id,
            target_key=item.unit.target_key,
            scope=definition.scope,
            classifier_key=definition.key,
            classifier_version=definition.version,
            definition_hash=definition.definition_hash,
            judge_endpoint=definition.judge.endpoint,
            judge_model=definition.judge.model,
            content_hash=item.content_hash,
            anonymized=self.params.get("text") == "anonymized",
            outcome=outcome,
            label=label,
            judge_calls=result.calls if result else 0,
            prompt_tokens=result.prompt_tokens if result else 0,
            completion_tokens=result.completion_tokens if result else 0,
            from_cache=from_cache,
            run_id=self.run.pk,
            labelled_at=now,
        )

    def _store_outcomes(
        self, results: list[tuple[Definition, _Pending, judge_mod.Outcome]]
    ) -> None:
        now = timezone.now()
        rows = []
        errors = []
        calls = prompt = completion = unparseable = failed = 0
        for definition, item, result in results:
            calls += result.calls
            prompt += result.prompt_tokens
            completion += result.completion_tokens
            if result.status == "label":
                rows.append(self._row(definition, item, "label", result.label, now, result=result))
            elif result.status == "unparseable":
                unparseable += 1
                rows.append(
                    self._row(
                        definition,
                        item,
                        ClassifierLabel.Outcome.UNPARSEABLE,
                        "",
                        now,
                        result=result,
                    )
                )
            elif result.status == "error":
                failed += 1
                errors.append(f"{definition.ref} {item.unit.target_key}: {result.error}")
        self._store(
            rows,
            done=len(rows) + failed,
            judge_calls=calls,
            prompt_tokens=prompt,
            completion_tokens=completion,
            unparseable=unparseable,
            judge_errors=failed,
            errors=errors,
        )

    def _store(
        self, rows: list[ClassifierLabel], *, done: int, errors: list[str] = (), **counts: int
    ) -> None:
        self.units_done += done
        fields: dict[str, Any] = {name: F(name) + value for name, value in counts.items() if value}
        fields["units_done"] = self.units_done
        fields["progress"] = min(99, self.units_done * 100 // self.total)
        if errors:
            self.run.recent_errors = (list(self.run.recent_errors) + list(errors))[-20:]
            fields["recent_errors"] = self.run.recent_errors
        with transaction.atomic():
            # Ownership first: a worker whose run was taken over writes nothing more.
            self.lease.require(**fields)
            if rows:
                ClassifierLabel.objects.bulk_create(
                    rows,
                    update_conflicts=True,
                    unique_fields=[
                        "classifier_key",
                        "classifier_version",
                        "judge_endpoint",
                        "judge_model",
                        "target_key",
                    ],
                    update_fields=[
                        "definition_hash",
                        "content_hash",
                        "anonymized",
                        "outcome",
                        "label",
                        "judge_calls",
                        "prompt_tokens",
                        "completion_tokens",
                        "from_cache",
                        "run",
                        "labelled_at",
                    ],
                )


def conversation_turns(
    conversations: Mapping[int, Conversation], *, anonymize: bool
) -> dict[int, list[Turn]]:
    """The labellable turns of each conversation (user messages and finished replies with text,
    in order), anonymized with the export anonymizer when asked: what a judge reads, and what
    a coder is shown of the same unit (studyplatform/classifiers/coding.py)."""
    batch = list(conversations)
    rows = (
        Message.objects.filter(
            conversation_id__in=batch,
            role__in=(Message.Role.USER, Message.Role.ASSISTANT),
            text_deleted_at__isnull=True,
        )
        .exclude(role=Message.Role.ASSISTANT, status__in=_unfinished())
        .order_by("conversation_id", "created_at", "pk")
        .only("pk", "conversation_id", "parent_id", "role", "content", "created_at")
    )
    scrub = (
        text_anonymizers(sorted({c.participant_id for c in conversations.values()}))
        if anonymize
        else {}
    )
    turns: dict[int, list[Turn]] = {pk: [] for pk in batch}
    for m in rows:
        text = m.content or ""
        if not text.strip():
            continue
        if anonymize:
            text = scrub[conversations[m.conversation_id].participant_id](text)
        turns[m.conversation_id].append(Turn(m.pk, m.parent_id, m.role, text))
    return turns


def _unfinished() -> tuple[str, ...]:
    return tuple(s for s in Message.Status.values if s not in LABELLABLE_REPLY)


def classification_run_execute(*, run: ClassificationRun, lease: Lease) -> ClassificationRun:
    """Label everything the run selected (see the module docstring); finish it done, stopped
    (budget reached) or failed, with an audit event either way."""
    runner = None
    try:
        runner = _Runner(run, lease)
        result = runner.execute()
    except LeaseLost:
        log.info("classification run %s: lease lost, leaving it to its new owner", run.pk)
        return run
    except (
        judge_mod.JudgeRejected,
        EndpointUnavailable,
        ApiKeyUnavailable,
        AnonymizerMissing,
        RunRefused,
    ) as exc:
        _finish_failed(run, lease, str(exc))
        return run
    except Exception as exc:
        log.exception("classification run %s failed", run.pk)
        _finish_failed(run, lease, f"internal error ({type(exc).__name__}); see the worker log")
        return run
    finally:
        if runner is not None:
            runner.close()
    run.refresh_from_db()
    if result == "budget":
        reason = _budget_reason(run)
        finished = lease.finish(
            status=ClassificationRun.Status.STOPPED, stop_reason=reason, progress=run.progress
        )
    else:
        finished = lease.finish(status=ClassificationRun.Status.DONE, progress=100)
    run.refresh_from_db()
    if finished:
        _audit_finish(run)
    return run


def _budget_reason(run: ClassificationRun) -> str:
    params = run.params
    parts = []
    if params.get("max_judge_calls") is not None:
        parts.append(f"{run.judge_calls} of {params['max_judge_calls']} judge calls")
    if params.get("max_tokens") is not None:
        parts.append(f"{run.tokens} of {params['max_tokens']} tokens")
    return "Budget reached (" + ", ".join(parts) + "); labels so far are kept."


def _finish_failed(run: ClassificationRun, lease: Lease, error: str) -> None:
    if lease.fail(error):
        run.refresh_from_db()
        _audit_finish(run)


def _audit_finish(run: ClassificationRun) -> None:
    audit_record(
        actor=None,
        action=f"classification_run.{run.status}",
        target=run,
        study_slug=run.study.slug,
        data={
            "judge_calls": run.judge_calls,
            "tokens": run.tokens,
            "cache_hits": run.cache_hits,
            "units_done": run.units_done,
            "unparseable": run.unparseable,
            "judge_errors": run.judge_errors,
            "skipped_participants": run.skipped_participants,
            "error": run.error[:300],
            "stop_reason": run.stop_reason,
        },
    )
