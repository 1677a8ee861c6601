"""Generated HTML and SVG (console charts, analysis report) escape text through one helper."""

from __future__ import annotations

import subprocess
import sys

from analysis.report import render_report
from studyplatform.console.charts import hbar_chart
from studyplatform.core.html_text import escape_html

HOSTILE = "<script>alert(\"x\")</script> & 'quoted'"


def test_escape_html_escapes_markup_and_quotes_and_empties_none():
    assert escape_html(HOSTILE) == (
        "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#x27;quoted&#x27;"
    )
    assert escape_html(None) == "" and escape_html(3) == "3"


def test_a_chart_and_the_report_escape_a_hostile_label_the_same_way():
    # given: a study designer's text with markup in it
    chart = hbar_chart(chart_id="c", title=HOSTILE, rows=[(HOSTILE, 1.0)])
    report = render_report({}, {}, {"title": HOSTILE, "study": "s"})
    # then: neither document carries it as markup, both carry the same escaped text
    for document in (chart, report):
        assert "<script>" not in document
        assert escape_html(HOSTILE) in document


def test_the_report_still_renders_without_a_configured_django():
    # The report is a pure function (usable from a notebook): importing the shared helper must
    # not need Django settings.
    code = (
        "import os; os.environ.pop('DJANGO_SETTINGS_MODULE', None);"
        "from analysis.report import render_report;"
        "print(len(render_report({}, {}, {'title': 'T', 'study': 's'})) > 0)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"
