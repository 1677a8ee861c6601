"""Console forms: new study, one form (or formset) per protocol section, YAML editor, launch.

Forms only check the shape of what was typed (numbers, times, line formats); the meaning of the
merged protocol is checked by the protocol validator, so the rules live in one place.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from django import forms
from django.conf import settings
from django.utils.translation import gettext_lazy as _

from studyplatform.chat.services import DEFAULT_LIMITS
from studyplatform.core.i18n import localized
from studyplatform.core.model_endpoints import endpoints_all
from studyplatform.studies.protocol.yaml_lines import (
    MAX_PROTOCOL_BYTES,
    YamlSyntaxError,
    load_with_lines,
)

from .design.fields import RULE_FIELDS, csv_list, lang_field, platform_languages
from .design.text_lines import lines_to_checkboxes, lines_to_flags

EXAMPLES_DIR = Path(settings.BASE_DIR) / "examples"
LANGUAGE_NAMES = {"en": _("English"), "pt-br": _("Brazilian Portuguese")}


def template_choices() -> list[tuple[str, str]]:
    """The shipped example protocols as (file stem, "title (stem)") choices."""
    out = []
    for path in sorted(EXAMPLES_DIR.glob("*.yaml")):
        try:
            title = yaml.safe_load(path.read_text())["study"]["title"]
        except (yaml.YAMLError, KeyError, TypeError):
            continue
        out.append((path.stem, f"{localized(title, 'en')} ({path.stem})"))
    return out


class ChangeNoteMixin(forms.Form):
    change_note = forms.CharField(
        label=_("Change note"),
        required=False,
        max_length=1000,
        help_text=_("Why the protocol changes. Required once the study is live."),
    )


class NewStudyForm(forms.Form):
    source = forms.ChoiceField(
        label=_("Start from"),
        choices=[("template", _("A template")), ("upload", _("A YAML file"))],
        widget=forms.RadioSelect,
        initial="template",
    )
    template = forms.ChoiceField(label=_("Template"), widget=forms.RadioSelect, required=False)
    slug = forms.SlugField(
        label=_("Short name (slug)"),
        max_length=80,
        required=False,
        help_text=_("Lowercase letters, digits and hyphens; it appears in the study's link."),
    )
    title = forms.CharField(label=_("Title"), max_length=200, required=False)
    file = forms.FileField(label=_("Protocol file (YAML)"), required=False)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["template"].choices = template_choices()

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if data.get("source") == "template":
            for name in ("template", "slug", "title"):
                if not data.get(name):
                    self.add_error(name, _("This field is required when starting from a template."))
        elif data.get("source") == "upload" and not data.get("file"):
            self.add_error("file", _("Choose a YAML file to upload."))
        elif data.get("source") == "upload" and data["file"].size > MAX_PROTOCOL_BYTES:
            # Refused before the file is read into memory.
            self.add_error(
                "file",
                _("The file is too large (at most %(kb)d KB).")
                % {"kb": MAX_PROTOCOL_BYTES // 1024},
            )
        return data

    def protocol_text(self) -> str:
        """The YAML text to create the study from (template or upload)."""
        if self.cleaned_data["source"] == "upload":
            raw = self.cleaned_data["file"].read()
            try:
                return raw.decode("utf-8")
            except UnicodeDecodeError:
                return ""
        return (EXAMPLES_DIR / f"{self.cleaned_data['template']}.yaml").read_text()


def _languages_choices() -> list[tuple[str, str]]:
    return [(lang, LANGUAGE_NAMES.get(lang, lang)) for lang in platform_languages()]


class StudySectionForm(ChangeNoteMixin):
    title = forms.CharField(label=_("Title"), max_length=200)
    timezone = forms.CharField(label=_("Time zone"), max_length=64, help_text="America/Sao_Paulo")
    languages = forms.MultipleChoiceField(label=_("Languages"), widget=forms.CheckboxSelectMultiple)
    duration_days = forms.IntegerField(label=_("Duration (days)"), min_value=1)
    target_enrollment = forms.IntegerField(
        label=_("Target enrollment"), min_value=1, required=False
    )
    panel = forms.ChoiceField(
        label=_("Recruitment panel"),
        choices=[("none", _("None")), ("prolific", "Prolific"), ("other", _("Other"))],
    )
    collect_email = forms.BooleanField(label=_("Collect email addresses"), required=False)
    completion_url = forms.URLField(
        label=_("Completion URL"), required=False, max_length=500, assume_scheme="https"
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["languages"].choices = _languages_choices()
        for lang in platform_languages():
            self.fields[lang_field("description", lang)] = forms.CharField(
                label=_("Description (%(lang)s)") % {"lang": LANGUAGE_NAMES.get(lang, lang)},
                widget=forms.Textarea(attrs={"rows": 3}),
                required=False,
            )
        # The change note is shown last, just above the save button.
        self.order_fields([n for n in self.fields if n != "change_note"] + ["change_note"])

    def clean_timezone(self) -> str:
        name = self.cleaned_data["timezone"].strip()
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            raise forms.ValidationError(
                _("Unknown time zone; use an IANA name such as America/Sao_Paulo.")
            ) from None
        return name


class ArmForm(forms.Form):
    key = forms.CharField(label=_("Key"), max_length=40)
    weight = forms.IntegerField(label=_("Weight"), min_value=1, max_value=100, initial=1)
    # Which servers exist is platform configuration: the choices are the registered endpoints
    # (filled in __init__), never a free URL.
    endpoint = forms.ChoiceField(label=_("Model endpoint"))
    model_name = forms.CharField(label=_("Model name"), max_length=200)
    context_tokens = forms.IntegerField(label=_("Context tokens"), min_value=1, required=False)
    temperature = forms.DecimalField(
        label=_("Temperature"), min_value=0, max_value=2, required=False, decimal_places=3
    )
    max_tokens = forms.IntegerField(label=_("Max tokens"), min_value=1, required=False)
    system_prompt = forms.CharField(
        label=_("System prompt"), widget=forms.Textarea(attrs={"rows": 4}), required=False
    )

    def __init__(self, *args, endpoints: dict | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.endpoints = endpoints_all() if endpoints is None else endpoints
        # A blank first choice keeps the empty "add an arm" row unchanged, so it is skipped.
        self.fields["endpoint"].choices = [("", "—")] + [
            (name, f"{name} ({endpoint.kind})") for name, endpoint in self.endpoints.items()
        ]
        self.fields["model_name"].help_text = "; ".join(
            f"{name}: {endpoint.models_text()}" for name, endpoint in self.endpoints.items()
        )
        for lang in platform_languages():
            self.fields[lang_field("label", lang)] = forms.CharField(
                label=_("Label shown to participants (%(lang)s)")
                % {"lang": LANGUAGE_NAMES.get(lang, lang)},
                max_length=200,
                required=False,
            )

    def clean(self):
        data = super().clean()
        endpoint = self.endpoints.get(data.get("endpoint") or "")
        model = data.get("model_name")
        if endpoint is not None and model and not endpoint.allows(model):
            self.add_error(
                "model_name",
                _("Not an allowed model on endpoint %(name)s (allowed: %(models)s)")
                % {"name": endpoint.name, "models": endpoint.models_text()},
            )
        return data


class BaseArmFormSet(forms.BaseFormSet):
    def get_form_kwargs(self, index):
        # One look-up of the registered endpoints for all the rows.
        if not hasattr(self, "_endpoints"):
            self._endpoints = endpoints_all()
        return {**super().get_form_kwargs(index), "endpoints": self._endpoints}


ArmFormSet = forms.formset_factory(ArmForm, formset=BaseArmFormSet, extra=1, can_delete=True)


class ArmsSectionForm(ChangeNoteMixin):
    """Only the change note; the arms themselves are a formset (prefix "arms")."""


class AllocationSectionForm(ChangeNoteMixin):
    method = forms.ChoiceField(
        label=_("Method"),
        choices=[
            ("simple", _("Simple randomization")),
            ("permuted_blocks", _("Permuted blocks")),
            ("stratified_blocks", _("Stratified permuted blocks")),
        ],
    )
    block_sizes = forms.CharField(
        label=_("Block sizes"),
        required=False,
        help_text=_("Comma-separated, e.g. 2, 4; each a multiple of the arms' total weight"),
    )
    strata = forms.CharField(
        label=_("Strata"),
        required=False,
        help_text=_("Screener question keys, comma-separated"),
    )
    disclose_to_participant = forms.BooleanField(
        label=_("Tell participants their arm"), required=False
    )

    field_order = ["method", "block_sizes", "strata", "disclose_to_participant", "change_note"]

    def clean_block_sizes(self) -> list[int]:
        try:
            return [int(part) for part in csv_list(self.cleaned_data["block_sizes"])]
        except ValueError:
            raise forms.ValidationError(
                _("Write block sizes as whole numbers, e.g. 2, 4.")
            ) from None

    def clean_strata(self) -> list[str]:
        return csv_list(self.cleaned_data["strata"])


class ConsentSectionForm(ChangeNoteMixin):
    signature = forms.ChoiceField(
        label=_("Signature"),
        choices=[("checkbox", _("Checkbox")), ("typed_name", _("Typed name"))],
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.languages = platform_languages()
        for lang in self.languages:
            name = LANGUAGE_NAMES.get(lang, lang)
            self.fields[lang_field("version", lang)] = forms.IntegerField(
                label=_("Version"), min_value=1, required=False
            )
            self.fields[lang_field("title", lang)] = forms.CharField(
                label=_("Title (%(lang)s)") % {"lang": name}, max_length=200, required=False
            )
            self.fields[lang_field("body", lang)] = forms.CharField(
                label=_("Text (%(lang)s, Markdown)") % {"lang": name},
                widget=forms.Textarea(attrs={"rows": 10}),
                required=False,
            )
            self.fields[lang_field("checkboxes", lang)] = forms.CharField(
                label=_("Checkboxes (%(lang)s)") % {"lang": name},
                widget=forms.Textarea(attrs={"rows": 4, "class": "code"}),
                required=False,
                help_text=_("One per line: key | label | required (or optional)"),
            )
        self.order_fields([n for n in self.fields if n != "change_note"] + ["change_note"])

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        for lang in self.languages:
            name = lang_field("checkboxes", lang)
            try:
                data[name] = lines_to_checkboxes(data.get(name, ""))
            except ValueError as exc:
                self.add_error(name, str(exc))
        return data

    def language_groups(self) -> list[tuple[str, str, list]]:
        """(language, name, bound fields) for rendering one fieldset per language."""
        return [
            (
                lang,
                LANGUAGE_NAMES.get(lang, lang),
                [self[lang_field(f, lang)] for f in ("version", "title", "body", "checkboxes")],
            )
            for lang in self.languages
        ]


def _yaml_list_field(value: str) -> list:
    if not value.strip():
        return []
    try:
        # The protocol's own loader: same ceilings (size, nesting, no anchors or aliases).
        data, _lines = load_with_lines(value)
    except YamlSyntaxError as exc:
        raise forms.ValidationError(
            _("Invalid YAML on line %(line)s: %(problem)s")
            % {"line": exc.line or "?", "problem": exc.message.removeprefix("invalid YAML: ")}
        ) from None
    if not isinstance(data, list):
        raise forms.ValidationError(_("Write a list: each item starts with “- ”."))
    return data


class ScreenerSectionForm(ChangeNoteMixin):
    questions = forms.CharField(
        label=_("Questions"),
        widget=forms.Textarea(attrs={"rows": 12, "class": "code"}),
        required=False,
        help_text=_("A YAML list: key, type, text (per language), options, min, max."),
    )
    eligibility = forms.CharField(
        label=_("Eligibility rules"),
        widget=forms.Textarea(attrs={"rows": 8, "class": "code"}),
        required=False,
        help_text=_("A YAML list: key, question, op, value, message (per language)."),
    )

    def clean_questions(self) -> list:
        return _yaml_list_field(self.cleaned_data["questions"])

    def clean_eligibility(self) -> list:
        return _yaml_list_field(self.cleaned_data["eligibility"])


class ScheduleEntryForm(forms.Form):
    key = forms.CharField(label=_("Key"), max_length=40)
    instruments = forms.CharField(
        label=_("Instruments"), help_text=_("Comma-separated, e.g. who5, phq9")
    )
    rule_type = forms.ChoiceField(
        label=_("Rule"), choices=[(k, k) for k in RULE_FIELDS], initial="recurring"
    )
    every_days = forms.IntegerField(label=_("Every N days"), min_value=1, required=False)
    at = forms.RegexField(
        label=_("At (local HH:MM)"),
        regex=r"^([01][0-9]|2[0-3]):[0-5][0-9]$",
        required=False,
        error_messages={"invalid": _("Use a 24-hour time as HH:MM.")},
    )
    start_day = forms.IntegerField(label=_("Start day"), min_value=0, required=False)
    end_day = forms.IntegerField(label=_("End day"), min_value=0, required=False)
    delay_minutes = forms.IntegerField(label=_("Delay (minutes)"), min_value=0, required=False)
    days = forms.CharField(
        label=_("Days"),
        required=False,
        help_text=_("Weekdays (mon, wed) or, for no_chat, a number of days"),
    )
    dates = forms.CharField(label=_("Dates (YYYY-MM-DD, comma-separated)"), required=False)
    per_day = forms.IntegerField(label=_("Prompts per day"), min_value=1, required=False)
    between = forms.CharField(label=_("Between (HH:MM-HH:MM)"), required=False)
    min_gap_minutes = forms.IntegerField(label=_("Minimum gap (minutes)"), required=False)
    gap_minutes = forms.IntegerField(label=_("Gap after session (minutes)"), required=False)
    max_per_day = forms.IntegerField(label=_("At most per day"), min_value=1, required=False)
    count = forms.IntegerField(label=_("After N messages"), min_value=1, required=False)
    repeat = forms.BooleanField(label=_("Repeat"), required=False)
    window_hours = forms.DecimalField(label=_("Window (hours)"), min_value=0, required=False)
    reminder_offsets = forms.CharField(
        label=_("Reminders (hours after opening)"), required=False, help_text="24, 48"
    )
    reminder_max = forms.IntegerField(label=_("At most N reminders"), min_value=0, required=False)
    conditions = forms.MultipleChoiceField(
        label=_("Conditions"),
        required=False,
        widget=forms.CheckboxSelectMultiple,
        choices=[
            ("previous_closed", _("Previous one closed")),
            ("active_in_last_7_days", _("Active in the last 7 days")),
        ],
    )

    def clean_reminder_offsets(self) -> str:
        value = self.cleaned_data["reminder_offsets"]
        for part in csv_list(value):
            try:
                float(part)
            except ValueError:
                raise forms.ValidationError(_("Write hours as numbers, e.g. 24, 48.")) from None
        return value


ScheduleFormSet = forms.formset_factory(ScheduleEntryForm, extra=1, can_delete=True)


class ScheduleSectionForm(ChangeNoteMixin):
    """Only the change note; the entries are a formset (prefix "schedule")."""


class SafetySectionForm(ChangeNoteMixin):
    response_time_hours = forms.DecimalField(label=_("Response time (hours)"), min_value=0)
    alert_recipients = forms.CharField(
        label=_("Alert recipients"),
        widget=forms.Textarea(attrs={"rows": 2}),
        required=False,
        help_text=_("Email addresses, one per line"),
    )
    lexicon = forms.BooleanField(label=_("Lexicon detector"), required=False)
    moderation = forms.BooleanField(label=_("Moderation detector"), required=False)
    flag_items = forms.CharField(
        label=_("Flag items"),
        widget=forms.Textarea(attrs={"rows": 3, "class": "code"}),
        required=False,
        help_text=_("One per line: instrument | item | op | value | severity"),
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for lang in platform_languages():
            self.fields[lang_field("crisis", lang)] = forms.CharField(
                label=_("Crisis resources (%(lang)s)") % {"lang": LANGUAGE_NAMES.get(lang, lang)},
                widget=forms.Textarea(attrs={"rows": 3}),
                required=False,
            )
        self.order_fields([n for n in self.fields if n != "change_note"] + ["change_note"])

    def clean_flag_items(self) -> list:
        try:
            return lines_to_flags(self.cleaned_data["flag_items"])
        except ValueError as exc:
            raise forms.ValidationError(str(exc)) from None


class LimitsSectionForm(ChangeNoteMixin):
    messages_per_minute = forms.IntegerField(
        label=_("Messages per minute"), min_value=1, required=False
    )
    tokens_per_day = forms.IntegerField(label=_("Tokens per day"), min_value=1, required=False)
    max_message_chars = forms.IntegerField(
        label=_("Longest message (characters)"), min_value=1, max_value=100000, required=False
    )

    field_order = ["messages_per_minute", "tokens_per_day", "max_message_chars", "change_note"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for name in ("messages_per_minute", "tokens_per_day", "max_message_chars"):
            self.fields[name].help_text = _("Empty: the platform default (%(n)s)") % {
                "n": DEFAULT_LIMITS[name]
            }


class AnalysisSectionForm(ChangeNoteMixin):
    window_days = forms.IntegerField(label=_("Window (days)"), min_value=1, required=False)
    session_gap_minutes = forms.IntegerField(
        label=_("Session gap (minutes)"), min_value=1, required=False
    )
    outcomes = forms.CharField(
        label=_("Outcomes"), required=False, help_text=_("instrument.score, comma-separated")
    )
    predictors = forms.CharField(label=_("Predictors"), required=False)
    covariates = forms.CharField(
        label=_("Covariates"),
        required=False,
        help_text=_("screener.<question key> or stratum.<stratification factor>, comma-separated"),
    )
    random_effects = forms.CharField(label=_("Random effects"), required=False)
    arm_by_time = forms.BooleanField(label=_("Arm × time interaction"), required=False)
    # Empty choice: the key is left out of the protocol and the documented default applies.
    arm_contrast_method = forms.ChoiceField(
        label=_("Arm contrast"),
        required=False,
        choices=[
            ("", _("Default (cLDA)")),
            ("clda", _("cLDA: common baseline, all occasions")),
            ("ancova", _("ANCOVA on the baseline value")),
            ("none", _("None")),
        ],
    )
    multiplicity_correction = forms.ChoiceField(
        label=_("Correction for the primary family"),
        required=False,
        choices=[
            ("", _("Default (Holm)")),
            ("holm", "Holm"),
            ("bonferroni", "Bonferroni"),
            ("benjamini-hochberg", "Benjamini-Hochberg"),
        ],
    )

    field_order = [
        "window_days",
        "session_gap_minutes",
        "outcomes",
        "predictors",
        "covariates",
        "random_effects",
        "arm_by_time",
        "arm_contrast_method",
        "multiplicity_correction",
        "change_note",
    ]


SECTION_FORMS: dict[str, type[forms.Form]] = {
    "study": StudySectionForm,
    "arms": ArmsSectionForm,
    "allocation": AllocationSectionForm,
    "consent": ConsentSectionForm,
    "screener": ScreenerSectionForm,
    "schedule": ScheduleSectionForm,
    "safety": SafetySectionForm,
    "limits": LimitsSectionForm,
    "analysis": AnalysisSectionForm,
}
# Sections whose rows are a formset, and the formset class for each.
SECTION_FORMSETS: dict[str, type[forms.BaseFormSet]] = {
    "arms": ArmFormSet,
    "schedule": ScheduleFormSet,
}


class YamlForm(ChangeNoteMixin):
    yaml = forms.CharField(
        label=_("Protocol (YAML)"),
        widget=forms.Textarea(attrs={"rows": 40, "class": "code", "spellcheck": "false"}),
        strip=False,
    )


class PilotInviteForm(forms.Form):
    label = forms.CharField(
        label=_("Who is it for?"),
        max_length=100,
        help_text=_("A note for the team (not shown to the tester)."),
    )


class CalendarForm(forms.Form):
    enrolled = forms.DateField(label=_("Enrolled on"), required=False)
    tz = forms.CharField(label=_("Participant time zone"), required=False, max_length=64)

    def clean_tz(self) -> str:
        name = self.cleaned_data["tz"].strip()
        if name:
            try:
                ZoneInfo(name)
            except (ZoneInfoNotFoundError, ValueError):
                raise forms.ValidationError(_("Unknown time zone.")) from None
        return name
