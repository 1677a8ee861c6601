"""Researcher account pages: sign-up, email verification and throttled password reset.

Sign-in itself is Django's LoginView (registration/login.html, wired by
django.contrib.auth.urls); the page an emailed team invitation leads to is a console page
(console/views/invitation.py), because accepting one is a studies service and accounts sits below
studies.

Anyone can open an account, but it holds no study role (and cannot create a study) until its
email address is verified from the emailed link. Sign-up and password reset answer the same
whether or not an address has an account; the address's owner is told by email instead.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import PasswordResetForm, UserCreationForm
from django.contrib.auth.views import PasswordResetView
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_http_methods, require_POST

from studyplatform.core.client_ip import client_ip
from studyplatform.core.digests import lookup_digest

from .selectors import email_is_verified
from .services import (
    SignUpError,
    VerificationError,
    account_signup,
    email_verification_resend,
    email_verify,
    password_reset_allowed,
    verification_token_read,
)


def _client_key(request: HttpRequest) -> str:
    return lookup_digest(client_ip(request), "client")


# --- sign-up -----------------------------------------------------------------------------------


class SignUpForm(UserCreationForm):
    # No "this address has an account" check here: that answer would tell a stranger who has an
    # account. account_signup emails the address's owner instead.
    email = forms.EmailField(label=gettext_lazy("Email address"), max_length=254)

    class Meta(UserCreationForm.Meta):
        model = get_user_model()
        fields = ("username", "email")


@require_http_methods(["GET", "POST"])
def signup(request: HttpRequest) -> HttpResponse:
    form = SignUpForm(request.POST or None)
    status = 200
    if request.method == "POST":
        status = 400
        if form.is_valid():
            try:
                account_signup(
                    username=form.cleaned_data["username"],
                    email=form.cleaned_data["email"],
                    password=form.cleaned_data["password1"],
                    client_key=_client_key(request),
                )
            except SignUpError as error:
                if error.code == "throttled":
                    status = 429
                    form.add_error(None, str(error))
                else:
                    form.add_error("username", str(error))
            else:
                return redirect("signup_done")
    return render(request, "accounts/signup.html", {"form": form}, status=status)


def signup_done(request: HttpRequest) -> HttpResponse:
    return render(request, "accounts/signup_done.html")


# --- email verification --------------------------------------------------------------------


@require_http_methods(["GET", "POST"])
def verify(request: HttpRequest, token: str) -> HttpResponse:
    """GET shows what will be confirmed (so mail scanners that fetch links change nothing);
    POST confirms."""
    try:
        user, email = verification_token_read(token)
        if request.method == "POST":
            user = email_verify(token=token)
    except VerificationError as error:
        return render(request, "accounts/verify.html", {"error": str(error)}, status=400)
    if request.method == "POST":
        if request.user.is_authenticated and request.user.pk == user.pk:
            messages.success(request, _("Your email address is confirmed."))
            return redirect("console:study_list")
        return render(request, "accounts/verify.html", {"done": True, "verified_user": user})
    return render(
        request,
        "accounts/verify.html",
        {"verified_user": user, "email": email, "already": email_is_verified(user)},
    )


@login_required
@require_POST
def verify_resend(request: HttpRequest) -> HttpResponse:
    if email_is_verified(request.user):
        return redirect("console:study_list")
    if email_verification_resend(user=request.user):
        messages.success(
            request, _("We sent a new link to %(email)s.") % {"email": request.user.email}
        )
    else:
        messages.error(
            request,
            _("Too many emails to this address in the last hour. Try again later."),
        )
    return redirect("console:study_list")


# --- password reset --------------------------------------------------------------------------


class ThrottledPasswordResetForm(PasswordResetForm):
    """Django's reset form (which already answers the same for unknown addresses), with caps
    per address and per client. Over a cap nothing is sent and the answer does not change."""

    def save(self, *args, request=None, **kwargs):
        client_key = _client_key(request) if request is not None else "none"
        if not password_reset_allowed(email=self.cleaned_data["email"], client_key=client_key):
            return
        super().save(*args, request=request, **kwargs)


class ThrottledPasswordResetView(PasswordResetView):
    form_class = ThrottledPasswordResetForm

    def form_valid(self, form):
        # Links point at SITE_URL (not the request's Host header), https when it is.
        site = urlsplit(settings.SITE_URL)
        self.domain_override = site.netloc
        self.use_https = site.scheme == "https"
        return super().form_valid(form)
