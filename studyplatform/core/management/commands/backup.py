"""`manage.py backup DEST`: database snapshot + media root + manifest into a new directory.

The keys are never written into the backup; the command ends by naming the environment
variables the operator must keep apart from it (README "Backup and restore")."""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from studyplatform.core.backup import BackupError, backup_create


class Command(BaseCommand):
    help = "Back up the database (consistent snapshot), the media root and a manifest to DEST."

    def add_arguments(self, parser):
        parser.add_argument("dest", help="a new (or empty) directory to write the backup into")

    def handle(self, *args, **opts):
        try:
            result = backup_create(dest=Path(opts["dest"]))
        except BackupError as exc:
            raise CommandError(f"backup: {exc}") from None
        manifest = result.manifest
        rows = sum(manifest["row_counts"].values())
        self.stdout.write(
            f"Backed up {manifest['database']['vendor']} database "
            f"({len(manifest['row_counts'])} tables, {rows} rows) and "
            f"{sum(1 for f in manifest['files'] if f.startswith('media/'))} media files "
            f"to {result.dest}"
        )
        self.stdout.write(
            "NOT included, keep these environment variables separately (a password manager or "
            "secrets store, not next to the backup); without FIELD_ENCRYPTION_KEY the chat "
            "messages and free-text answers in this backup cannot be read: "
            + ", ".join(result.keys_not_included)
        )
