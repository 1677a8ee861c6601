"""Export options: defaults, validation and the errors a researcher sees for each bad option."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from studyplatform.studies.models import Study

from .. import codebook as cb
from ..models import DatasetExport
from ..writers import FORMATS

DATE_MODES = ("relative", "shifted")
CHAT_MODES = ("exclude", "metadata")
BASE_QUASI_IDENTIFIERS = ("age_band", "gender", "arm", "language", "status")
DEFAULT_OPTIONS: dict[str, Any] = {
    "tables": list(cb.DEFAULT_TABLES),
    "format": "csv",
    "dates": "relative",
    "chat_mode": "exclude",
    "include_time_of_day": False,
    "k": 5,
    "quasi_identifiers": ["age_band", "gender", "arm"],
    "include_pilot": False,
    "reuse_key_of": None,
}


class ExportError(ValueError):
    """Options that cannot be exported; `errors` maps each option to what is wrong with it."""

    def __init__(self, errors: dict[str, str]):
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors


def _bool(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "1", "yes", "false", "0", "no"):
        return value.lower() in ("true", "1", "yes")
    return None


def screener_export_questions(study: Study) -> list[dict[str, Any]]:
    """Screener questions exported as categorical columns: yes/no and single choice, except
    gender (its own column). Numbers (other than age, banded) and text are never exported."""
    questions = study.protocol.get("screener", {}).get("questions", [])
    return [
        q
        for q in questions
        if q.get("type") in ("yes_no", "single_choice") and q.get("key") not in ("gender", "age")
    ]


def export_options_clean(study: Study, raw: Mapping[str, Any]) -> dict[str, Any]:
    """Defaults filled in and every option checked; raises ExportError listing each problem."""
    unknown = set(raw) - set(DEFAULT_OPTIONS)
    errors: dict[str, str] = dict.fromkeys(sorted(unknown), "unknown option")
    options = {**DEFAULT_OPTIONS, **{k: v for k, v in raw.items() if k in DEFAULT_OPTIONS}}

    tables = options["tables"]
    if isinstance(tables, str):
        tables = [t.strip() for t in tables.split(",") if t.strip()]
    if not isinstance(tables, list | tuple) or not tables:
        errors["tables"] = f"choose one or more of {', '.join(cb.TABLES)}"
    else:
        bad = [t for t in tables if t not in cb.TABLES]
        if bad:
            errors["tables"] = f"unknown table(s) {', '.join(map(str, bad))}"
        # Keep the canonical order so two exports of the same tables look the same.
        options["tables"] = [t for t in cb.TABLES if t in tables]
    for name, allowed in (("format", FORMATS), ("dates", DATE_MODES), ("chat_mode", CHAT_MODES)):
        if options[name] not in allowed:
            errors[name] = f"must be one of {', '.join(allowed)}"
    for name in ("include_time_of_day", "include_pilot"):
        value = _bool(options[name])
        if value is None:
            errors[name] = "must be true or false"
        options[name] = value
    k = options["k"]
    if isinstance(k, str) and k.isdigit():
        k = int(k)
    if isinstance(k, bool) or not isinstance(k, int) or not 2 <= k <= 100:
        errors["k"] = "must be a whole number from 2 to 100"
    options["k"] = k
    qis = options["quasi_identifiers"]
    if isinstance(qis, str):
        qis = [q.strip() for q in qis.split(",") if q.strip()]
    allowed_qis = list(BASE_QUASI_IDENTIFIERS) + [
        f"screener_{q['key']}" for q in screener_export_questions(study)
    ]
    if not isinstance(qis, list | tuple) or any(q not in allowed_qis for q in qis):
        errors["quasi_identifiers"] = f"choose from {', '.join(allowed_qis)}"
    else:
        options["quasi_identifiers"] = list(dict.fromkeys(qis))
    reuse = options["reuse_key_of"]
    if reuse not in (None, ""):
        if isinstance(reuse, str) and reuse.isdigit():
            reuse = int(reuse)
        if not isinstance(reuse, int) or isinstance(reuse, bool):
            errors["reuse_key_of"] = "must be the id of an earlier export of this study"
        elif not DatasetExport.objects.filter(study=study, pk=reuse).exists():
            errors["reuse_key_of"] = "no such export of this study"
        options["reuse_key_of"] = reuse
    else:
        options["reuse_key_of"] = None
    if errors:
        raise ExportError(errors)
    return options
