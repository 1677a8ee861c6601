"""The one tab bar of every console study page: `{% study_tabs %}`.

A tag rather than an include so every page gets the same tabs without each view having to pass
the user's study permissions (the tag asks `user_perms`, which caches per request user).
"""

from __future__ import annotations

from django import template

from studyplatform.studies.permissions import user_perms

register = template.Library()


@register.inclusion_tag("console/_study_tabs.html", takes_context=True)
def study_tabs(context) -> dict:
    study = context["study"]
    return {
        "study": study,
        "tab": context.get("tab", ""),
        # Plain strings: Perm is a str enum, and `in` on strings reads naturally in the template.
        "perms": {str(p) for p in user_perms(context["request"].user, study)},
    }
