"""Template helpers: sanitized markdown and per-language protocol text."""

from django import template
from django.utils.translation import get_language

from studyplatform.core import i18n
from studyplatform.core.markdown import render_markdown

register = template.Library()


@register.filter
def markdown(text: str):
    return render_markdown(text)


@register.filter
def localized(value, language: str | None = None):
    """Pick the current language's string from a protocol text ({en: ..., pt-br: ...})."""
    return i18n.localized(value, language or get_language())


@register.filter
def get_choice(mapping, key):
    """`record.choices|get_choice:box.key` — a dict lookup with a variable key."""
    return (mapping or {}).get(key)
