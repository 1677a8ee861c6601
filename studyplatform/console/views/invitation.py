"""The page an emailed team invitation leads to (/console/invitations/<token>/).

It lives in the console, not in accounts with the other account pages, because accepting an
invitation is a studies service and accounts sits below studies in the import order.
"""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods

from studyplatform.studies.selectors import invitation_for_token
from studyplatform.studies.services import InvitationError, invitation_accept, invitation_check

INVITATION_STATUS = {
    "unknown": 404,
    "closed": 410,
    "anonymous": 200,
    "wrong_account": 403,
    "unverified": 403,
}


@require_http_methods(["GET", "POST"])
def invitation(request: HttpRequest, token: str) -> HttpResponse:
    """Where an emailed invitation link leads. Accepting needs a signed-in account whose
    verified address is the invited one; anyone else is told what to do."""
    invited = invitation_for_token(token)
    context = {
        "invitation": invited,
        "signup_url": reverse("signup"),
        "next": request.get_full_path(),
    }
    try:
        if request.method == "POST":
            invitation_accept(token=token, user=request.user)
        else:
            invitation_check(invited, request.user)
    except InvitationError as error:
        context.update(error=str(error), code=error.code)
        status = INVITATION_STATUS[error.code]
        if error.code in ("unknown", "closed"):
            context["invitation"] = None  # say nothing about a dead invitation's study
        return render(request, "console/invitation.html", context, status=status)
    if request.method == "POST":
        messages.success(
            request,
            _('You joined "%(study)s" as %(role)s.')
            % {"study": invited.study.title, "role": invited.role},
        )
        return redirect("console:study_list")
    return render(request, "console/invitation.html", context)
