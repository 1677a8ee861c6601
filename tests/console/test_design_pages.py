"""The protocol designer: permissions, creating studies, YAML editor, section forms, versions,
calendar preview and participant previews."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from studyplatform.console.design import sections
from studyplatform.console.forms import SECTION_FORMSETS
from studyplatform.studies.models import ProtocolVersion, Study
from studyplatform.studies.protocol import to_yaml
from studyplatform.studies.services import study_transition

pytestmark = pytest.mark.django_db


def _encode(value: Any) -> Any:
    if value is None or value is False:
        return None
    if value is True:
        return "on"
    return value


def section_post_data(doc: dict, section: str, rows: list[dict] | None = None, **fields) -> dict:
    """POST data for a section form, as the designer renders it from `doc`, plus overrides."""
    data: dict[str, Any] = {}
    initial = sections.section_initial(doc, section)
    if section in SECTION_FORMSETS:
        rows = rows if rows is not None else initial
        data[f"{section}-TOTAL_FORMS"] = str(len(rows))
        data[f"{section}-INITIAL_FORMS"] = str(len(initial))
        for i, row in enumerate(rows):
            for name, value in row.items():
                encoded = _encode(value)
                if encoded is not None:
                    data[f"{section}-{i}-{name}"] = encoded
    else:
        for name, value in {**initial, **fields}.items():
            encoded = _encode(value)
            if encoded is not None:
                data[f"{section}-{name}"] = encoded
    if section in SECTION_FORMSETS:
        for name, value in fields.items():
            data[f"{section}-{name}"] = value
    return data


@pytest.fixture
def client_as():
    def make(user) -> Client:
        client = Client()
        client.force_login(user)
        return client

    return make


@pytest.fixture
def post_data():
    return section_post_data


def _design(study) -> str:
    return reverse("console:design", args=[study.slug])


PAGES = [
    ("get", "console:design", ()),
    ("get", "console:versions", ()),
    ("get", "console:calendar", ()),
    ("get", "console:preview", ("consent",)),
    ("get", "console:launch", ()),
    ("post", "console:design_section", ("study",)),
    ("post", "console:design_yaml", ()),
    ("post", "console:design_validate", ()),
    ("post", "console:launch_transition", ()),
    ("post", "console:launch_test_models", ()),
    ("post", "console:pilot_invite_create", ()),
    ("post", "console:pilot_reset", ()),
]


@pytest.mark.parametrize(("method", "name", "args"), PAGES)
def test_nobody_sees_another_study(client_as, make_user, study, method, name, args):
    # given: a researcher who is not a member of the study
    outsider = make_user("mallory")
    # when: they open any console page of it
    response = getattr(client_as(outsider), method)(reverse(name, args=[study.slug, *args]))
    # then: the study does not exist for them
    assert response.status_code == 404


@pytest.mark.parametrize(("method", "name", "args"), PAGES)
def test_console_pages_need_sign_in(client, study, method, name, args):
    response = getattr(client, method)(reverse(name, args=[study.slug, *args]))
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


def test_monitor_cannot_save_the_protocol(client_as, member_of, study, post_data):
    monitor = member_of(study, "monitor")
    client = client_as(monitor)
    data = post_data(study.protocol, "study", title="Renamed")
    assert (
        client.post(reverse("console:design_section", args=[study.slug, "study"]), data).status_code
        == 403
    )
    yaml_url = reverse("console:design_yaml", args=[study.slug])
    assert client.post(yaml_url, {"yaml-yaml": to_yaml(study.protocol)}).status_code == 403
    assert client.get(reverse("console:launch", args=[study.slug])).status_code == 403
    assert (
        client.post(
            reverse("console:launch_transition", args=[study.slug]), {"to": "piloting"}
        ).status_code
        == 403
    )
    assert study.versions.count() == 1


def test_analyst_sees_the_designer_read_only(client_as, member_of, study):
    analyst = member_of(study, "analyst")
    response = client_as(analyst).get(_design(study))
    assert response.status_code == 200
    html = response.content.decode()
    assert "your role does not allow changing it" in html
    assert "<fieldset disabled" in html
    assert "Save YAML" not in html
    # the versions page, calendar and previews are readable too
    for name, args in (
        ("console:versions", ()),
        ("console:calendar", ()),
        ("console:preview", ("study",)),
    ):
        assert client_as(analyst).get(reverse(name, args=[study.slug, *args])).status_code == 200


def test_study_list_shows_only_the_users_studies(client_as, owner, study, make_user, rct_doc):
    from studyplatform.studies.services import study_create_from_protocol

    other = make_user("otto")
    rct_doc["study"]["slug"] = "someone-elses"
    study_create_from_protocol(doc=rct_doc, author=other)
    html = client_as(owner).get(reverse("console:study_list")).content.decode()
    assert study.title in html and "someone-elses" not in html
    assert reverse("console:study_new") in html


def test_it_creates_a_study_from_a_template_with_the_creator_as_owner(client_as, make_user):
    # given: a researcher on the new-study page
    ana = make_user("ana")
    client = client_as(ana)
    assert "companion-rct" in client.get(reverse("console:study_new")).content.decode()
    # when: they create a study from the companion-rct template
    response = client.post(
        reverse("console:study_new"),
        {
            "source": "template",
            "template": "companion-rct",
            "slug": "my-trial",
            "title": "My trial",
        },
    )
    # then: the study exists as a draft, they own it, and the designer opens
    study = Study.objects.get(slug="my-trial")
    assert response.status_code == 302 and response["Location"] == _design(study)
    assert study.title == "My trial" and study.status == "draft"
    assert study.memberships.get(user=ana).role == "owner"
    assert study.protocol["arms"][0]["key"] == "legacy"


def test_creating_a_study_with_a_taken_slug_says_so_and_creates_nothing(client_as, owner, study):
    response = client_as(owner).post(
        reverse("console:study_new"),
        {"source": "template", "template": "companion-rct", "slug": study.slug, "title": "Again"},
    )
    assert response.status_code == 400
    assert f"a study called &#x27;{study.slug}&#x27; exists" in response.content.decode()
    assert Study.objects.count() == 1


def test_an_invalid_uploaded_file_lists_errors_with_lines(client_as, make_user, rct_doc):
    from django.core.files.uploadedfile import SimpleUploadedFile

    rct_doc["study"]["slug"] = "uploaded"
    del rct_doc["arms"][1]["model"]["name"]
    upload = SimpleUploadedFile("p.yaml", to_yaml(rct_doc).encode())
    response = client_as(make_user("ana")).post(
        reverse("console:study_new"), {"source": "upload", "file": upload}
    )
    html = response.content.decode()
    assert response.status_code == 400
    lines = to_yaml(rct_doc).splitlines()
    arm = next(i for i, text in enumerate(lines) if text.endswith("key: current"))
    line = next(i for i in range(arm, len(lines)) if lines[i].strip() == "model:") + 1
    assert f"<code>arms[1].model.name</code>: this field is required (line {line})" in html
    assert not Study.objects.exists()


def test_invalid_yaml_shows_errors_with_lines_and_saves_nothing(client_as, owner, study):
    # given: the YAML editor with an unknown endpoint on arm 0
    text = to_yaml(study.protocol).replace("endpoint: openai", "endpoint: openia", 1)
    line = text.splitlines().index("    endpoint: openia") + 1
    # when: it is saved
    response = client_as(owner).post(
        reverse("console:design_yaml", args=[study.slug]), {"yaml-yaml": text}
    )
    # then: the error names the path and line, the text is kept, and no version is created
    html = response.content.decode()
    assert response.status_code == 400
    assert (
        f"<code>arms[0].model.endpoint</code>: no registered endpoint called &#x27;openia&#x27;; "
        f"registered endpoints: openai, simulated (line {line})"
    ) in html
    assert "endpoint: openia" in html
    assert study.versions.count() == 1


def test_yaml_editor_saves_a_valid_document(client_as, owner, study):
    text = to_yaml(study.protocol).replace("target_enrollment: 200", "target_enrollment: 150")
    response = client_as(owner).post(
        reverse("console:design_yaml", args=[study.slug]), {"yaml-yaml": text}
    )
    assert response.status_code == 302
    study.refresh_from_db()
    assert study.current_version.number == 2 and study.target_enrollment == 150


def test_live_validation_reports_errors_with_lines_and_normalizes_valid_yaml(
    client_as, owner, study
):
    url = reverse("console:design_validate", args=[study.slug])
    client = client_as(owner)
    bad = client.post(
        url, {"yaml": "format: studyplatform/v1\nstudy: [oops\n"}, content_type="application/json"
    ).json()
    assert bad["valid"] is False and bad["yaml"] is None
    assert bad["errors"][0]["line"] == 3 and bad["errors"][0]["message"].startswith("invalid YAML")
    good = client.post(
        url, {"yaml": to_yaml(study.protocol)}, content_type="application/json"
    ).json()
    assert good == {"valid": True, "errors": [], "yaml": to_yaml(study.protocol)}
    assert client.post(url, "not json", content_type="application/json").status_code == 400


def test_section_form_on_a_live_study_needs_a_change_note_then_saves_a_version(
    client_as, owner, study, post_data
):
    # given: a piloting (live) study
    study = study_transition(study=study, to="piloting", actor=owner)
    client = client_as(owner)
    url = reverse("console:design_section", args=[study.slug, "study"])
    # when: the study form is saved without a change note
    response = client.post(url, post_data(study.protocol, "study", duration_days=35))
    # then: the note is asked for at its field and nothing is saved
    assert response.status_code == 400
    assert "describe the change (required once a study is live)" in response.content.decode()
    assert study.versions.count() == 1
    # when: it is saved with a note
    response = client.post(
        url, post_data(study.protocol, "study", duration_days=35, change_note="Longer")
    )
    # then: a new version records the change and its note
    assert response.status_code == 302
    version = ProtocolVersion.objects.get(study=study, number=2)
    assert version.change_note == "Longer" and version.content["study"]["duration_days"] == 35
    assert version.status_at_creation == "piloting"


def test_section_form_errors_are_shown_at_the_field_and_nothing_is_saved(
    client_as, owner, study, post_data
):
    rows = sections.section_initial(study.protocol, "arms")
    rows[1]["key"] = rows[0]["key"]
    response = client_as(owner).post(
        reverse("console:design_section", args=[study.slug, "arms"]),
        post_data(study.protocol, "arms", rows=rows),
    )
    html = response.content.decode()
    assert response.status_code == 400
    assert "arms[1].key: duplicate key" in html
    assert (
        'data-field="arms-1-key"'
        in html.split("arms[1].key: duplicate key")[0].rsplit("<div", 1)[-1]
    )
    assert study.versions.count() == 1


def test_section_preview_returns_the_merged_yaml_without_saving(client_as, owner, study, post_data):
    response = client_as(owner).post(
        reverse("console:design_section", args=[study.slug, "study"]) + "?preview=1",
        post_data(study.protocol, "study", title="A new title"),
    )
    body = response.json()
    assert body["valid"] is True and "title: A new title" in body["yaml"]
    assert study.versions.count() == 1


def _weekly_dates(html: str) -> list[str]:
    return re.findall(r'<tr data-entry="weekly">\s*<td>([^<]+)</td>', html)


def test_schedule_form_change_shows_in_versions_diff_and_calendar(
    client_as, owner, study, post_data
):
    client = client_as(owner)
    calendar_url = (
        reverse("console:calendar", args=[study.slug]) + "?enrolled=2025-03-03&tz=America/Sao_Paulo"
    )
    # given: the weekly survey every 7 days from day 7 to day 21
    before = client.get(calendar_url).content.decode()
    assert _weekly_dates(before) == ["Mon 2025-03-10", "Mon 2025-03-17", "Mon 2025-03-24"]
    # when: the schedule form changes it to every 14 days
    rows = sections.section_initial(study.protocol, "schedule")
    weekly = next(r for r in rows if r["key"] == "weekly")
    weekly["every_days"] = 14
    response = client.post(
        reverse("console:design_section", args=[study.slug, "schedule"]),
        post_data(study.protocol, "schedule", rows=rows),
    )
    assert response.status_code == 302
    study.refresh_from_db()
    assert study.protocol["surveys"]["schedule"][1]["rule"]["every_days"] == 14
    # the other fields of the entry are kept as they were
    assert study.protocol["surveys"]["schedule"][1]["conditions"] == ["previous_closed"]
    # then: the calendar lists day 7 and day 21 only
    after = client.get(calendar_url).content.decode()
    assert _weekly_dates(after) == ["Mon 2025-03-10", "Mon 2025-03-24"]
    # and the versions page shows the changed field
    versions = client.get(reverse("console:versions", args=[study.slug])).content.decode()
    assert "<code>surveys.schedule[1].rule.every_days</code>" in versions
    assert "+      every_days: 14" in versions


def test_participant_preview_renders_consent_in_portuguese_read_only(client_as, owner, study):
    response = client_as(owner).get(
        reverse("console:preview", args=[study.slug, "consent"]) + "?lang=pt-br"
    )
    html = response.content.decode()
    assert response.status_code == 200
    assert "Consentimento para participar" in html
    assert "Li estas informações e concordo em participar." in html
    assert "Preview (read-only)" in html or "somente leitura" in html
    assert response["X-Frame-Options"] == "SAMEORIGIN"


def test_participant_preview_of_the_screener_writes_nothing(client_as, owner, study):
    from studyplatform.participants.models import FunnelCount

    client = client_as(owner)
    for page in ("study", "screener"):
        assert client.get(reverse("console:preview", args=[study.slug, page])).status_code == 200
    assert (
        "How old are you?"
        in client.get(reverse("console:preview", args=[study.slug, "screener"])).content.decode()
    )
    assert client.post(reverse("console:preview", args=[study.slug, "screener"])).status_code == 405
    assert not FunnelCount.objects.exists()


# --- allocation and limits sections ---------------------------------------------------------------


def _section_url(study, section: str) -> str:
    return reverse("console:design_section", args=[study.slug, section])


def _field_of(html: str, text: str) -> str:
    """The data-field of the form field whose error list shows `text`."""
    before = html.split(text)[0].rsplit('<div class="field', 1)[-1]
    return re.search(r'data-field="([^"]+)"', before)[1]


def test_designer_shows_allocation_and_limits_with_current_values(client_as, owner, study):
    html = client_as(owner).get(_design(study)).content.decode()
    assert 'id="section-allocation"' in html and 'id="section-limits"' in html
    assert re.search(r'<option value="stratified_blocks" selected>', html)
    assert 'name="allocation-block_sizes" value="2, 4"' in html
    assert 'name="allocation-strata" value="gender"' in html
    assert 'name="limits-max_message_chars" value="4000"' in html
    assert "Save Randomization" in html and "Save Chat limits" in html


def test_saving_allocation_creates_a_version_with_the_values(client_as, owner, study, post_data):
    # given: the allocation form changed to permuted blocks of 4 and 6, disclosed
    data = post_data(
        study.protocol,
        "allocation",
        method="permuted_blocks",
        block_sizes="4, 6",
        strata="",
        disclose_to_participant=True,
    )
    # when: it is saved
    response = client_as(owner).post(_section_url(study, "allocation"), data)
    # then: a new version holds exactly those values
    assert response.status_code == 302
    assert response["Location"].endswith("#section-allocation")
    version = ProtocolVersion.objects.get(study=study, number=2)
    assert version.content["allocation"] == {
        "method": "permuted_blocks",
        "block_sizes": [4, 6],
        "disclose_to_participant": True,
    }


def test_saving_limits_creates_a_version_with_the_values(client_as, owner, study, post_data):
    data = post_data(
        study.protocol,
        "limits",
        messages_per_minute=5,
        tokens_per_day=50000,
        max_message_chars=2000,
    )
    response = client_as(owner).post(_section_url(study, "limits"), data)
    assert response.status_code == 302
    version = ProtocolVersion.objects.get(study=study, number=2)
    assert version.content["limits"] == {
        "messages_per_minute": 5,
        "tokens_per_day": 50000,
        "max_message_chars": 2000,
    }


def test_emptying_limits_drops_the_section_so_the_defaults_apply(
    client_as, owner, study, post_data
):
    data = post_data(
        study.protocol, "limits", messages_per_minute="", tokens_per_day="", max_message_chars=""
    )
    assert client_as(owner).post(_section_url(study, "limits"), data).status_code == 302
    study.refresh_from_db()
    assert "limits" not in study.protocol and study.current_version.number == 2


@pytest.mark.parametrize("section", ["allocation", "limits"])
def test_saving_an_untouched_section_creates_no_version(
    client_as, owner, study, post_data, section
):
    response = client_as(owner).post(
        _section_url(study, section), post_data(study.protocol, section)
    )
    assert response.status_code == 302
    assert study.versions.count() == 1


@pytest.mark.parametrize(
    ("section", "fields", "field", "message"),
    [
        (
            "allocation",
            {"block_sizes": "2, 3"},
            "allocation-block_sizes",
            "allocation.block_sizes[1]: must be a multiple of the arms&#x27; total weight (2)",
        ),
        (
            "allocation",
            {"block_sizes": "2, four"},
            "allocation-block_sizes",
            "Write block sizes as whole numbers, e.g. 2, 4.",
        ),
        (
            "allocation",
            {"strata": "gender, shoe_size"},
            "allocation-strata",
            "allocation.strata[1]: no screener question with key &#x27;shoe_size&#x27;",
        ),
        (
            "limits",
            {"messages_per_minute": -5},
            "limits-messages_per_minute",
            "Ensure this value is greater than or equal to 1.",
        ),
        (
            "limits",
            {"tokens_per_day": 0},
            "limits-tokens_per_day",
            "Ensure this value is greater than or equal to 1.",
        ),
    ],
)
def test_invalid_allocation_or_limits_show_the_error_at_the_field_and_save_nothing(
    client_as, owner, study, post_data, section, fields, field, message
):
    response = client_as(owner).post(
        _section_url(study, section), post_data(study.protocol, section, **fields)
    )
    html = response.content.decode()
    assert response.status_code == 400
    assert message in html
    assert _field_of(html, message) == field
    assert study.versions.count() == 1


def test_allocation_on_a_live_study_needs_a_change_note(client_as, owner, study, post_data):
    study = study_transition(study=study, to="piloting", actor=owner)
    client = client_as(owner)
    url = _section_url(study, "allocation")
    response = client.post(url, post_data(study.protocol, "allocation", block_sizes="4"))
    assert response.status_code == 400
    html = response.content.decode()
    assert _field_of(html, "describe the change") == "allocation-change_note"
    assert study.versions.count() == 1
    response = client.post(
        url, post_data(study.protocol, "allocation", block_sizes="4", change_note="Blocks of 4")
    )
    assert response.status_code == 302
    version = ProtocolVersion.objects.get(study=study, number=2)
    assert version.change_note == "Blocks of 4"
    assert version.content["allocation"]["block_sizes"] == [4]


@pytest.mark.parametrize(
    ("section", "fields"),
    [("allocation", {"method": "simple", "strata": ""}), ("limits", {"tokens_per_day": 1})],
)
def test_monitor_cannot_save_allocation_or_limits(
    client_as, member_of, study, post_data, section, fields
):
    monitor = member_of(study, "monitor")
    data = post_data(study.protocol, section, **fields)
    assert client_as(monitor).post(_section_url(study, section), data).status_code == 403
    assert study.versions.count() == 1


def test_analyst_sees_allocation_and_limits_read_only(client_as, member_of, study):
    html = client_as(member_of(study, "analyst")).get(_design(study)).content.decode()
    for section in ("allocation", "limits"):
        form = html.split(f'id="section-{section}"')[1].split("</form>")[0]
        assert "<fieldset disabled" in form
        assert "<button" not in form


def test_an_untouched_allocation_form_adds_no_section_to_a_protocol_without_one(
    client_as, owner, rct_doc, post_data
):
    from studyplatform.studies.services import study_create_from_protocol

    # given: a two-arm protocol that leaves allocation to the default (permuted blocks)
    rct_doc["study"]["slug"] = "no-allocation"
    del rct_doc["allocation"]
    study = study_create_from_protocol(doc=rct_doc, author=owner)
    client = client_as(owner)
    assert re.search(
        r'<option value="permuted_blocks" selected>', client.get(_design(study)).content.decode()
    )
    # when: the allocation form is saved as shown
    url = _section_url(study, "allocation")
    assert client.post(url, post_data(study.protocol, "allocation")).status_code == 302
    # then: nothing changed
    assert study.versions.count() == 1


def test_a_consent_error_is_shown_on_the_field_of_its_language(
    client_as, owner, rct_doc, post_data
):
    from studyplatform.studies.services import study_create_from_protocol

    # given: a study whose consent texts end with a newline (as YAML block text does)
    assert all(d["body"].endswith("\n") for d in rct_doc["consent"]["documents"])
    study = study_create_from_protocol(doc=rct_doc, author=owner)
    # when: the Portuguese consent text changes but keeps its version number
    body = sections.section_initial(study.protocol, "consent")["body_pt_br"]
    response = client_as(owner).post(
        _section_url(study, "consent"),
        post_data(study.protocol, "consent", body_pt_br=body + "\nUma frase nova."),
    )
    html = response.content.decode()
    # then: the service's error lands on the Portuguese version field, not the English one
    assert response.status_code == 400
    assert "the en consent text changed" not in html
    assert _field_of(html, "the pt-br consent text changed") == "consent-version_pt_br"
    assert study.versions.count() == 1


def test_saving_an_untouched_consent_section_changes_nothing(client_as, owner, rct_doc, post_data):
    from studyplatform.studies.services import study_create_from_protocol

    # given: consent texts ending with a newline, which the form field strips, and CRLF line
    # breaks as a browser sends them
    assert all(d["body"].endswith("\n") for d in rct_doc["consent"]["documents"])
    study = study_create_from_protocol(doc=rct_doc, author=owner)
    initial = sections.section_initial(study.protocol, "consent")
    crlf = {k: v.replace("\n", "\r\n") for k, v in initial.items() if k.startswith("body_")}
    # when: the researcher saves the section without editing it
    response = client_as(owner).post(
        _section_url(study, "consent"), post_data(study.protocol, "consent", **crlf)
    )
    # then: no "consent text changed" error and no new protocol version
    assert "consent text changed" not in response.content.decode()
    assert response.status_code == 302  # back to the designer, nothing to save
    assert study.versions.count() == 1
