"""The markdown rendering of a report's blocks shows text as written (the ledger's and the bench's)."""

from __future__ import annotations

from pathlib import Path

import pytest

from lossbench._document import Bullets, Heading, Link, Markdown, Para, Table, to_html, to_markdown


def md(*blocks) -> str:
    return to_markdown(list(blocks), Path("."))


def test_plain_text_is_written_as_it_is():
    # what REPRODUCTIONS.md holds: comparisons and arrows are no markup, nor is a `code` span's content
    text = "p = 0.0041 <= alpha; treatment < baseline, eps2 < eps1; -log p -> 1; `a <b> & c`; a > b; +1.2 [+0.1, +2.3]"
    assert md(Heading(2, text), Para(text), Bullets([text]), Table(["h"], [[text]])) == (
        f"## {text}\n\n{text}\n\n- {text}\n\n| h |\n|---|\n| {text} |\n"
    )


def test_html_and_entities_in_text_are_escaped_outside_code_spans():
    text = "<img src=x onerror=alert(1)> &amp; <!-- x --> <https://x.org> `<b>`"
    escaped = "&lt;img src=x onerror=alert(1)> &amp;amp; &lt;!-- x --> &lt;https://x.org> `<b>`"
    assert md(Para(text)) == f"{escaped}\n"
    assert md(Heading(1, text)) == f"# {escaped}\n"
    assert md(Bullets([text])) == f"- {escaped}\n"
    assert md(Table([text], [[text]])) == f"| {escaped} |\n|---|\n| {escaped} |\n"
    assert md(Para("> quoted\n> twice")) == "&gt; quoted\n&gt; twice\n"
    # a Markdown block keeps its table, not raw HTML or links (an analysis's text read from a shared storage)
    assert md(Markdown("| a | <b>b</b> |\n|---|---|\n| [x](javascript:y) | `<i>` |")) == (
        "| a | &lt;b>b&lt;/b> |\n|---|---|\n| \\[x\\](javascript:y) | `<i>` |\n"
    )


def test_a_line_ending_never_ends_a_table_row_or_a_heading_early():
    assert md(Table(["a\rb"], [["c\r\nd", "e\nf|g"]])) == "| a b |\n|---|\n| c d | e f\\|g |\n"
    assert md(Heading(2, "wine\n# injected")) == "## wine # injected\n"


def test_links_and_escaped_backticks_in_text_are_escaped_outside_code_spans():
    # a method's name "[click](url)" is no link, nor an image; a backslash before a backtick would
    # keep that backtick from opening the code span the renderings see (its content then raw HTML)
    assert md(Para("[click](https://e.vil/x) ![p](https://e.vil/p.png) [a][ref]")) == (
        "\\[click\\](https://e.vil/x) !\\[p\\](https://e.vil/p.png) \\[a\\][ref]\n"
    )
    assert md(Para("\\`<img src=x onerror=alert(1)>` a\\b")) == "\\\\`<img src=x onerror=alert(1)>` a\\\\b\n"
    assert md(Para("`[x](y) \\`")) == "`[x](y) \\`\n"  # (verbatim inside a code span)
    assert md(Table(["a\\|b"], [])) == "| a\\\\\\|b |\n|---|\n"


def test_a_name_with_backticks_inside_a_code_span_renders_no_html():
    # a method named "<img ...>`" inside the report's `...` spans: paired one by one, the backticks
    # left markdown an unclosed span and the name raw HTML; paired by run length as CommonMark does, none
    markdown_it = pytest.importorskip("markdown_it")
    for name in ("<img src=x onerror=alert(1)>`", "`<img src=x onerror=alert(1)>", "a``<img src=x>"):
        text = f"against `{name}` over seeds"
        rendered = markdown_it.MarkdownIt("commonmark").enable("table").render(
            md(Heading(2, text), Para(text), Bullets([text]), Table(["h"], [[text]]))
        )
        assert "<img" not in rendered, (name, rendered)
        assert "<img" not in to_html([Para(text)], "t") and "&lt;img" in to_html([Para(text)], "t")
    # a span of two backticks holds one, in both renderings
    assert md(Para("``a`b`` <i>")) == "``a`b`` &lt;i>\n"
    assert "<code>a`b</code> &lt;i&gt;" in to_html([Para("``a`b`` <i>")], "t")


def test_a_heading_anchor_and_a_table_link_to_it_in_both_renderings():
    # the ledger's summary links each claim and verdict to its section; a link's text stays text (']' and '|'
    # escaped) and its anchor is a plain name, refused otherwise (it is written raw into both renderings)
    blocks = [Heading(2, "claim: title", "claim.quick"), Table(["verdict"], [[Link("holds] |x", "claim.quick")]])]
    assert md(*blocks) == '<a id="claim.quick"></a>\n\n## claim: title\n\n| verdict |\n|---|\n| [holds\\] \\|x](#claim.quick) |\n'
    page = to_html(blocks, "t")
    assert "<h2 id='claim.quick'>claim: title</h2>" in page and "<td><a href='#claim.quick'>holds] |x</a></td>" in page
    markdown_it = pytest.importorskip("markdown_it")
    rendered = markdown_it.MarkdownIt("commonmark").enable("table").render(md(*blocks))
    assert '<a href="#claim.quick">holds] |x</a>' in rendered
    # a ']' before '(' (which the text's own escaping escapes) is escaped once: no link of the text's making
    rendered = markdown_it.MarkdownIt("commonmark").enable("table").render(md(Table(["v"], [[Link("x](https://e.x)", "a")]])))
    assert '<a href="#a">x](https://e.x)</a>' in rendered and "e.x\"" not in rendered
    for bad in ("a b", "'x", "<i>", "-x"):
        with pytest.raises(ValueError, match="an anchor is letters, digits"):
            md(Heading(2, "t", bad))
        with pytest.raises(ValueError, match="an anchor is letters, digits"):
            to_html([Table(["h"], [[Link("t", bad)]])], "t")


@pytest.mark.parametrize("text", [
    "[`a]`](https://e.vil/x)",  # a link whose text holds a code span: its ']' hid from the '[' rule
    "`linear\n\n<script>alert(1)</script>\n\n`",  # a span across a blank line: CommonMark ends it there
    "`x\n<script>alert(1)</script>`",  # a new line that starts an HTML block
    "[a]\n\n[a]: https://e.vil/x",  # a reference and its definition
    "`a\n`<script>alert(1)</script>` x`",  # a backtick unpaired on its line: CommonMark pairs it with the next
    "```\ncode\n```\n<script>alert(1)</script>\n```",  # a fence closed early, another left open
], ids=["code span in a link", "blank line", "HTML block", "reference", "span across a line", "fences"])
def test_user_text_renders_no_script_or_link_whatever_its_backticks_and_lines(text):
    markdown_it = pytest.importorskip("markdown_it")
    for block in (Para(text), Bullets([text]), Markdown(text), Heading(2, text), Table(["h"], [[text]])):
        rendered = markdown_it.MarkdownIt("commonmark").enable("table").render(md(block))
        assert "<script" not in rendered and "<a " not in rendered, (block, rendered)


def test_a_markdown_blocks_fenced_code_is_kept_as_written_and_a_fence_left_open_is_closed():
    # an analysis's table in a fence (the toy claims'): its brackets and spacing as written, not escaped
    table = "method  b\n------  ---------------\nhinge   [0.750, 1.000] <b>"
    assert md(Markdown(f"Optimal b:\n\n```\n{table}\n```")) == f"Optimal b:\n\n```\n{table}\n```\n"
    assert md(Markdown("```python\n<b>")) == "```\n<b>\n```\n"  # (info string dropped, the fence closed)
    assert md(Markdown("x `a` <i>")) == "x `a` &lt;i>\n"


def test_random_markup_renders_no_element_but_the_documents_own():
    """Two thousand random strings of markdown's markup characters (backticks, brackets, '<', fences, line
    breaks...) in every kind of block: CommonMark renders no element lossbench did not write (a link, an
    image, a script, raw HTML); the fixed cases above each came from such a string."""
    import random
    import re

    markdown_it = pytest.importorskip("markdown_it")
    render = markdown_it.MarkdownIt("commonmark").enable("table").render
    own = {"p", "code", "ul", "li", "table", "thead", "tbody", "tr", "th", "td", "h2", "pre", "em", "strong", "hr",
           "blockquote", "ol", "h1", "h3", "h4", "h5", "h6", "br"}  # fmt: skip
    pieces = [*"`<>[]()!:\n &\\*_-#|~ab=\"'/", "<b>", "<script>", "javascript:", "](", "```", "\n\n", "<!--", "http://x"]
    rng = random.Random(5)
    for _ in range(2000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(1, 25)))
        for block in (Para(text), Bullets([text]), Table(["h"], [[text]]), Heading(2, text), Markdown(text)):
            page = render(md(block))
            elements = {tag.lower() for tag in re.findall(r"<\s*/?\s*([A-Za-z][A-Za-z0-9]*)", page)}
            assert elements <= own and "<a " not in page, (text, type(block).__name__, page)
