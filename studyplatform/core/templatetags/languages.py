"""The language menu's choices: each language named in itself, as people look for it."""

from __future__ import annotations

from django import template
from django.conf import settings
from django.utils.translation import get_language_info

register = template.Library()

# Django's own name for pt-br is "Português Brasileiro": an adjective where Brazilian menus say
# the country, and long enough to be cut to "Português Brasile" on a phone. This is the label
# Brazilian Portuguese interfaces use.
AUTONYMS = {"pt-br": "Português (Brasil)"}


@register.simple_tag
def language_choices() -> list[tuple[str, str]]:
    """(code, name in that language) for every language the site offers."""
    return [
        (code, AUTONYMS.get(code) or get_language_info(code)["name_local"])
        for code, _name in settings.LANGUAGES
    ]
