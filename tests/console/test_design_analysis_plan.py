"""The designer's analysis form edits the arm contrast method and the family's correction."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from studyplatform.console.design import sections

pytestmark = pytest.mark.django_db


def post(client: Client, study, **fields) -> int:
    values = {**sections.section_initial(study.protocol, "analysis"), **fields}
    data = {f"analysis-{k}": v for k, v in values.items() if v not in (None, False)}
    url = reverse("console:design_section", args=[study.slug, "analysis"])
    return client.post(url, data).status_code


def test_the_designer_sets_and_clears_the_arm_contrast_and_correction(owner, study):
    client = Client()
    client.force_login(owner)
    # when: the researcher picks ANCOVA and Bonferroni, and names two covariates
    assert (
        post(
            client,
            study,
            arm_contrast_method="ancova",
            multiplicity_correction="bonferroni",
            covariates="screener.age, stratum.gender",
            arm_by_time="on",
        )
        == 302
    )
    study.refresh_from_db()
    analysis = study.protocol["analysis"]
    assert analysis["arm_contrast"] == {"method": "ancova"}
    assert analysis["multiplicity"] == {"correction": "bonferroni"}
    assert analysis["covariates"] == ["screener.age", "stratum.gender"]
    # when: both are set back to the default
    assert post(client, study, arm_contrast_method="", multiplicity_correction="") == 302
    study.refresh_from_db()
    # then: the keys are gone, so the documented defaults (cLDA, Holm) apply
    assert "arm_contrast" not in study.protocol["analysis"]
    assert "multiplicity" not in study.protocol["analysis"]


def test_an_unknown_covariate_is_shown_and_nothing_is_saved(owner, study):
    client = Client()
    client.force_login(owner)
    url = reverse("console:design_section", args=[study.slug, "analysis"])
    data = {
        f"analysis-{name}": value
        for name, value in sections.section_initial(study.protocol, "analysis").items()
        if value not in (None, False)
    }
    data["analysis-covariates"] = "income"
    response = client.post(url, data)
    assert "unknown covariate &#x27;income&#x27;" in response.content.decode()
    study.refresh_from_db()
    assert study.versions.count() == 1
