"""The API's JSON parser: DRF's, with the ceilings of `input_limits` (nesting, invalid Unicode,
NUL characters, non-finite and out-of-range numbers) checked before any view sees the data.

DRF's own parser turns only ValueError into a 400: a deeply nested body raised RecursionError
(a 500), and a lone surrogate such as "\\ud800" parsed fine and failed later, when it was
stored or encrypted.
"""

from __future__ import annotations

from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

from . import input_limits


class BoundedJSONParser(JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        encoding = (parser_context or {}).get("encoding", settings.DEFAULT_CHARSET)
        try:
            text = stream.read().decode(encoding)
        except UnicodeDecodeError:
            raise ParseError("JSON parse error - the body is not valid UTF-8") from None
        try:
            return input_limits.loads(text)
        except input_limits.InputRejected as exc:
            where = exc.path or "the body"
            raise ParseError(f"JSON parse error - {where}: {exc.message}") from None
