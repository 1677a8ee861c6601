"""Anonymized dataset exports: create (validate options, make or reuse the key, enqueue), build
(tables -> files -> codebook, README, manifest -> zip), download (audited) and expiry.

A package because the builder outgrew one file: `options` validates, `lifecycle` moves an export
row through its states, `builder` writes the core tables and the zip, `usage` the usage-feature
tables. Callers import from here.
"""

from .builder import BATCH, ZIP_DATE, Progress
from .lifecycle import (
    EXPORT_DIR,
    WITHDRAWAL_REASON,
    ExportGone,
    ExportNotReady,
    expiry_days,
    export_build,
    export_claim,
    export_create,
    export_download,
    export_expire_due,
    export_path,
    exports_revoke_for_participant,
)
from .options import (
    BASE_QUASI_IDENTIFIERS,
    CHAT_MODES,
    DATE_MODES,
    DEFAULT_OPTIONS,
    ExportError,
    export_options_clean,
    screener_export_questions,
)

__all__ = [
    "BASE_QUASI_IDENTIFIERS",
    "BATCH",
    "CHAT_MODES",
    "DATE_MODES",
    "DEFAULT_OPTIONS",
    "EXPORT_DIR",
    "WITHDRAWAL_REASON",
    "ZIP_DATE",
    "ExportError",
    "ExportGone",
    "ExportNotReady",
    "Progress",
    "expiry_days",
    "export_build",
    "export_claim",
    "export_create",
    "export_download",
    "export_expire_due",
    "export_options_clean",
    "export_path",
    "exports_revoke_for_participant",
    "screener_export_questions",
]
