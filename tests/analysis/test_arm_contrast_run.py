"""A researcher's run on a simulated two-arm study carries the arm contrast and the family."""

from __future__ import annotations

import pytest

from analysis.services import analysis_run_create, analysis_run_execute

pytestmark = pytest.mark.django_db


def test_a_run_reports_the_arm_contrast_the_primary_family_and_the_look(simulated_study):
    # when
    run = analysis_run_execute(run=analysis_run_create(study=simulated_study, enqueue=False))
    # then: a cLDA contrast per outcome, current (sorted first) as the reference arm
    assert run.status == "done", run.error
    contrast = run.results["arm_contrast"]["who5.percentage"]
    assert contrast["method"] == "clda"
    assert contrast["reference"] == "current"
    (end,) = contrast["end_of_study"]
    assert end["arm"] == "legacy" and end["wave"] == contrast["end_wave"]
    assert end["df"] > 0 and end["family"] == "exploratory"
    # and the family, labels and look are stored and shown
    assert run.results["multiplicity"]["correction"] == "holm"
    assert run.results["look"]["previous_looks"] == 0
    html = run.report_html
    assert 'data-table="arm_contrast:who5.percentage"' in html
    assert 'data-table="arm_contrast:who5.percentage:means"' in html
    assert 'data-table="multiplicity"' in html
    assert "Interim look (look 1): no earlier analysis of this study." in html
