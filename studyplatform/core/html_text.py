"""Escaping text into generated HTML and SVG (the console's charts).

Those documents are built as strings, not Django templates (they are pure functions, usable
without a configured Django), so they escape every piece of text themselves, through this one
function; its output equals Django's autoescaping, which the analysis report (templates rendered
by a standalone engine) relies on. Pure Python (no Django).
"""

from __future__ import annotations

import html
from typing import Any


def escape_html(value: Any) -> str:
    """``value`` as text safe inside an element or a quoted attribute; None is empty."""
    return html.escape("" if value is None else str(value), quote=True)
