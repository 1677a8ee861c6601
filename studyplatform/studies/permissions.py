"""Object-level permission checks shared by researcher views and the API.

A non-member gets 404 (the study's existence is not revealed); a member whose roles lack the
permission gets 403.
"""

from __future__ import annotations

from django.core.exceptions import PermissionDenied
from django.http import Http404

from .models import Membership, Study
from .roles import ROLE_PERMISSIONS, Perm, Role


def user_perms(user, study: Study) -> frozenset[Perm]:
    if not getattr(user, "is_authenticated", False):
        return frozenset()
    if user.is_superuser:
        return frozenset(Perm)
    cache = getattr(user, "_study_perm_cache", None)
    if cache is None:
        cache = user._study_perm_cache = {}
    if study.pk not in cache:
        roles = Membership.objects.filter(study=study, user=user).values_list("role", flat=True)
        perms: set[Perm] = set()
        for role in roles:
            perms |= ROLE_PERMISSIONS.get(Role(role), frozenset())
        cache[study.pk] = frozenset(perms)
    return cache[study.pk]


def has_perm(user, study: Study, perm: Perm) -> bool:
    return perm in user_perms(user, study)


def require_perm(user, study: Study, perm: Perm) -> None:
    perms = user_perms(user, study)
    if not perms:
        raise Http404("No such study.")
    if perm not in perms:
        raise PermissionDenied(f"Your role in this study does not allow: {perm.value}.")


def get_study_for(user, slug: str, perm: Perm = Perm.VIEW_STUDY) -> Study:
    try:
        study = Study.objects.select_related("current_version").get(slug=slug)
    except Study.DoesNotExist:
        raise Http404("No such study.") from None
    require_perm(user, study, perm)
    return study
