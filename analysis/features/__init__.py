"""Usage features for the analysis: daily usage, text markers, baselines and survey windows.

Pure pandas/numpy/pyarrow, no Django imports: the Django side builds plain frames (see
``docs/usage_features.md``) and the linking step windows the daily frame around survey waves.
"""

from analysis.features.daily import (
    DAILY_COLUMNS,
    TEXT_COLUMNS,
    daily_features,
    daily_text_markers,
)
from analysis.features.text_markers import MARKER_COLUMNS, message_markers
from analysis.features.usage import (
    DAILY_USAGE_COLUMNS,
    IMPORTED_COLUMNS,
    SUMMARY_COLUMNS,
    WINDOW_COLUMNS,
    daily_usage,
    imported_baseline,
    local_times,
    participant_summary,
    window_features,
    windows_before,
)

__all__ = [
    "DAILY_COLUMNS",
    "DAILY_USAGE_COLUMNS",
    "IMPORTED_COLUMNS",
    "MARKER_COLUMNS",
    "SUMMARY_COLUMNS",
    "TEXT_COLUMNS",
    "WINDOW_COLUMNS",
    "daily_features",
    "daily_text_markers",
    "daily_usage",
    "imported_baseline",
    "local_times",
    "message_markers",
    "participant_summary",
    "window_features",
    "windows_before",
]
