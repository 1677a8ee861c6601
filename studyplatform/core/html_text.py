"""Escaping text into generated HTML and SVG (the console's charts, the analysis report).

Those documents are built as strings, not Django templates (they are pure functions, usable
without a configured Django, and the report is one self-contained file), so they escape every
piece of text themselves, through this one function. Pure Python (no Django).
"""

from __future__ import annotations

import html
from typing import Any


def escape_html(value: Any) -> str:
    """``value`` as text safe inside an element or a quoted attribute; None is empty."""
    return html.escape("" if value is None else str(value), quote=True)
