"""Factorial designs in a protocol: factors, arms as level combinations, generated arms.

A protocol may declare `factors` (each with its levels). Arms stay the runtime unit (chat,
allocation, exports all work per arm); an arm in a factorial protocol is one cell of the design
and says which level of each factor it is (`levels: {modality: text, task: personal}`).

Instead of listing the cells, a protocol may write `arms_from_factors`: the settings every arm
shares, to which each level adds its own (`factors[].levels[].arm`). The arms are then generated
for every combination of levels when the protocol is read, and the saved version lists them, so
what each participant's arm runs is always written out in the version they were allocated under.

Pure Python, like the rest of the protocol package.
"""

from __future__ import annotations

import copy
import itertools
import math
from collections.abc import Mapping
from typing import Any

from studyplatform.core.i18n import localized

from .yaml_lines import PathParts

GENERATOR = "arms_from_factors"
# Settings a generated arm takes from the factors, never from the shared or per-level settings.
GENERATED_FIELDS = ("key", "label", "levels")
# Level settings that add to the shared value instead of replacing it.
APPENDED_FIELDS = ("system_prompt",)
# Exports write one column per factor, named by the factor key, next to these columns of the
# participants table (tests/exports check this list against the table).
RESERVED_FACTOR_KEYS = frozenset(
    {
        "participant_id",
        "status",
        "is_pilot",
        "language",
        "age_band",
        "gender",
        "arm",
        "consent_version",
        "shares_chats",
        "method",
        "block_number",
        "protocol_version",
    }
)
# ... and the prefixes of its per-question and per-event columns (screener_age, enrolled_day).
RESERVED_FACTOR_PREFIXES = ("screener_", "enrolled_", "completed_", "withdrawn_", "allocated_")
# Between the level labels of a generated arm's label ("Text · Personal").
LABEL_SEPARATOR = " · "


def _error(parts: PathParts, message: str):
    # Imported here: validate.py imports this module for its one call line.
    from .validate import ProtocolError

    return ProtocolError(parts, message)


def _factors_shaped(factors: Any) -> bool:
    """True when `factors` has the shape the generator needs (the schema reports the rest)."""
    if not isinstance(factors, list) or not factors:
        return False
    for factor in factors:
        if not isinstance(factor, Mapping) or not isinstance(factor.get("key"), str):
            return False
        levels = factor.get("levels")
        if not isinstance(levels, list) or not levels:
            return False
        for level in levels:
            if not isinstance(level, Mapping) or not isinstance(level.get("key"), str):
                return False
            if "arm" in level and not isinstance(level["arm"], Mapping):
                return False
    return True


def _languages(doc: Mapping) -> list[str]:
    study = doc.get("study")
    languages = study.get("languages") if isinstance(study, Mapping) else None
    return list(languages) if isinstance(languages, list) and languages else ["en"]


def _generated_label(levels: list[Mapping], languages: list[str]) -> dict[str, str]:
    return {
        lang: LABEL_SEPARATOR.join(
            str(localized(level.get("label"), lang, default=level["key"])) for level in levels
        )
        for lang in languages
    }


def generate_arms(doc: Mapping) -> tuple[list[dict], list[dict[str, PathParts]], list]:
    """The arms `arms_from_factors` stands for: (arms, where each arm's settings came from,
    errors). Each arm's provenance maps a setting to the place in the document that wrote it,
    so a problem with a generated arm is reported where the researcher can fix it."""
    template = doc[GENERATOR]
    factors = doc["factors"]
    errors = []
    for name in GENERATED_FIELDS:
        if name in template:
            errors.append(
                _error(
                    (GENERATOR, name),
                    f"is generated from the factors' levels; remove {name} here",
                )
            )
    decided: dict[str, PathParts] = {}
    for fi, factor in enumerate(factors):
        for li, level in enumerate(factor["levels"]):
            for name in level.get("arm", {}):
                where = ("factors", fi, "levels", li, "arm", name)
                if name in GENERATED_FIELDS:
                    errors.append(
                        _error(where, f"is generated from the factors' levels; remove {name} here")
                    )
                elif name not in APPENDED_FIELDS:
                    other = decided.setdefault(name, where)
                    if other[1] != fi:
                        errors.append(
                            _error(
                                where,
                                f"factor {factors[other[1]]['key']!r} already sets {name}; "
                                "only one factor may decide an arm setting (system_prompt "
                                "fragments are the exception: they are appended)",
                            )
                        )
    languages = _languages(doc)
    arms: list[dict] = []
    provenance: list[dict[str, PathParts]] = []
    seen: dict[str, tuple] = {}
    indexed = [list(enumerate(f["levels"])) for f in factors]
    for combination in itertools.product(*indexed):
        levels = [level for _, level in combination]
        key = "_".join(level["key"] for level in levels)
        arm: dict[str, Any] = {"key": key, "label": _generated_label(levels, languages)}
        source: dict[str, PathParts] = {}
        for name, value in template.items():
            if name not in GENERATED_FIELDS:
                arm[name] = copy.deepcopy(value)
                source[name] = (GENERATOR, name)
        shared_prompt = template.get("system_prompt")
        # A shared prompt that is not text is left for the schema to name.
        prompts = [shared_prompt] if isinstance(shared_prompt, str) else []
        can_append = shared_prompt is None or isinstance(shared_prompt, str)
        for (li, level), (fi, _) in zip(combination, enumerate(factors), strict=True):
            for name, value in level.get("arm", {}).items():
                where = ("factors", fi, "levels", li, "arm", name)
                if name in GENERATED_FIELDS:
                    continue
                if name in APPENDED_FIELDS and isinstance(value, str):
                    if can_append:
                        prompts.append(value)
                        source.setdefault(name, where)
                else:
                    arm[name] = copy.deepcopy(value)
                    source[name] = where
        if prompts:
            # Fragments in factor order, each its own paragraph, so the prompt reads as written.
            arm["system_prompt"] = "\n\n".join(p.strip("\n") for p in prompts) + "\n"
        arm["levels"] = {f["key"]: level["key"] for f, level in zip(factors, levels, strict=True)}
        combo = tuple(arm["levels"].items())
        if len(key) > 40:
            errors.append(
                _error(
                    ("factors",),
                    f"the generated arm key {key!r} is longer than 40 characters; use shorter "
                    "level keys",
                )
            )
        elif key in seen:
            errors.append(
                _error(
                    ("factors",),
                    f"two level combinations give the same arm key {key!r} "
                    f"({_combination_text(seen[key])} and {_combination_text(combo)}); "
                    "rename a level",
                )
            )
        seen.setdefault(key, combo)
        arms.append(arm)
        provenance.append(source)
    return arms, provenance, errors


def _combination_text(combo: tuple) -> str:
    return " & ".join(f"{factor}={level}" for factor, level in combo)


def expand(doc: Any) -> tuple[Any, list[dict[str, PathParts]] | None, list]:
    """`doc` with its arms generated when it has `arms_from_factors` (and the generator kept, for
    validation): (document, provenance of each generated arm or None, errors that stop the
    generation). Documents without a generator come back as they are."""
    if not isinstance(doc, Mapping) or GENERATOR not in doc:
        return doc, None, []
    if "arms" in doc:
        return (
            doc,
            None,
            [
                _error(
                    (GENERATOR,),
                    "generates the arms, so the protocol must not also list arms: remove "
                    "`arms`, or remove arms_from_factors and give each listed arm its `levels`",
                )
            ],
        )
    if "factors" not in doc:
        return (
            doc,
            None,
            [_error((GENERATOR,), "generates arms from `factors`, which the protocol lacks")],
        )
    if not isinstance(doc[GENERATOR], Mapping) or not _factors_shaped(doc["factors"]):
        return doc, None, []  # the schema names what is wrong with the shape
    # Counted before anything is built: five factors of ten levels would be 100,000 arms.
    cells = math.prod(len(f["levels"]) for f in doc["factors"])
    most = _max_arms()
    if cells > most:
        return (
            doc,
            None,
            [
                _error(
                    ("factors",),
                    f"the levels make {cells} combinations, and a protocol has at most {most} "
                    "arms; use fewer factors or levels",
                )
            ],
        )
    arms, provenance, errors = generate_arms(doc)
    out = dict(doc)
    out["arms"] = arms
    return out, provenance, errors


def _max_arms() -> int:
    from .validate import schema

    return int(schema()["properties"]["arms"].get("maxItems", 20))


def for_storage(doc: dict) -> dict:
    """A valid document as it is saved: generated arms written out, the generator dropped."""
    expanded, provenance, _ = expand(doc)
    if provenance is None:
        return doc
    return {k: v for k, v in expanded.items() if k != GENERATOR}


def from_levels(error) -> bool:
    """True for an error in a generated arm's key, label or levels (made from the factors)."""
    parts = error.parts
    return len(parts) > 2 and parts[0] == "arms" and parts[2] in GENERATED_FIELDS


def remap_generated(error, provenance: list[dict[str, PathParts]] | None, arms: list):
    """An error found in a generated arm, moved to the setting in the document that wrote it."""
    parts = error.parts
    if provenance is None or len(parts) < 2 or parts[0] != "arms" or not isinstance(parts[1], int):
        return error
    i = parts[1]
    if i >= len(provenance):
        return error
    field = parts[2] if len(parts) > 2 else None
    source = provenance[i].get(field) if isinstance(field, str) else None
    where = (*source, *parts[3:]) if source else (GENERATOR,)
    key = arms[i].get("key") if i < len(arms) and isinstance(arms[i], Mapping) else i
    return _error(where, f"{error.message} (in the generated arm {key})")


def factor_errors(doc: dict, languages: list[str]) -> list:
    """Meaning checks for a factorial protocol whose structure the schema has checked."""
    arms = doc["arms"]
    factors = doc.get("factors")
    errors = []
    if not factors:
        if "factorial" in (doc.get("analysis") or {}):
            errors.append(
                _error(
                    ("analysis", "factorial"),
                    "a factorial analysis needs the protocol's `factors`",
                )
            )
        for i, arm in enumerate(arms):
            if "levels" in arm:
                errors.append(
                    _error(
                        ("arms", i, "levels"),
                        "names factor levels, but the protocol declares no `factors`",
                    )
                )
        return errors

    from .validate import _duplicate_keys, _text_languages_errors

    errors += _duplicate_keys(factors, ("factors",))
    levels_of: dict[str, list[str]] = {}
    for fi, factor in enumerate(factors):
        path = ("factors", fi)
        if factor["key"] in RESERVED_FACTOR_KEYS or factor["key"].startswith(
            RESERVED_FACTOR_PREFIXES
        ):
            errors.append(
                _error(
                    (*path, "key"),
                    f"{factor['key']!r} is already a column of the exported participants "
                    "table; choose another factor key",
                )
            )
        errors += _text_languages_errors(factor.get("label"), (*path, "label"), languages)
        errors += _duplicate_keys(factor["levels"], (*path, "levels"))
        for li, level in enumerate(factor["levels"]):
            errors += _text_languages_errors(
                level.get("label"), (*path, "levels", li, "label"), languages
            )
        levels_of.setdefault(factor["key"], [level["key"] for level in factor["levels"]])

    names = ", ".join(levels_of)
    plan = (doc.get("analysis") or {}).get("factorial") or {}
    for i, name in enumerate(plan.get("factors", [])):
        if name not in levels_of:
            errors.append(
                _error(("analysis", "factorial", "factors", i), f"no factor {name!r} ({names})")
            )
    cells: dict[tuple, int] = {}
    for i, arm in enumerate(arms):
        path = ("arms", i, "levels")
        given = arm.get("levels")
        if given is None:
            example = ", ".join(f"{f}: {lv[0]}" for f, lv in levels_of.items())
            errors.append(
                _error(
                    ("arms", i),
                    f"must name its level of each factor, e.g. levels: {{{example}}}",
                )
            )
            continue
        complete = True
        for factor, level in given.items():
            if factor not in levels_of:
                errors.append(_error((*path, factor), f"no factor {factor!r} (factors: {names})"))
                complete = False
            elif level not in levels_of[factor]:
                errors.append(
                    _error(
                        (*path, factor),
                        f"factor {factor!r} has no level {level!r} "
                        f"(levels: {', '.join(levels_of[factor])})",
                    )
                )
                complete = False
        missing = [f for f in levels_of if f not in given]
        if missing:
            errors.append(
                _error(path, "must name a level of every factor; missing: " + ", ".join(missing))
            )
            complete = False
        if not complete:
            continue
        cell = tuple((f, given[f]) for f in levels_of)
        if cell in cells:
            j = cells[cell]
            errors.append(
                _error(
                    path,
                    f"arm {arms[j]['key']!r} (arms[{j}]) already is {_combination_text(cell)}; "
                    "every arm must be a different combination",
                )
            )
        cells.setdefault(cell, i)
    total = math.prod(len(levels) for levels in levels_of.values())
    if not errors and total > _max_arms():
        errors.append(
            _error(
                ("factors",),
                f"the levels make {total} combinations, and a protocol has at most "
                f"{_max_arms()} arms; use fewer factors or levels",
            )
        )
    if not errors:
        absent = [
            _combination_text(tuple(zip(levels_of, combo, strict=True)))
            for combo in itertools.product(*levels_of.values())
            if tuple(zip(levels_of, combo, strict=True)) not in cells
        ]
        if absent:
            shown = "; ".join(absent[:5])
            if len(absent) > 5:
                shown += f"; and {len(absent) - 5} more"
            errors.append(
                _error(
                    ("arms",),
                    "a factorial design needs one arm for every combination of levels "
                    f"(or arms_from_factors to generate them); missing: {shown}",
                )
            )
    return errors


def arm_levels(doc: Mapping) -> dict[str, dict[str, str]]:
    """{arm key: {factor key: level key}} of a saved protocol (empty when not factorial)."""
    if not doc.get("factors"):
        return {}
    return {
        arm["key"]: dict(arm.get("levels") or {})
        for arm in doc.get("arms", []) or []
        if isinstance(arm, Mapping) and "key" in arm
    }


def analysis_design(doc: Mapping) -> dict[str, Any] | None:
    """What the analysis needs besides the plan's `factorial` section: the factors' level keys
    in protocol order and each arm's levels (None when the plan asks for no factorial
    analysis)."""
    section = (doc.get("analysis") or {}).get("factorial")
    if not isinstance(section, Mapping):
        return None
    return {
        **section,
        "design": [
            {"key": f["key"], "levels": [lv["key"] for lv in f["levels"]]}
            for f in factor_definitions(doc)
        ],
        "arm_levels": arm_levels(doc),
    }


def factor_definitions(doc: Mapping) -> list[dict[str, Any]]:
    """[{key, label, levels: [{key, label}]}] of a saved protocol, without the level settings."""
    return [
        {
            "key": factor["key"],
            "label": factor.get("label") or factor["key"],
            "levels": [
                {"key": level["key"], "label": level.get("label") or level["key"]}
                for level in factor.get("levels", [])
            ],
        }
        for factor in doc.get("factors") or []
    ]
