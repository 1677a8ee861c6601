"""`manage.py protocol validate FILE | import FILE | export STUDY_SLUG`.

validate: exit 0 when valid; otherwise exit 1 with one line per error on stderr, formatted
`<path>: <message> (line <n>)`. import: creates the study (draft) or a new protocol version.
export: the current protocol as YAML on stdout.
"""

from __future__ import annotations

import sys
from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from studyplatform.studies.models import Study
from studyplatform.studies.protocol import ProtocolInvalid, parse_protocol_text, to_yaml
from studyplatform.studies.selectors import protocol_for_editing
from studyplatform.studies.services import protocol_version_create, study_create_from_protocol


class Command(BaseCommand):
    help = "Validate, import or export a study protocol (YAML)."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        v = sub.add_parser("validate", help="check a protocol file; exit 1 on errors")
        v.add_argument("file")
        i = sub.add_parser("import", help="create a study or a new protocol version")
        i.add_argument("file")
        i.add_argument("--note", default="", help="change note (required for live studies)")
        i.add_argument("--author", default=None, help="username recorded as author/owner")
        e = sub.add_parser("export", help="print the current protocol as YAML")
        e.add_argument("slug")

    def _read(self, file: str) -> str:
        path = Path(file)
        if file == "-":
            return sys.stdin.read()
        if not path.is_file():
            raise CommandError(f"{file}: no such file")
        try:
            return path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise CommandError(f"{file}: not a UTF-8 text file") from None

    def _fail(self, exc: ProtocolInvalid) -> None:
        for error in exc.errors:
            self.stderr.write(str(error), style_func=lambda s: s)
        sys.exit(1)

    def handle(self, *args, action, **opts):
        if action == "validate":
            try:
                parse_protocol_text(self._read(opts["file"]))
            except ProtocolInvalid as exc:
                self._fail(exc)
            self.stdout.write(f"{opts['file']}: valid")
        elif action == "import":
            self._import(opts)
        else:
            try:
                study = Study.objects.select_related("current_version").get(slug=opts["slug"])
            except Study.DoesNotExist:
                raise CommandError(f"no study called {opts['slug']!r}") from None
            self.stdout.write(to_yaml(protocol_for_editing(study)), ending="")

    def _import(self, opts) -> None:
        author = None
        if opts["author"]:
            try:
                author = get_user_model().objects.get(username=opts["author"])
            except get_user_model().DoesNotExist:
                raise CommandError(f"no user called {opts['author']!r}") from None
        try:
            doc = parse_protocol_text(self._read(opts["file"]))
            existing = Study.objects.filter(slug=doc["study"]["slug"]).first()
            if existing is None:
                study = study_create_from_protocol(doc=doc, author=author, change_note=opts["note"])
                self.stdout.write(f"created study {study.slug} (version 1)")
            else:
                version, created = protocol_version_create(
                    study=existing, doc=doc, author=author, change_note=opts["note"]
                )
                word = "created" if created else "unchanged:"
                self.stdout.write(f"{existing.slug}: {word} version {version.number}")
        except ProtocolInvalid as exc:
            self._fail(exc)
