"""Classification runs end to end: real chat rows, the real run service and task, and the loopback
fake upstream as the judge, scripted per message with directives in the message text
(``[[reply: yes]]``: the judge answers "yes" about the excerpt containing it)."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from studyplatform.classifiers.models import ClassificationRun, ClassifierLabel
from studyplatform.classifiers.services import (
    RunRefused,
    classification_run_claim,
    classification_run_create,
)
from studyplatform.classifiers.tasks import classification_run_task
from studyplatform.core.models import AuditEvent
from studyplatform.studies.services import protocol_version_create
from tests.classifiers.conftest import CONSENTING, JUDGE_MODEL, REFUSING

pytestmark = pytest.mark.django_db

BUDGET = {"max_judge_calls": 1000}


def start(study, user, **data) -> ClassificationRun:
    return classification_run_create(
        study=study, created_by=user, data={**BUDGET, **data}, enqueue=False
    )


def execute(run: ClassificationRun) -> ClassificationRun:
    # The Celery task itself, in this process: claim (lease), execute, finish.
    classification_run_task(run.pk)
    run.refresh_from_db()
    return run


def labels(key: str = "loneliness") -> dict[int, tuple[str, str]]:
    return {
        row.message_id: (row.outcome, row.label)
        for row in ClassifierLabel.objects.filter(classifier_key=key)
    }


def judge_bodies(upstream) -> list[dict]:
    return [body for body in upstream.requests if "messages" in body]


def test_it_labels_each_user_message_with_the_judges_answer(
    classified_study, enroll, chat, upstream, owner
):
    # given: a consenting participant with two exchanges
    person = enroll(classified_study, choices=CONSENTING)
    first, _, second, _ = chat(
        person,
        [
            "I have nobody to talk to [[reply: yes]]",
            "I hear you.",
            "Nice day [[reply: no]]",
            "Yes!",
        ],
    )
    # when
    run = execute(start(classified_study, owner))
    # then: one judge call per user message, each label the judge's answer
    assert run.status == ClassificationRun.Status.DONE
    assert labels() == {first.pk: ("label", "yes"), second.pk: ("label", "no")}
    assert run.judge_calls == 2 and run.units_done == 2 and run.progress == 100
    body = judge_bodies(upstream)[0]
    assert body["model"] == JUDGE_MODEL
    assert body["temperature"] == 0 and body["seed"] == 20250101
    # the question is the shipped one, and the excerpt is the participant's text only
    assert "loneliness" in body["messages"][0]["content"]
    assert body["messages"][1]["content"].startswith("User: I have nobody to talk to")
    assert AuditEvent.objects.filter(action="classification_run.created").count() == 1
    assert AuditEvent.objects.filter(action="classification_run.done").count() == 1


def test_an_unchanged_rerun_makes_no_judge_call(classified_study, enroll, chat, upstream, owner):
    # given: a run that labelled three messages
    person = enroll(classified_study, choices=CONSENTING)
    chat(person, ["alone [[reply: yes]]", "ok", "fine [[reply: no]]", "ok", "hm [[reply: no]]"])
    execute(start(classified_study, owner))
    calls_before = len(judge_bodies(upstream))
    # when: the same selection runs again
    rerun = execute(start(classified_study, owner))
    # then: nothing is paid twice
    assert len(judge_bodies(upstream)) == calls_before == 3
    assert rerun.judge_calls == 0 and rerun.cache_hits == 3 and rerun.units_done == 3
    assert rerun.status == ClassificationRun.Status.DONE


def test_only_new_messages_and_changed_classifier_versions_are_relabelled(
    make_classified_study, enroll, chat, upstream, owner, rct_doc
):
    # given: a custom classifier at version 1 next to a shipped one, both run once
    custom = {
        "key": "thanks",
        "version": 1,
        "title": {"en": "Thanks", "pt-BR": "Agradecimento"},
        "scope": "user_message",
        "question": {"en": "Does the user thank the assistant?", "pt-BR": "O usuário agradece?"},
        "output": {
            "type": "binary",
            "levels": [
                {"code": "yes", "label": {"en": "Yes", "pt-BR": "Sim"}},
                {"code": "no", "label": {"en": "No", "pt-BR": "Não"}},
            ],
        },
        "source": "Project test classifier.",
    }
    study = make_classified_study(["loneliness@1", custom])
    person = enroll(study, choices=CONSENTING)
    chat(person, ["one [[reply: no]]", "ok", "two [[reply: no]]"])
    execute(start(study, owner))
    assert len(judge_bodies(upstream)) == 4
    # when: version 2 only corrects the title (the judge sees the same question)...
    doc = dict(study.current_version.content)
    doc["classifiers"] = {
        **doc["classifiers"],
        "run": ["loneliness@1", {**custom, "version": 2, "title": {"en": "Thanking"}}],
    }
    protocol_version_create(study=study, doc=doc, author=owner, change_note="title")
    study.refresh_from_db()
    run2 = execute(start(study, owner))
    # then: its labels are copied, not paid for again
    assert run2.judge_calls == 0 and run2.cache_hits == 4
    assert (
        ClassifierLabel.objects.filter(classifier_key="thanks", classifier_version=2).count() == 2
    )
    # when: version 3 asks a different question, and the participant wrote one more message
    changed = {
        **custom,
        "version": 3,
        "question": {"en": "Is the user grateful?", "pt-BR": "Grato?"},
    }
    doc["classifiers"] = {**doc["classifiers"], "run": ["loneliness@1", changed]}
    protocol_version_create(study=study, doc=doc, author=owner, change_note="question")
    study.refresh_from_db()
    chat(person, ["three [[reply: no]]"])
    run3 = execute(start(study, owner))
    # then: the changed classifier asks again about all three messages; loneliness only about
    # the new one
    assert run3.judge_calls == 3 + 1
    assert run3.cache_hits == 2


def test_a_malformed_answer_is_asked_again_then_labelled_unparseable(
    classified_study, enroll, chat, upstream, owner
):
    # given: one message the judge answers with prose, one it answers badly once
    person = enroll(classified_study, choices=CONSENTING)
    [prose] = chat(person, ["hello [[reply: Probably yes, the user seems lonely]]"])
    # when
    run = execute(start(classified_study, owner))
    # then: asked twice, and no label was guessed from the prose
    assert labels() == {prose.pk: ("unparseable", "")}
    assert run.judge_calls == 2 and run.unparseable == 1
    # given: a new message whose first answer is garbage and second is a code
    [retry] = chat(person, ["I feel alone [[reply: yes]]"])
    upstream.script(count=1, reply="{not json")
    # when
    run = execute(start(classified_study, owner))
    # then: the second answer counts
    assert labels()[retry.pk] == ("label", "yes")
    assert run.judge_calls == 2  # garbage + the retry; the unparseable one was cached


@pytest.mark.parametrize(
    "answer,label",
    [('{"label": "yes"}', "yes"), ("No.", "no"), ('"yes"', "yes"), ("YES", "yes")],
)
def test_answers_in_accepted_forms_are_parsed(
    classified_study, enroll, chat, upstream, owner, answer, label
):
    person = enroll(classified_study, choices=CONSENTING)
    [message] = chat(person, ["text"])
    upstream.script(count=1, reply=answer)
    execute(start(classified_study, owner))
    assert labels() == {message.pk: ("label", label)}


def test_a_gate_asks_the_finer_classifier_only_where_the_parent_opens_it(
    make_classified_study, enroll, chat, upstream, owner
):
    # given: a finer classifier under affection_user, opened by "yes"
    finer = {
        "key": "pet_names",
        "version": 1,
        "title": {"en": "Pet names"},
        "scope": "user_message",
        "question": {"en": "Does the user use a pet name?", "pt-BR": "Usa apelido carinhoso?"},
        "output": {
            "type": "binary",
            "levels": [
                {"code": "yes", "label": {"en": "Yes", "pt-BR": "Sim"}},
                {"code": "no", "label": {"en": "No", "pt-BR": "Não"}},
            ],
        },
        "gate": {"classifier": "affection_user", "levels": ["yes"]},
        "source": "Project test classifier.",
    }
    study = make_classified_study(["affection_user@1", finer])
    person = enroll(study, choices=CONSENTING)
    warm, _, cold = chat(
        person, ["love you honey [[reply: yes]]", "aw", "what time is it [[reply: no]]"]
    )
    # when
    run = execute(start(study, owner))
    # then: the parent is asked about both, the child only about the affectionate one
    assert labels("affection_user") == {warm.pk: ("label", "yes"), cold.pk: ("label", "no")}
    assert labels("pet_names") == {warm.pk: ("label", "yes"), cold.pk: ("gated_out", "")}
    assert run.judge_calls == 3 and run.gated_out == 1


def test_the_budget_stops_the_run_and_keeps_what_was_labelled(
    classified_study, enroll, chat, upstream, owner
):
    # given: five messages and a budget of two judge calls
    person = enroll(classified_study, choices=CONSENTING)
    chat(person, [f"message {i} [[reply: no]]" if i % 2 == 0 else "ok" for i in range(9)])
    # when
    run = execute(start(classified_study, owner, max_judge_calls=2, concurrency=1))
    # then: stopped, two labels, never a third call
    assert run.status == ClassificationRun.Status.STOPPED
    assert "2 of 2 judge calls" in run.stop_reason
    assert len(judge_bodies(upstream)) == 2 == run.judge_calls
    assert ClassifierLabel.objects.count() == 2
    # when: a second run with room for the rest
    second = execute(start(classified_study, owner, max_judge_calls=10))
    # then: it pays only for the three not labelled yet
    assert second.status == ClassificationRun.Status.DONE
    assert second.judge_calls == 3 and second.cache_hits == 2
    assert ClassifierLabel.objects.count() == 5


def test_a_token_budget_stops_the_run(classified_study, enroll, chat, upstream, owner):
    person = enroll(classified_study, choices=CONSENTING)
    chat(person, ["a [[reply: no]]", "ok", "b [[reply: no]]", "ok", "c [[reply: no]]"])
    run = execute(start(classified_study, owner, max_judge_calls=None, max_tokens=1, concurrency=1))
    # the first answer's tokens exceed the budget: nothing more is sent
    assert run.status == ClassificationRun.Status.STOPPED
    assert run.judge_calls == 1 and "tokens" in run.stop_reason


def test_text_of_a_participant_who_did_not_consent_never_leaves(
    classified_study, enroll, chat, upstream, owner
):
    # given: one participant ticked the classification checkbox, one did not
    yes = enroll(classified_study, choices=CONSENTING)
    no = enroll(classified_study, choices=REFUSING)
    chat(yes, ["consented text [[reply: no]]"])
    chat(no, ["private words of the refusing participant"])
    # when
    run = execute(start(classified_study, owner))
    # then
    sent = " ".join(str(body) for body in upstream.requests)
    assert "consented text" in sent
    assert "private words" not in sent
    assert run.skipped_participants == 1 and run.judge_calls == 1
    assert not ClassifierLabel.objects.filter(participant=no).exists()


def test_a_protocol_that_does_not_allow_sending_text_refuses_the_run(make_classified_study, owner):
    study = make_classified_study(send_to_judge=False)
    with pytest.raises(RunRefused) as refused:
        start(study, owner)
    assert "send_to_judge is false" in refused.value.errors["classifiers"]
    assert not ClassificationRun.objects.exists()


def test_anonymized_text_is_sent_instead_of_the_raw_text(
    make_classified_study, enroll, chat, upstream, owner
):
    # given: a message naming the participant (the name she signed consent with) and her email
    study = make_classified_study(text="anonymized")
    person = enroll(study, choices=CONSENTING, email="ana.souza@example.org")
    chat(person, ["I am Ana Souza, write to ana.souza@example.org [[reply: no]]"])
    # when
    run = execute(start(study, owner))
    # then: the judge read placeholders, and the label says so
    excerpt = judge_bodies(upstream)[0]["messages"][1]["content"]
    assert "Ana Souza" not in excerpt and "ana.souza@example.org" not in excerpt
    assert "[PERSON_1]" in excerpt and "[EMAIL_1]" in excerpt
    assert run.status == ClassificationRun.Status.DONE
    assert ClassifierLabel.objects.get().anonymized is True


def test_transient_judge_errors_are_retried(classified_study, enroll, chat, upstream, owner):
    person = enroll(classified_study, choices=CONSENTING)
    [message] = chat(person, ["alone again [[fault: 503 times: 2]] [[reply: yes]]"])
    run = execute(start(classified_study, owner))
    assert labels() == {message.pk: ("label", "yes")}
    assert run.judge_calls == 3 and run.judge_errors == 0


def test_a_judge_that_keeps_failing_leaves_the_target_unlabelled_and_says_so(
    classified_study, enroll, chat, upstream, owner, settings
):
    settings.CLASSIFIER_JUDGE_MAX_RETRIES = 1
    person = enroll(classified_study, choices=CONSENTING)
    chat(person, ["never answered [[fault: 500]]"])
    run = execute(start(classified_study, owner))
    assert run.status == ClassificationRun.Status.DONE
    assert run.judge_errors == 1 and run.judge_calls == 2
    assert "HTTP 500" in run.recent_errors[0]
    assert not ClassifierLabel.objects.exists()


def test_a_judge_refusing_the_request_fails_the_run_with_a_reason(
    classified_study, enroll, chat, upstream, owner
):
    person = enroll(classified_study, choices=CONSENTING)
    chat(person, ["hello [[fault: 401]]"])
    run = execute(start(classified_study, owner))
    assert run.status == ClassificationRun.Status.FAILED
    assert "refused the request (HTTP 401" in run.error
    assert "127.0.0.1" not in run.error
    assert AuditEvent.objects.filter(action="classification_run.failed").count() == 1


def test_a_run_resumes_after_its_worker_died_without_paying_twice(
    classified_study, enroll, chat, upstream, owner, settings, monkeypatch
):
    # given: six messages; a worker that dies (process killed) after storing its first chunk
    person = enroll(classified_study, choices=CONSENTING)
    turns = []
    for i in range(6):
        turns += [f"m{i} [[reply: no]]", "ok"]
    chat(person, turns)
    run = start(classified_study, owner, concurrency=1)
    from studyplatform.classifiers import services

    class WorkerKilled(BaseException):
        """Stands in for SIGKILL: nothing after it runs, no except clause catches it."""

    monkeypatch.setattr(services, "CHUNK_MIN", 2)
    stored = {"chunks": 0}
    real_pause = services.fault_injection_pause

    def die_after_first_chunk():
        stored["chunks"] += 1
        if stored["chunks"] == 1:
            raise WorkerKilled
        real_pause()

    monkeypatch.setattr(services, "fault_injection_pause", die_after_first_chunk)
    lease = classification_run_claim(run.pk, owner="worker-1")
    with pytest.raises(WorkerKilled):
        services.classification_run_execute(run=run, lease=lease)
    run.refresh_from_db()
    assert run.status == ClassificationRun.Status.RUNNING
    assert ClassifierLabel.objects.count() == 4  # first chunk: concurrency 1 x 4
    # (the judge may have answered more that died unstored with the worker)
    asked_before = len(judge_bodies(upstream))
    # when: the lease runs out and the task is delivered again (the lease sweep's re-dispatch)
    ClassificationRun.objects.filter(pk=run.pk).update(
        lease_expires_at=timezone.now() - dt.timedelta(seconds=1)
    )
    run = execute(run)
    # then: done, every message labelled once, and only the two unlabelled ones paid for
    assert run.status == ClassificationRun.Status.DONE and run.attempts == 2
    assert ClassifierLabel.objects.count() == 6
    # the new worker asked only about the two messages without a stored label
    assert len(judge_bodies(upstream)) - asked_before == 2
    # cost: what the dead worker stored (4) and what the new one paid (2); calls whose answers
    # died with the worker are not in the run's count
    assert run.judge_calls == 6
    assert run.cache_hits == 0  # its own labels from before the takeover are not "saved" calls


def test_a_live_workers_run_is_not_taken_over(classified_study, enroll, chat, upstream, owner):
    person = enroll(classified_study, choices=CONSENTING)
    chat(person, ["x [[reply: no]]"])
    run = start(classified_study, owner)
    assert classification_run_claim(run.pk, owner="worker-1") is not None
    # a second delivery while worker-1's lease is live does nothing
    run = execute(run)
    assert run.status == ClassificationRun.Status.RUNNING and run.judge_calls == 0
    assert upstream.requests == []


def test_a_random_sample_of_conversations_is_reproducible(
    classified_study, enroll, chat, upstream, owner
):
    person = enroll(classified_study, choices=CONSENTING)
    for i in range(6):
        chat(person, [f"conversation {i} [[reply: no]]"])
    first = execute(start(classified_study, owner, sample=2, seed=7))
    picked = set(ClassifierLabel.objects.values_list("conversation_id", flat=True))
    ClassifierLabel.objects.all().delete()
    second = execute(start(classified_study, owner, sample=2, seed=7))
    assert first.conversations == second.conversations == 2
    assert set(ClassifierLabel.objects.values_list("conversation_id", flat=True)) == picked


def test_withdrawal_with_deletion_removes_the_participants_labels(
    classified_study, enroll, chat, upstream, owner
):
    from studyplatform.participants.services.withdrawal import participant_withdraw

    leaving = enroll(classified_study, choices=CONSENTING)
    staying = enroll(classified_study, choices=CONSENTING)
    chat(leaving, ["mine [[reply: yes]]"])
    chat(staying, ["theirs [[reply: no]]"])
    execute(start(classified_study, owner))
    assert ClassifierLabel.objects.count() == 2
    participant_withdraw(participant=leaving, mode="delete", by="participant")
    assert list(ClassifierLabel.objects.values_list("participant_id", flat=True)) == [staying.pk]


def test_an_anthropic_judge_gets_a_system_prompt_its_key_and_no_seed(
    make_classified_study, enroll, chat, upstream, owner, register_endpoint, monkeypatch
):
    # given: the judge is an Anthropic-kind endpoint (the fake upstream speaks Messages too)
    monkeypatch.setenv("JUDGE_ANTHROPIC_KEY", "judge-secret")
    register_endpoint(
        "claude-judge",
        kind="anthropic",
        base_url=upstream.anthropic_base_url,
        models=["claude-fake-1"],
        api_key_env="JUDGE_ANTHROPIC_KEY",
        requires_api_key=True,
    )
    study = make_classified_study(judge={"endpoint": "claude-judge", "model": "claude-fake-1"})
    person = enroll(study, choices=CONSENTING)
    [message] = chat(person, ["so alone [[reply: yes]]"])
    # when
    run = execute(start(study, owner))
    # then
    assert labels() == {message.pk: ("label", "yes")}
    [request] = [r for r in upstream.log if r.path.endswith("/v1/messages")]
    assert request.headers.get("x-api-key") == "judge-secret"
    assert "seed" not in request.body and "loneliness" in request.body["system"]
    assert run.judge_calls == 1 and run.prompt_tokens > 0


def test_the_simulated_judge_labels_without_any_request(
    make_classified_study, enroll, chat, upstream, owner
):
    study = make_classified_study(judge={"endpoint": "simulated", "model": "pilot-judge"})
    person = enroll(study, choices=CONSENTING)
    first, _, second = chat(person, ["one", "ok", "two"])
    run = execute(start(study, owner))
    assert run.status == ClassificationRun.Status.DONE and run.judge_calls == 2
    assert {label for _, label in labels().values()} <= {"yes", "no"}
    assert set(labels()) == {first.pk, second.pk}
    assert judge_bodies(upstream) == []
