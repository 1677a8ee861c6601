"""``python manage.py analyze <study_slug> [--out report.html]``: run the analysis in the shell.

The same pipeline as the background task (``analysis_run_execute``) with a tqdm progress bar
over its steps; the run is stored like any other, and the report is also written to a file.
"""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from analysis.models import AnalysisRun
from analysis.services import LookNotAllowed, analysis_run_create, analysis_run_execute
from studyplatform.studies.models import Study


class Command(BaseCommand):
    help = "Run the study's analysis plan now and write the HTML report."

    def add_arguments(self, parser) -> None:
        parser.add_argument("study_slug")
        parser.add_argument("--out", help="report path (default: MEDIA_ROOT/analysis/...)")
        parser.add_argument("--text-markers", action="store_true", help="decrypt text markers")
        parser.add_argument(
            "--look",
            choices=["interim", "final"],
            help="interim or final analysis (default: final when the study is closed, "
            "else interim; final needs a closed study)",
        )

    def handle(self, *args, **opts) -> None:
        study = (
            Study.objects.select_related("current_version").filter(slug=opts["study_slug"]).first()
        )
        if study is None:
            raise CommandError(f"no study {opts['study_slug']!r}")
        try:
            run = analysis_run_create(
                study=study,
                params={"text_markers": opts["text_markers"]},
                enqueue=False,
                look=opts["look"],
            )
        except LookNotAllowed as exc:
            raise CommandError(f"--look: {exc}") from exc
        with tqdm(total=100, unit="%", desc="loading", file=self.stderr._out) as bar:

            def progress(step: str, value: int) -> None:
                bar.set_description(step)
                bar.update(value - bar.n)

            run = analysis_run_execute(run=run, progress=progress)
        if run.status != AnalysisRun.Status.DONE:
            raise CommandError(f"analysis run {run.id} failed: {run.error}")
        out = Path(
            opts["out"] or Path(settings.MEDIA_ROOT) / "analysis" / f"{study.slug}-run{run.id}.html"
        )
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(run.report_html, encoding="utf-8")
        look = (run.results or {}).get("look", {})
        self.stdout.write(
            f"Analysis run {run.id} done (data {run.data_hash[:12]}; {run.look} look, "
            f"{look.get('previous_looks', 0)} earlier)."
        )
        self.stdout.write(f"Report written to {out}")
