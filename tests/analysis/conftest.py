"""A study filled by ``simulate_study`` (shared by the analysis-run tests)."""

from __future__ import annotations

import pytest
from django.core.management import call_command


@pytest.fixture
def simulated_study(study):
    # 60 participants × 6 weekly waves (baseline + weeks 1-5), a planted effect of 0.5
    call_command("simulate_study", study.slug, participants=60, days=42, effect=0.5, seed=7)
    return study
