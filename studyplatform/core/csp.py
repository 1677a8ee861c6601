"""Per-view adjustments of the site-wide Content-Security-Policy (settings.CONTENT_SECURITY_POLICY).

The site policy forbids inline scripts and styles and any framing. A few responses need a
narrowly different policy; they declare it with these decorators next to the view, so each
exception is visible where it is made.
"""

from __future__ import annotations

import base64
import hashlib
import re

from csp.constants import HEADER, NONE, SELF
from csp.decorators import csp_replace
from csp.utils import build_policy
from django.http import HttpResponse


def style_hash(css: str) -> str:
    """The CSP source that allows exactly one inline <style> element with this text, and no other
    (an edited or injected stylesheet has a different hash)."""
    digest = hashlib.sha256(css.encode("utf-8")).digest()
    return f"'sha256-{base64.b64encode(digest).decode('ascii')}'"


# The console's participant preview and calendar are shown in <iframe>s of the console's own
# pages (X-Frame-Options SAMEORIGIN on the same views); every other page may not be framed.
framable_by_same_origin = csp_replace({"frame-ancestors": [SELF]})


def self_contained_policy(*, styles: tuple[str, ...]) -> dict[str, list[str]]:
    """For documents made to be saved and opened on their own (the analysis report, a consent
    copy): their only styles are inline <style> blocks, each allowed by its hash; images may be
    data: URIs; nothing else loads, no script runs, and no form or frame works."""
    return {
        "default-src": [NONE],
        "script-src": [NONE],
        "style-src": [style_hash(css) for css in styles] or [NONE],
        "img-src": ["data:"],
        "connect-src": [NONE],
        "font-src": [NONE],
        "form-action": [NONE],
    }


def self_contained_document(*, styles: tuple[str, ...]):
    """View decorator applying self_contained_policy to the view's responses."""
    return csp_replace(self_contained_policy(styles=styles))


_STYLE_BLOCK = re.compile(r"<style>(.*?)</style>", re.DOTALL)


def set_self_contained_policy(
    response: HttpResponse, html: str, *, framable_by_same_origin: bool = False
) -> HttpResponse:
    """Give a stored, server-generated document (an analysis report) the self-contained policy,
    allowing the <style> blocks it was generated with (older reports keep their own styling when
    the generator's CSS changes). The document must come from our own code, never from input.
    `framable_by_same_origin` lets the console's own pages show it in an <iframe> (pair it with
    X-Frame-Options SAMEORIGIN on the view)."""
    policy = self_contained_policy(styles=tuple(_STYLE_BLOCK.findall(html)))
    if framable_by_same_origin:
        policy["frame-ancestors"] = [SELF]
    response[HEADER] = build_policy(replace=policy)
    return response
