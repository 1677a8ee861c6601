"""Participant pages: study link, screener, consent, home, consent copy, data, withdrawal,
sign-in. Views validate input, call one service, render."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.http import Http404, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_http_methods, require_POST

from studyplatform.core.client_ip import client_ip
from studyplatform.core.csp import self_contained_document
from studyplatform.core.digests import lookup_digest
from studyplatform.core.events import ParticipantHomeRequested, publish
from studyplatform.core.i18n import localized, normalize_language
from studyplatform.studies.models import Study
from studyplatform.studies.selectors import current_consent_for

from . import services
from .forms import (
    ConsentForm,
    PasswordSetForm,
    PasswordSignInForm,
    ScreenerForm,
    SignInForm,
    WithdrawForm,
)
from .models import DataDownload, Participant
from .screener import AnswerError, evaluate, parse_answers
from .session import (
    FRESH_KEY,
    SESSION_KEY,
    current_participant,
    participant_login,
    participant_logout,
    participant_required,
    signed_in_recently,
)

# The study whose welcome page a consent submission led to, for a browser with no participant
# session (the address had already joined; see `consent`).
WELCOME_KEY = "welcome_study"

SIGNIN_ERRORS = {
    "expired": gettext_lazy("This sign-in link has expired. Ask for a new one below."),
    "used": gettext_lazy("This sign-in link has already been used. Ask for a new one below."),
    "invalid": gettext_lazy("This sign-in link is not valid. Ask for a new one below."),
    "withdrawn": gettext_lazy("You have withdrawn from this study, so you cannot sign in."),
    "rate_limited": gettext_lazy("Too many requests. Please wait an hour and try again."),
    "bad_credentials": gettext_lazy("That email and password do not match."),
}


def _language(request) -> str:
    return normalize_language(translation.get_language()) or "en"


def _client_key(request) -> str:
    # Rate limits key on a digest of the address: no raw IP is stored anywhere.
    return lookup_digest(client_ip(request), "client")


def _join(request, study: Study) -> services.JoinContext:
    data = request.session.get(f"join:{study.slug}", {})
    return services.JoinContext(**data)


def _returning_page(request, study: Study):
    return render(
        request,
        "participants/returning.html",
        {
            "study": study,
            "collect_email": study.protocol["study"]
            .get("recruitment", {})
            .get("collect_email", True),
            "panel": study.protocol["study"].get("recruitment", {}).get("panel", ""),
        },
    )


def _too_many(request, study: Study | None = None):
    return render(request, "participants/rate_limited.html", {"study": study}, status=429)


def _open_study(request, slug: str) -> tuple[Study, str]:
    study = get_object_or_404(Study.objects.select_related("current_version"), slug=slug)
    if study.status == Study.Status.DRAFT:
        raise Http404("No such study.")
    return study, services.join_state(study, pilot_token=_join(request, study).pilot_token)


def study_page(request, slug):
    study = get_object_or_404(Study.objects.select_related("current_version"), slug=slug)
    if study.status == Study.Status.DRAFT:
        raise Http404("No such study.")
    if any(key in request.GET for key in services.JoinContext.QUERY_KEYS):
        # Capture the panel parameters, then continue on the bare URL: panel ids are direct
        # identifiers and must not stay in access logs, browser history or Referer headers.
        request.session[f"join:{slug}"] = services.JoinContext.from_query(request.GET).as_dict()
        return redirect("participants:study", slug=slug)
    join = _join(request, study)
    returning = services.participant_for_panel_id(study, join.panel_pid)
    if returning is not None:
        # A panel id identifies, it never authenticates: only a browser already signed in as
        # this participant goes on to their page; anyone else is told how to come back.
        current = current_participant(request)
        if current is not None and current.pk == returning.pk and current.is_active:
            return redirect("participants:home")
        return _returning_page(request, study)
    if not request.session.get(f"visited:{slug}"):
        request.session[f"visited:{slug}"] = True
        services.funnel_increment(study, "visited")
    state = services.join_state(study, pilot_token=join.pilot_token)
    return render(
        request,
        "participants/study.html",
        {
            "study": study,
            "state": state,
            "protocol": study.protocol,
            "description": localized(
                study.protocol["study"].get("description", ""), _language(request)
            ),
        },
    )


@require_http_methods(["GET", "POST"])
def screener(request, slug):
    study, state = _open_study(request, slug)
    if state not in ("open", "pilot"):
        return redirect("participants:study", slug=slug)
    protocol = study.protocol
    questions = protocol.get("screener", {}).get("questions", [])
    form = ScreenerForm(request.POST or None, questions=questions, language=_language(request))
    if request.method == "POST" and form.is_valid():
        try:
            answers = parse_answers(questions, form.raw_answers())
        except AnswerError as exc:
            for key, code in exc.errors.items():
                form.add_error(
                    key,
                    _("Please check this answer.")
                    if code != "required"
                    else _("This answer is required."),
                )
        else:
            services.funnel_increment(study, "screened")
            result = evaluate(protocol.get("screener", {}).get("eligibility", []), answers)
            if not result.eligible:
                # Nothing about an ineligible person is kept except anonymous counts per rule.
                for rule in result.failed_rules:
                    services.funnel_increment(study, f"ineligible:{rule}")
                rules = {r["key"]: r for r in protocol["screener"]["eligibility"]}
                reasons = [
                    localized(rules[k].get("message", ""), _language(request))
                    for k in result.failed_rules
                ]
                return render(
                    request,
                    "participants/ineligible.html",
                    {"study": study, "reasons": [r for r in reasons if r]},
                )
            services.funnel_increment(study, "eligible")
            request.session[f"screener:{slug}"] = answers
            return redirect("participants:consent", slug=slug)
    if not questions and request.method == "GET":
        request.session[f"screener:{slug}"] = {}
        return redirect("participants:consent", slug=slug)
    return render(request, "participants/screener.html", {"study": study, "form": form})


@require_http_methods(["GET", "POST"])
def consent(request, slug):
    study, state = _open_study(request, slug)
    if state not in ("open", "pilot"):
        return redirect("participants:study", slug=slug)
    answers = request.session.get(f"screener:{slug}")
    if answers is None:
        return redirect("participants:screener", slug=slug)
    document = current_consent_for(study, _language(request))
    recruitment = study.protocol["study"].get("recruitment", {})
    collect_email = recruitment.get("collect_email", True)
    form = ConsentForm(request.POST or None, document=document, collect_email=collect_email)
    if request.method == "POST" and form.is_valid():
        try:
            result = services.participant_join(
                study=study,
                answers=answers,
                language=document.language,
                timezone_name=form.cleaned_data.get("timezone") or study.timezone,
                choices=form.choices(),
                signature_name=form.cleaned_data.get("signature_name", ""),
                email=form.cleaned_data.get("email", ""),
                join=_join(request, study),
                client_key=_client_key(request),
            )
        except services.EnrollmentError as exc:
            if exc.code == "rate_limited":
                return _too_many(request, study)
            if exc.code == "already_enrolled":
                return _returning_page(request, study)
            if exc.code in ("closed", "full", "invite_only"):
                return redirect("participants:study", slug=slug)
            form.add_error(None, _("Please complete every required part of the form."))
        else:
            for key in (f"screener:{slug}", f"join:{slug}"):
                request.session.pop(key, None)
            if result.participant is not None:
                # Enrolling in this browser is proof enough to set a password right away.
                participant_login(request, result.participant, fresh=True)
                if result.return_token:
                    request.session["new_return_token"] = result.return_token
            else:
                # The address had already joined; its owner was emailed. Answer exactly as for
                # a new participant (same redirect, same welcome page), so the form never tells
                # anyone who takes part in this study.
                # Like a new enrollment, this browser is no longer signed in as anyone else.
                for key in (SESSION_KEY, FRESH_KEY):
                    request.session.pop(key, None)
                request.session.cycle_key()
                request.session[WELCOME_KEY] = study.pk
                request.session.set_expiry(settings.PARTICIPANT_SESSION_AGE_S)  # same cookie
            return redirect("participants:welcome")
    return render(
        request,
        "participants/consent.html",
        {
            "study": study,
            "document": document,
            "form": form,
        },
    )


def welcome(request):
    """After consent. The page is the same whether or not the email address had already joined
    (see `consent`): it shows no participant code, and says an email was sent (it was)."""
    participant = current_participant(request)
    token = request.session.pop("new_return_token", None)
    if participant is not None:
        study = participant.study
    else:
        study = Study.objects.filter(pk=request.session.get(WELCOME_KEY)).first()
        if study is None:
            return redirect("participants:signin")
    recruitment = study.protocol["study"].get("recruitment", {})
    return render(
        request,
        "participants/welcome.html",
        {
            "study": study,
            "return_url": request.build_absolute_uri(
                reverse("participants:return_link", kwargs={"token": token})
            )
            if token
            else None,
            "collect_email": recruitment.get("collect_email", True),
            "panel": recruitment.get("panel", ""),
            "completion_url": recruitment.get("completion_url"),
        },
    )


def _study_day(participant: Participant) -> int:
    import zoneinfo

    tz = zoneinfo.ZoneInfo(participant.timezone)
    start = participant.enrolled_at.astimezone(tz).date()
    return (timezone.now().astimezone(tz).date() - start).days + 1


@participant_required
def home(request):
    participant = request.participant
    study = participant.study
    day = _study_day(participant)
    recruitment = study.protocol["study"].get("recruitment", {})
    context = {
        "participant": participant,
        "study": study,
        "day": min(day, study.duration_days),
        "days": study.duration_days,
        "finished": day > study.duration_days,
        "collect_email": recruitment.get("collect_email", True),
        "latest_download": participant.downloads.first(),
        "due": [],
    }
    # Higher apps add their sections (surveys: "due"); participants cannot import surveys.
    for section in publish(ParticipantHomeRequested(participant=participant)):
        context.update(section)
    return render(request, "participants/home.html", context)


# The consent copy is a document to keep: one file, readable offline, so its style is inline
# (allowed by hash in its Content-Security-Policy).
CONSENT_COPY_CSS = (
    "body{font:16px/1.5 system-ui,sans-serif;max-width:46rem;margin:0 auto;padding:1rem}"
)


@participant_required(consent=False, allow_withdrawn=False)
@self_contained_document(styles=(CONSENT_COPY_CSS,))
def consent_copy(request):
    participant = request.participant
    record = services.latest_consent(participant)
    html = render_to_string(
        "participants/consent_copy.html",
        {
            "participant": participant,
            "study": participant.study,
            "record": record,
            "document": record.document,
            "css": CONSENT_COPY_CSS,
        },
        request=request,
    )
    response = HttpResponse(html)
    if request.GET.get("download") == "1":
        response["Content-Disposition"] = (
            f'attachment; filename="consent-{participant.code}-v{record.version}.html"'
        )
    return response


@participant_required(consent=False)
@require_http_methods(["GET", "POST"])
def consent_renew(request):
    participant = request.participant
    document = services.consent_due(participant)
    if document is None:
        return redirect("participants:home")
    form = ConsentForm(request.POST or None, document=document, collect_email=False)
    if request.method == "POST" and form.is_valid():
        try:
            services.consent_renew(
                participant=participant,
                choices=form.choices(),
                signature_name=form.cleaned_data.get("signature_name", ""),
            )
        except services.EnrollmentError:
            form.add_error(None, _("Please complete every required part of the form."))
        else:
            messages.success(request, _("Thank you. Your consent is up to date."))
            return redirect("participants:home")
    return render(
        request,
        "participants/consent_renew.html",
        {
            "study": participant.study,
            "document": document,
            "form": form,
        },
    )


@participant_required(consent=False)
@require_http_methods(["GET", "POST"])
def data(request):
    participant = request.participant
    if request.method == "POST":
        services.data_download_request(participant=participant)
        messages.info(
            request, _("We are preparing your data. This page will show it when it is ready.")
        )
        return redirect("participants:data")
    downloads = list(participant.downloads.all()[:5])
    now = timezone.now()
    for download in downloads:
        # Past its expiry an archive cannot be downloaded, even before the sweep deletes it.
        download.available = download.is_available(now)
    return render(
        request,
        "participants/data.html",
        {"participant": participant, "downloads": downloads},
    )


@participant_required(consent=False)
def data_file(request, download_id: int):
    # Only the participant's own downloads: another participant's id is a 404.
    download = get_object_or_404(
        DataDownload,
        pk=download_id,
        participant=request.participant,
        status=DataDownload.Status.READY,
    )
    try:
        # Decrypted chunk by chunk as it streams; the clear zip is never written anywhere.
        chunks = services.data_download_open(download=download)
    except services.DownloadGone as exc:
        raise Http404(str(exc)) from exc
    response = StreamingHttpResponse(chunks, content_type="application/zip")
    response["Content-Disposition"] = (
        f'attachment; filename="my-data-{request.participant.code}.zip"'
    )
    response["Cache-Control"] = "no-store"
    return response


@participant_required(consent=False)
@require_http_methods(["GET", "POST"])
def withdraw(request):
    participant = request.participant
    form = WithdrawForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        services.participant_withdraw(
            participant=participant, mode=form.cleaned_data["mode"], by="participant"
        )
        participant_logout(request)
        request.session["withdrawn_mode"] = form.cleaned_data["mode"]
        return redirect("participants:withdrawn")
    return render(request, "participants/withdraw.html", {"participant": participant, "form": form})


def withdrawn(request):
    return render(
        request, "participants/withdrawn.html", {"mode": request.session.get("withdrawn_mode")}
    )


PASSWORD_ERRORS = {
    "bad_current_password": gettext_lazy("Your current password is not correct."),
    "fresh_signin_required": gettext_lazy(
        "To set a password, first sign in again with a link we email you."
    ),
    "rate_limited": SIGNIN_ERRORS["rate_limited"],
}


@participant_required(consent=False)
@require_http_methods(["GET", "POST"])
def password(request):
    """Set or change the password: needs the current password, or a sign-in through a one-time
    link in the last few minutes (a session alone may be a borrowed phone)."""
    participant = request.participant
    fresh = signed_in_recently(request)
    ask_current = not fresh and bool(participant.password_hash)
    needs_link = not fresh and not participant.password_hash
    link_sent = False
    error = None
    if request.method == "POST" and request.POST.get("action") == "email_link":
        try:
            link_sent = services.signin_link_email(
                participant=participant,
                client_key=_client_key(request),
                next_path=reverse("participants:password"),
            )
        except services.SignInError as exc:
            error = SIGNIN_ERRORS[exc.code]
        else:
            if not link_sent and not services.participant_has_email(participant):
                error = _(
                    "We have no email address for you. Open your personal return link again, "
                    "then set your password here."
                )
        form = PasswordSetForm(ask_current=ask_current)
    else:
        form = PasswordSetForm(request.POST or None, ask_current=ask_current)
    if request.method == "POST" and not needs_link and form.is_bound and form.is_valid():
        try:
            services.password_set(
                participant=participant,
                password=form.cleaned_data["password"],
                current_password=form.cleaned_data.get("current", ""),
                fresh_signin=fresh,
                client_key=_client_key(request),
            )
        except services.SignInError as exc:
            form.add_error("current" if ask_current else None, PASSWORD_ERRORS[exc.code])
        else:
            # The fresh sign-in was used up on this change: another one (without the new
            # password) needs another one-time link. A new session key, as after any sign-in.
            request.session.pop(FRESH_KEY, None)
            request.session.cycle_key()
            messages.success(request, _("Your password is set. You can still sign in by email."))
            return redirect("participants:home")
    return render(
        request,
        "participants/password.html",
        {
            "form": form,
            "needs_link": needs_link,
            "link_sent": link_sent,
            "error": error,
        },
        status=400 if request.method == "POST" and form.errors else 200,
    )


@participant_required(consent=False)
@require_POST
def return_link_renew(request):
    token = services.return_link_issue(participant=request.participant)
    request.session["new_return_token"] = token
    messages.info(request, _("Your old return link no longer works. Bookmark the new one."))
    return redirect("participants:welcome")


@require_http_methods(["GET", "POST"])
def signin(request):
    form = SignInForm(request.POST or None)
    password_form = PasswordSignInForm(prefix="pw")
    error = None
    if request.method == "POST" and form.is_valid():
        try:
            services.signin_link_request(
                email=form.cleaned_data["email"], client_key=_client_key(request)
            )
        except services.SignInError as exc:
            error = SIGNIN_ERRORS[exc.code]
        else:
            return render(
                request,
                "participants/signin_sent.html",
                {"minutes": settings.SIGNIN_LINK_MAX_AGE_S // 60},
            )
    return render(
        request,
        "participants/signin.html",
        {"form": form, "password_form": password_form, "error": error},
    )


@require_POST
def signin_password(request):
    form = PasswordSignInForm(request.POST, prefix="pw")
    error = _("That email and password do not match.")
    if form.is_valid():
        try:
            participant = services.signin_with_password(
                email=form.cleaned_data["email"],
                password=form.cleaned_data["password"],
                client_key=_client_key(request),
            )
        except services.SignInError as exc:
            error = SIGNIN_ERRORS[exc.code]
        else:
            participant_login(request, participant)
            return redirect("participants:home")
    return render(
        request,
        "participants/signin.html",
        {"form": SignInForm(), "password_form": form, "error": error},
        status=400,
    )


@require_http_methods(["GET", "POST"])
def signin_token(request, token: str):
    # GET only shows a button: mail scanners that prefetch links must not use up the link.
    if request.method == "GET":
        return render(request, "participants/signin_confirm.html")
    try:
        participant, next_path = services.signin_link_consume(token)
    except services.SignInError as exc:
        return render(
            request,
            "participants/signin.html",
            {
                "form": SignInForm(),
                "password_form": PasswordSignInForm(prefix="pw"),
                "error": SIGNIN_ERRORS[exc.code],
            },
            status=400,
        )
    participant_login(request, participant, fresh=True)
    if next_path and url_has_allowed_host_and_scheme(next_path, allowed_hosts=None):
        return redirect(next_path)
    return redirect("participants:home")


def return_link(request, token: str):
    participant = services.participant_for_return_token(token)
    if participant is None:
        return render(
            request,
            "participants/signin.html",
            {
                "form": SignInForm(),
                "password_form": PasswordSignInForm(prefix="pw"),
                "error": _("This return link is not valid any more."),
            },
            status=404,
        )
    participant_login(request, participant, fresh=True)
    return redirect("participants:home")


@require_POST
def signout(request):
    participant_logout(request)
    return redirect(reverse("participants:signin") + "?signed_out=1")


def me(request):
    """Where `/p/` sends a visitor with no session."""
    if current_participant(request) is None:
        return redirect("participants:signin")
    return redirect("participants:home")


@participant_required
@require_http_methods(["GET", "POST"])
def timezone_edit(request):
    """The participant's time zone, which times every invitation (pre-filled from the browser)."""
    import zoneinfo

    participant = request.participant
    error = None
    if request.method == "POST":
        try:
            services.participant_set_timezone(
                participant=participant, timezone_name=request.POST.get("timezone", "")
            )
        except services.TimezoneError:
            error = _("Choose a time zone from the list.")
        else:
            messages.success(request, _("Your time zone is saved. New invitations will follow it."))
            return redirect("participants:home")
    return render(
        request,
        "participants/timezone.html",
        {
            "participant": participant,
            "error": error,
            "zones": sorted(
                z
                for z in zoneinfo.available_timezones()
                if "/" in z and not z.startswith(("Etc/", "SystemV/", "posix/", "right/"))
            ),
        },
    )
