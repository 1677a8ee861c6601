"""The one-item-per-line text formats of two designer fields: consent checkboxes
("key | label | required") and safety flag items ("instrument | item | op | value | severity").

A textarea of short lines is easier to edit than a nested formset for these small lists; the
parsers raise ValueError naming the line that is wrong, which the form shows on its field.
"""

from __future__ import annotations

from django.utils.translation import gettext as _

from .fields import json_number

_TRUE = {"required", "yes", "true", "1", "y"}
_FALSE = {"optional", "no", "false", "0", "n", ""}


def checkboxes_to_lines(checkboxes: list[dict]) -> str:
    return "\n".join(
        f"{c['key']} | {c['label']} | {'required' if c.get('required') else 'optional'}"
        for c in checkboxes
    )


def lines_to_checkboxes(text: str) -> list[dict]:
    """Parse "key | label | required" lines; ValueError names the line that is wrong."""
    out = []
    for number, line in enumerate((text or "").splitlines(), start=1):
        if not line.strip():
            continue
        parts = [p.strip() for p in line.split("|")]
        if len(parts) < 2 or len(parts) > 3 or not parts[0] or not parts[1]:
            raise ValueError(
                _("line %(n)d: write key | label | required (or optional)") % {"n": number}
            )
        flag = parts[2].lower() if len(parts) == 3 else ""
        if flag not in _TRUE | _FALSE:
            raise ValueError(
                _("line %(n)d: the third part must be required or optional") % {"n": number}
            )
        out.append({"key": parts[0], "label": parts[1], "required": flag in _TRUE})
    return out


def flags_to_lines(flags: list[dict]) -> str:
    return "\n".join(
        " | ".join(
            str(v)
            for v in (f["instrument"], f["item"], f["op"], f["value"], f.get("severity", ""))
            if v != ""
        )
        for f in flags
    )


def lines_to_flags(text: str) -> list[dict]:
    """Parse "instrument | item | op | value | severity" lines."""
    out = []
    for number, line in enumerate((text or "").splitlines(), start=1):
        if not line.strip():
            continue
        parts = [p.strip() for p in line.split("|")]
        if len(parts) not in (4, 5):
            raise ValueError(
                _("line %(n)d: write instrument | item | op | value | severity") % {"n": number}
            )
        try:
            value = json_number(parts[3])
        except ValueError:
            raise ValueError(_("line %(n)d: the value must be a number") % {"n": number}) from None
        flag = {"instrument": parts[0], "item": parts[1], "op": parts[2], "value": value}
        if len(parts) == 5 and parts[4]:
            flag["severity"] = parts[4]
        out.append(flag)
    return out
