"""Researcher sign-up: anyone can open an account and create studies; access to each study is
then governed by its per-study roles (a new account sees nothing it was not given)."""

from django import forms
from django.contrib.auth import get_user_model, login
from django.contrib.auth.forms import UserCreationForm
from django.shortcuts import redirect, render
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_http_methods

from studyplatform.core.audit import audit_record


class SignUpForm(UserCreationForm):
    email = forms.EmailField(label=_("Email address"))

    class Meta(UserCreationForm.Meta):
        model = get_user_model()
        fields = ("username", "email")

    def clean_email(self):
        email = self.cleaned_data["email"]
        if get_user_model().objects.filter(email__iexact=email).exists():
            raise forms.ValidationError(_("An account with this email address exists already."))
        return email


@require_http_methods(["GET", "POST"])
def signup(request):
    form = SignUpForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = form.save()
        audit_record(actor=user, action="account.signup", target=user)
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        return redirect("console:study_list")
    return render(request, "registration/signup.html", {"form": form})
