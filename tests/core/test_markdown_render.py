"""render_markdown reuses one converter per thread: nothing of one text may reach the next,
and model output stays sanitised."""

import threading

from studyplatform.core.markdown import render_markdown


def test_a_reference_link_defined_in_one_text_does_not_resolve_in_the_next():
    # given: a text that defines a link reference
    render_markdown("hello\n\n[site]: https://attacker.example/\n")
    # when: the next text (another participant's reply) uses that reference
    html = render_markdown("see [here][site]")
    # then: it stays text; the previous text's definitions are gone
    assert "attacker.example" not in html
    assert "<a" not in html


def test_model_output_is_sanitised_on_every_render():
    for _ in range(2):  # the second render goes through the reused converter
        html = render_markdown('<script>alert(1)</script> **b** <img src=x onerror="x()">')
        assert "<script" not in html and "onerror" not in html and "<img" not in html
        assert "<strong>b</strong>" in html
    html = render_markdown("[x](javascript:alert(1))")
    assert "javascript:" not in html


def test_threads_render_independently():
    results = {}

    def render(i):
        results[i] = [render_markdown(f"# title {i}\n\n- item {n}") for n in range(50)]

    threads = [threading.Thread(target=render, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for i, htmls in results.items():
        for n, html in enumerate(htmls):
            assert f"<h1>title {i}</h1>" in html and f"<li>item {n}</li>" in html
