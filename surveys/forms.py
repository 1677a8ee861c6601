"""Participant-facing questionnaire forms: an instrument's wording in the participant's language
and a Django form built from its items that turns posted strings back into typed answers.

Wording is chosen per text, in this order: the instrument's own wording for the participant's
language; wording the protocol supplies under ``surveys.translations`` (validated translations a
researcher pastes in, since we do not ship home-made translations of validated instruments);
the instrument's English wording; the protocol's English wording; a neutral "Question N".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from django import forms
from django.utils.translation import gettext as _

from studyplatform.core.i18n import text_for

from .instruments import Instrument, Item, Value


def protocol_translations(protocol: Mapping[str, Any], instrument_key: str) -> Mapping[str, Any]:
    """``surveys.translations[instrument_key]`` from a protocol, read defensively (the field is
    optional and older protocol versions do not have it)."""
    surveys = protocol.get("surveys") if isinstance(protocol, Mapping) else None
    translations = surveys.get("translations") if isinstance(surveys, Mapping) else None
    found = translations.get(instrument_key) if isinstance(translations, Mapping) else None
    return found if isinstance(found, Mapping) else {}


@dataclass(frozen=True)
class ShownOption:
    value: Value
    label: str


@dataclass(frozen=True)
class ShownItem:
    item: Item
    text: str
    options: tuple[ShownOption, ...] = ()
    anchors: tuple[str, str] = ("", "")

    @property
    def id(self) -> str:
        return self.item.id


@dataclass(frozen=True)
class ShownInstrument:
    instrument: Instrument
    title: str
    instructions: str
    items: tuple[ShownItem, ...] = field(default_factory=tuple)
    copyright_line: str = ""


class _Wording:
    """Picks each text through the fallback chain described in the module docstring."""

    def __init__(self, language: str, supplied: Mapping[str, Any]) -> None:
        self.language = language
        self.supplied_own = text_for(supplied, language) or {}
        self.supplied_en = text_for(supplied, "en") or {}

    def _supplied(self, section: Mapping[str, Any], *path: str) -> str | None:
        value: Any = section
        for key in path:
            value = value.get(key) if isinstance(value, Mapping) else None
        return value if isinstance(value, str) and value.strip() else None

    def pick(self, shipped: Mapping[str, Any] | None, *path: str) -> str | None:
        return (
            text_for(shipped, self.language)
            or self._supplied(self.supplied_own, *path)
            or text_for(shipped, "en")
            or self._supplied(self.supplied_en, *path)
        )


def shown_instrument(
    instrument: Instrument, *, language: str, protocol: Mapping[str, Any]
) -> ShownInstrument:
    """The instrument's title, instructions, items and option labels in ``language``."""
    wording = _Wording(language, protocol_translations(protocol, instrument.key))
    raw_items = {raw["id"]: raw for raw in instrument.definition.get("items", [])}
    items = []
    for n, item in enumerate(instrument.items, start=1):
        options = tuple(
            ShownOption(
                value=o.value,
                # JSON object keys are strings, so the protocol labels options by str(value).
                label=wording.pick(o.label, "options", str(o.value)) or str(o.value),
            )
            for o in item.options
        )
        anchors = raw_items.get(item.id, {}).get("anchors", {})
        items.append(
            ShownItem(
                item=item,
                text=wording.pick(item.text, "items", item.id)
                or _("Question %(number)s") % {"number": n},
                options=options,
                anchors=(
                    wording.pick(anchors.get("min")) or "",
                    wording.pick(anchors.get("max")) or "",
                ),
            )
        )
    return ShownInstrument(
        instrument=instrument,
        title=wording.pick(instrument.title, "title") or instrument.key,
        instructions=wording.pick(instrument.definition.get("instructions"), "instructions") or "",
        items=tuple(items),
        copyright_line=instrument.licence.get("copyright_line", ""),
    )


class RangeInput(forms.NumberInput):
    input_type = "range"


def _number(value: float | None) -> float | int | None:
    # Whole numbers are stored as ints so answers read naturally in exports (3, not 3.0).
    if value is None:
        return None
    return int(value) if float(value).is_integer() else value


class InstrumentForm(forms.Form):
    """One field per item, named by item id. Fields are not `required` here: a partial save is
    allowed, and on submission the service reports missing required items itself."""

    def __init__(self, *args: Any, shown: ShownInstrument, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.shown = shown
        for shown_item in shown.items:
            self.fields[shown_item.id] = self._field(shown_item)

    @staticmethod
    def _field(shown_item: ShownItem) -> forms.Field:
        item = shown_item.item
        legend_id = f"legend-{item.id}"
        # Every item is a fieldset whose legend is the wording; single inputs are named by it.
        named = {"aria-labelledby": legend_id}
        if item.type in ("likert", "single_choice", "multiple_choice"):
            by_key = {str(o.value): o.value for o in shown_item.options}
            choices = [(str(o.value), o.label) for o in shown_item.options]
            if item.type == "multiple_choice":
                return forms.TypedMultipleChoiceField(
                    choices=choices,
                    coerce=by_key.__getitem__,
                    required=False,
                    widget=forms.CheckboxSelectMultiple,
                )
            return forms.TypedChoiceField(
                choices=choices,
                coerce=by_key.__getitem__,
                empty_value=None,
                required=False,
                widget=forms.RadioSelect,
            )
        if item.type in ("slider", "number"):
            attrs = dict(named)
            for name in ("min", "max", "step"):
                if getattr(item, name) is not None:
                    attrs[name] = f"{getattr(item, name):g}"
            if item.type == "number" and item.step is None:
                attrs["step"] = "1" if item.integer else "any"
            if item.type == "slider":
                attrs["oninput"] = f"document.getElementById('out-{item.id}').value=this.value"
            widget = RangeInput(attrs=attrs) if item.type == "slider" else forms.NumberInput(attrs)
            return forms.FloatField(required=False, widget=widget)
        attrs = {**named, "rows": "4"}
        if item.max_length:
            attrs["maxlength"] = str(item.max_length)
        return forms.CharField(required=False, strip=True, widget=forms.Textarea(attrs=attrs))

    def answers(self) -> dict[str, Any]:
        """Typed answers from `cleaned_data`; unanswered items are left out."""
        result: dict[str, Any] = {}
        for shown_item in self.shown.items:
            value = self.cleaned_data.get(shown_item.id)
            if shown_item.item.type in ("slider", "number"):
                value = _number(value)
            if value in (None, "", []):
                continue
            result[shown_item.id] = value
        return result

    @staticmethod
    def initial_from(answers: Mapping[str, Any]) -> dict[str, Any]:
        """Saved answers as the form's initial values (choice fields hold str(value))."""
        initial: dict[str, Any] = {}
        for key, value in answers.items():
            if isinstance(value, list):
                initial[key] = [str(v) for v in value]
            elif isinstance(value, int | float) and not isinstance(value, bool):
                initial[key] = str(value)
            else:
                initial[key] = value
        return initial

    def rows(self) -> list[tuple[ShownItem, forms.BoundField]]:
        return [(shown_item, self[shown_item.id]) for shown_item in self.shown.items]
