"""The dashboard's usage-requirement section: a participants x periods grid (met, missed, in
progress) and, per period, how many participants met the minimum. The dashboard view checks
the permission (VIEW_PARTICIPANTS) before calling this."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.utils.safestring import mark_safe
from django.utils.translation import gettext as _

from studyplatform.compliance.selectors import study_compliance
from studyplatform.studies.models import Study

from .. import charts


def requirements_context(study: Study, *, now: dt.datetime) -> dict[str, Any]:
    standing = study_compliance(study, now=now)
    if standing is None:
        return {"requirements": None}
    weekly = standing.requirement.weekly
    states = {
        "met": ("#0072B2", _("Met")),
        "missed": ("#D55E00", _("Missed")),
        "open": ("#F0E442", _("In progress")),
        "not_yet": ("#eeeeee", _("Not yet")),
    }
    cells = []
    for row in standing.rows:
        line = ["not_yet"] * standing.counted
        for period in row.progress.periods:
            if period.counted:
                line[period.index] = "met" if period.met else "missed" if period.closed else "open"
        cells.append(line)
    label = _("W%(n)s") if weekly else _("D%(n)s")
    columns = [label % {"n": i + 1} for i in range(standing.counted)]
    grid = charts.heatmap(
        chart_id="requirement-heatmap",
        title=_("Usage requirement: participants by week")
        if weekly
        else _("Usage requirement: participants by day"),
        row_labels=[r.code for r in standing.rows],
        col_labels=columns,
        cells=cells,
        states=states,
        empty_message=_("No participants yet."),
    )
    per_period = [
        {"label": columns[i], "met": standing.met_per_period[i], "closed": n}
        for i, n in enumerate(standing.closed_per_period)
        if n
    ]
    # charts escapes every piece of text it writes, so its output is safe to embed as-is.
    return {
        "requirements": standing,
        "requirements_heatmap": mark_safe(grid),  # noqa: S308
        "requirements_per_period": per_period,
    }
