"""The participant's "import my ChatGPT history" page: an upload form that calls the import
service, and says plainly when the participant's consent does not cover importing."""

from __future__ import annotations

from django import forms
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.template.defaultfilters import filesizeformat
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_http_methods

from studyplatform.chat.importers import ImportFormatError, Limits
from studyplatform.chat.importing import ImportRefused, chatgpt_import, chatgpt_import_refusal
from studyplatform.participants.session import participant_required

DEFAULT_MAX_BYTES = 50 * 1024 * 1024
TEMPLATE = "chat/import.html"


def max_upload_bytes() -> int:
    return getattr(settings, "CHAT_IMPORT_MAX_BYTES", DEFAULT_MAX_BYTES)


class ImportForm(forms.Form):
    export = forms.FileField(
        label=gettext_lazy("Your ChatGPT export (.zip or conversations.json)"),
        widget=forms.ClearableFileInput(
            attrs={"accept": ".zip,.json,application/zip,application/json"}
        ),
    )

    def clean_export(self):
        upload = self.cleaned_data["export"]
        limit = max_upload_bytes()
        # Checked here as well as by the parser, so the message names this page's limit.
        if upload.size > limit:
            raise forms.ValidationError(
                _("The file is larger than the %(limit)s upload limit.")
                % {"limit": filesizeformat(limit)},
                code="too_large",
            )
        return upload


@participant_required
@require_http_methods(["GET", "POST"])
def import_history(request: HttpRequest) -> HttpResponse:
    participant = request.participant
    refusal = chatgpt_import_refusal(participant)
    context = {
        "participant": participant,
        "refusal": refusal.code if refusal else "",
        "max_bytes": max_upload_bytes(),
    }
    if refusal is not None:
        # No form at all: the consent (or status) does not allow importing.
        status = 403 if request.method == "POST" else 200
        return render(request, TEMPLATE, context, status=status)
    if request.method == "GET":
        return render(request, TEMPLATE, {**context, "form": ImportForm()})
    # Bound even when the POST is empty, so a missing file is reported, not ignored.
    form = ImportForm(request.POST, request.FILES)
    if not form.is_valid():
        too_large = any(e.code == "too_large" for e in form.errors.as_data().get("export", []))
        return render(
            request, TEMPLATE, {**context, "form": form}, status=413 if too_large else 400
        )
    upload = form.cleaned_data["export"]
    upload.seek(0)
    try:
        result = chatgpt_import(
            participant=participant,
            source=upload.file,
            limits=Limits(max_upload_bytes=max_upload_bytes()),
        )
    except ImportFormatError as exc:
        context.update(form=ImportForm(), format_error=str(exc))
        return render(request, TEMPLATE, context, status=400)
    except ImportRefused as exc:  # withdrawn or consent changed since the page loaded
        context.update(refusal=exc.code)
        return render(request, TEMPLATE, context, status=403)
    # Rendered, not redirected: a repeated POST is harmless because re-importing the
    # same export only skips what is already there.
    context.update(result=result)
    return render(request, TEMPLATE, context)
