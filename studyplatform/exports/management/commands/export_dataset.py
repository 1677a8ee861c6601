"""`python manage.py export_dataset <slug> ... --out PATH`: build an anonymized export now.

Runs the same service as the API (the export is recorded and audited like any other, with no
user), in this process rather than on the exports queue, with a progress bar.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from studyplatform.exports.codebook import DEFAULT_TABLES, TABLES
from studyplatform.exports.models import DatasetExport
from studyplatform.exports.services import (
    ExportError,
    export_build,
    export_create,
    export_path,
)
from studyplatform.exports.writers import FORMATS
from studyplatform.studies.models import Study


class Command(BaseCommand):
    help = "Build an anonymized dataset export of a study and copy the zip to --out."

    def add_arguments(self, parser):
        parser.add_argument("slug")
        parser.add_argument(
            "--tables",
            default=",".join(DEFAULT_TABLES),
            help=f"comma-separated, from {','.join(TABLES)} (default: {','.join(DEFAULT_TABLES)})",
        )
        parser.add_argument("--format", default="csv", choices=FORMATS)
        parser.add_argument("--dates", default="relative", choices=("relative", "shifted"))
        parser.add_argument("--chat-mode", default="exclude", choices=("exclude", "metadata"))
        parser.add_argument("--k", type=int, default=5)
        parser.add_argument("--quasi-identifiers", default="age_band,gender,arm")
        parser.add_argument("--include-time-of-day", action="store_true")
        parser.add_argument("--include-pilot", action="store_true")
        parser.add_argument("--reuse-key-of", type=int, default=None)
        parser.add_argument("--out", required=True)

    def handle(self, *args, **opts):
        study = Study.objects.filter(slug=opts["slug"]).first()
        if study is None:
            raise CommandError(f"no study with slug {opts['slug']!r}")
        options = {
            "tables": opts["tables"],
            "format": opts["format"],
            "dates": opts["dates"],
            "chat_mode": opts["chat_mode"],
            "k": opts["k"],
            "quasi_identifiers": opts["quasi_identifiers"],
            "include_time_of_day": opts["include_time_of_day"],
            "include_pilot": opts["include_pilot"],
            "reuse_key_of": opts["reuse_key_of"],
        }
        try:
            export = export_create(
                study=study, user="command export_dataset", options=options, enqueue=False
            )
        except ExportError as exc:
            raise CommandError(str(exc)) from exc
        with tqdm(total=100, unit="%", disable=opts["verbosity"] == 0) as bar:

            def progress(percent: int, label: str) -> None:
                bar.set_description(label)
                bar.update(max(0, percent - bar.n))

            export = export_build(export=export, progress=progress)
            bar.update(100 - bar.n)
        if export.status == DatasetExport.Status.REVOKED:
            raise CommandError(
                f"export {export.pk} was revoked: {export.revoked_reason} "
                f"Export {export.replaced_by_id} was queued in its place."
            )
        if export.status != DatasetExport.Status.DONE:
            raise CommandError(f"export {export.pk} failed: {export.error}")
        out = Path(opts["out"])
        if out.is_dir():
            out = out / f"{study.slug}-export-{export.pk}.zip"
        shutil.copyfile(export_path(export), out)
        self.stdout.write(f"{out} sha256 {export.sha256} ({export.size} bytes)")
