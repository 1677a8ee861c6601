"""`manage.py restore SRC`: restore a backup written by `manage.py backup` into the configured
database, which must be empty, and media root. Stop the web server and workers first."""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from studyplatform.core.backup import BackupError, restore_from


class Command(BaseCommand):
    help = "Restore a backup directory into an empty database and media root, then migrate."

    def add_arguments(self, parser):
        parser.add_argument("src", help="a directory written by `manage.py backup`")

    def handle(self, *args, **opts):
        src = Path(opts["src"])
        if not src.is_dir():
            raise CommandError(f"restore: SRC {src} is not a directory")
        try:
            result = restore_from(src=src)
        except BackupError as exc:
            raise CommandError(f"restore: {exc}") from None
        manifest = result["manifest"]
        self.stdout.write(
            f"Restored the backup of {manifest.get('created_at')} "
            f"({sum(manifest['row_counts'].values())} rows, "
            f"{len(manifest['files'])} files checked) and migrated the database."
        )
