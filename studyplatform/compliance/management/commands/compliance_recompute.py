"""``manage.py compliance_recompute <study slug>``: rebuild every participant's per-day usage
(ComplianceDay rows) of a study from the stored messages.

The rows are a cache of what the usage features compute from the messages; run this after
changing the protocol's ``analysis.session_gap_minutes``, or to check nothing drifted. Prints
``participants=<n> days=<rows>``; an unknown study is a one-line error and exit status 1.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from studyplatform.compliance.services import compliance_recompute_study
from studyplatform.studies.models import Study


class Command(BaseCommand):
    help = "Recompute a study's per-day usage against its requirement from the messages."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slug", help="the study's slug")

    def handle(self, *args: Any, **options: Any) -> None:
        study = Study.objects.filter(slug=options["slug"]).first()
        if study is None:
            raise CommandError(f"slug: no study {options['slug']!r}")
        written = compliance_recompute_study(study=study)
        self.stdout.write(f"participants={study.participants.count()} days={written}")
