"""Participant-facing forms, built from the protocol (screener, consent) in their language."""

from __future__ import annotations

from django import forms
from django.utils.translation import gettext_lazy as _

from studyplatform.core.i18n import localized


class ScreenerForm(forms.Form):
    def __init__(self, *args, questions: list[dict], language: str, **kwargs):
        super().__init__(*args, **kwargs)
        self.questions = questions
        for q in questions:
            label = localized(q["text"], language)
            required = q.get("required", True)
            if q["type"] == "number":
                field = forms.DecimalField(
                    label=label, required=required, min_value=q.get("min"), max_value=q.get("max")
                )
            elif q["type"] == "yes_no":
                field = forms.ChoiceField(
                    label=label,
                    required=required,
                    choices=[("yes", _("Yes")), ("no", _("No"))],
                    widget=forms.RadioSelect,
                )
            elif q["type"] == "single_choice":
                field = forms.ChoiceField(
                    label=label,
                    required=required,
                    widget=forms.RadioSelect,
                    choices=[
                        (str(o["value"]), localized(o["label"], language))
                        for o in q.get("options", [])
                    ],
                )
            elif q["type"] == "multiple_choice":
                field = forms.MultipleChoiceField(
                    label=label,
                    required=required,
                    widget=forms.CheckboxSelectMultiple,
                    choices=[
                        (str(o["value"]), localized(o["label"], language))
                        for o in q.get("options", [])
                    ],
                )
            else:
                field = forms.CharField(label=label, required=required, max_length=500)
            self.fields[q["key"]] = field

    def raw_answers(self) -> dict:
        out = {}
        for q in self.questions:
            value = self.cleaned_data.get(q["key"])
            out[q["key"]] = str(value) if value is not None and q["type"] == "number" else value
        return out


class ConsentForm(forms.Form):
    signature_name = forms.CharField(
        label=_("Type your full name to sign"), max_length=200, required=False
    )
    email = forms.EmailField(
        label=_("Email address"),
        required=False,
        help_text=_(
            "We send your sign-in links and survey invitations here. Researchers never see it."
        ),
    )
    timezone = forms.CharField(widget=forms.HiddenInput, required=False, max_length=64)

    def __init__(self, *args, document, collect_email: bool, **kwargs):
        super().__init__(*args, **kwargs)
        self.document = document
        for box in document.checkboxes:
            self.fields[f"c_{box['key']}"] = forms.BooleanField(
                label=box["label"], required=bool(box.get("required"))
            )
        if document.signature == "typed_name":
            self.fields["signature_name"].required = True
        else:
            del self.fields["signature_name"]
        if collect_email:
            self.fields["email"].required = True
        else:
            del self.fields["email"]

    def choices(self) -> dict[str, bool]:
        return {
            b["key"]: bool(self.cleaned_data.get(f"c_{b['key']}")) for b in self.document.checkboxes
        }

    @property
    def checkbox_fields(self):
        return [self[f"c_{b['key']}"] for b in self.document.checkboxes]


class SignInForm(forms.Form):
    email = forms.EmailField(label=_("Email address"))


class PasswordSignInForm(forms.Form):
    email = forms.EmailField(label=_("Email address"))
    password = forms.CharField(label=_("Password"), widget=forms.PasswordInput)


class PasswordSetForm(forms.Form):
    current = forms.CharField(label=_("Current password"), widget=forms.PasswordInput)
    password = forms.CharField(label=_("New password"), widget=forms.PasswordInput, min_length=10)
    confirm = forms.CharField(label=_("Repeat the password"), widget=forms.PasswordInput)

    def __init__(self, *args, ask_current: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        if not ask_current:
            del self.fields["current"]

    def clean(self):
        data = super().clean()
        if data.get("password") and data.get("password") != data.get("confirm"):
            raise forms.ValidationError(_("The two passwords differ."))
        return data


class WithdrawForm(forms.Form):
    mode = forms.ChoiceField(
        label=_("What should happen to what was already collected?"),
        widget=forms.RadioSelect,
        choices=[
            ("keep", _("Stop taking part, and keep what was collected for the research")),
            ("delete", _("Stop taking part, and delete my messages, answers and contact details")),
        ],
    )
    confirm = forms.BooleanField(label=_("I understand that this cannot be undone."))
