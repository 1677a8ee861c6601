"""``manage.py import_chatgpt``: import a participant's ChatGPT export from a file on the server.

Stable interface (scripts parse it): on success one line on stdout,
``imported=<conversations> messages=<messages> skipped=<duplicates>``, and exit status 0; on
any refusal one line on stderr, exit status 1 and nothing saved. ``--dry-run`` parses and counts
without saving (``--participant`` is then optional: without it nothing counts as a duplicate).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, NoReturn

from django.core.management.base import BaseCommand, CommandParser

from studyplatform.chat.importers import ImportFormatError
from studyplatform.chat.importing import ImportRefused, chatgpt_import
from studyplatform.participants.models import Participant


class Command(BaseCommand):
    help = "Import a ChatGPT export (zip or conversations.json) into a participant's chat history."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path", help="the export zip or a bare conversations.json")
        parser.add_argument("--participant", metavar="CODE", help="the participant's code")
        parser.add_argument(
            "--dry-run", action="store_true", help="parse and count without saving anything"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        code = (options["participant"] or "").strip()
        dry_run = options["dry_run"]
        participant = None
        if code:
            participant = (
                Participant.objects.select_related("study").filter(code__iexact=code).first()
            )
            if participant is None:
                self._fail(f"unknown participant code {code!r}")
        elif not dry_run:
            self._fail("--participant CODE is required unless --dry-run is given")
        try:
            result = chatgpt_import(
                participant=participant,
                source=Path(options["path"]),
                dry_run=dry_run,
                actor="manage.py import_chatgpt",
            )
        except (ImportRefused, ImportFormatError) as exc:
            self._fail(str(exc))
        self.stdout.write(result.as_line())

    def _fail(self, reason: str) -> NoReturn:
        # SystemExit rather than CommandError: call_command re-raises CommandError instead of
        # exiting, and the exit status is part of this command's interface either way.
        self.stderr.write(reason)
        sys.exit(1)
