"""A report as a list of blocks, rendered as markdown and as one self-contained HTML page.

Both renderings come from the same blocks, so the two files say the same thing.  Text is plain
but for `code` spans, which the HTML shows as code; a ``Markdown`` block keeps its markdown (a table) in
the markdown and is shown preformatted in the HTML.  Text that holds a user's names (a method named
``<img ...>``) is shown as written in both: the markdown escapes what it would read as HTML or a link
(emphasis marks stay as written).
"""

from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Heading:
    level: int
    text: str
    anchor: str | None = None  # a name a Link can point at (letters, digits, '-', '_', '.')


@dataclass(frozen=True)
class Link:
    """A table cell's text that points at a Heading's anchor in the same document."""

    text: str
    anchor: str


@dataclass
class Para:
    text: str


@dataclass
class Markdown:
    """Markdown kept as written (an analysis's table), but for raw HTML and links, escaped as in any text;
    the HTML shows it preformatted."""

    text: str


@dataclass
class Bullets:
    items: list[str]


@dataclass
class Table:
    header: list[str]
    rows: list[list[str | Link]]


@dataclass
class Image:
    alt: str
    path: Path  # under the report's folder; the markdown links it, the HTML embeds it
    data: bytes | None = None  # its PNG where the file is written after the markdown (else read from path)


Block = Heading | Para | Markdown | Bullets | Table | Image

# The reports' figures are drawn in matplotlib's own default style, whatever a matplotlibrc in the working
# folder or the user's settings say (one with text.usetex broke every report, after all the runs).
PLOT_STYLE = "default"


def drawn_as_written(text: object) -> str:
    """A name from the spec (label, method, parameter, choice) as matplotlib draws it as written: '$'
    escaped, as text between two is a formula to matplotlib (``cost$x^$`` raised ValueError, and no
    report was written); a leading '_' behind a zero-width space, as a legend leaves out labels that
    start with one."""
    text = str(text).replace("$", r"\$")
    return "\u200b" + text if text.startswith("_") else text

STYLE = ("body{font-family:sans-serif;max-width:1300px;margin:auto;padding:1em}"
         "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 7px;"
         "font-size:13px;text-align:left;vertical-align:top}th{background:#f3f3f3}img{max-width:100%}")  # fmt: skip


# A `code` span, shown as written by both renderings, paired as CommonMark pairs them: a run of backticks
# closes at the next run of the same length (a name ending in a backtick inside a span would otherwise
# leave its opening backtick unclosed for markdown, and the span's content raw HTML there), on the same
# line (a new line may start a block first, a blank line, a heading or an HTML block, which no span crosses).
_CODE = re.compile(r"(?<!`)(`+)(?!`)([^\n]+?)(?<!`)\1(?!`)")
# What markdown would take for raw HTML, an entity or a link: '&', '<' where a tag, comment or autolink
# could start, '>' opening a line (a quote), '[' opening "[text](url)" or "[text][ref]" (an image too), ']'
# closing one ("](", "]["; the link's text may hold a code span, which hid its ']' from the '[' rule), and
# every backslash (one before a backtick would keep that backtick from opening the `code` span it opens
# here), and every backtick no span here pairs (CommonMark pairs across a line break: such a backtick
# would open a span there that ends inside one of these, leaving its content raw); in a block of text (not
# a table cell or a heading) a '[' opening a line too, a reference's definition ("[ref]: url").  Only
# those, so that "p <= 0.05", "a -> b", "[+0.15, +2.29]" and "mnist[max_train=8000]:l2" stay as written.
_MARKUP = re.compile(r"&|<(?=[A-Za-z/!?])|(?m:^ {0,3}>)|\[(?=[^\[\]]*\][(\[])|\](?=[(\[])|\\|`+")
_DEFINITION = re.compile(r"(?m)^( {0,3})\[")  # a block's line that opens with '[' (no code span crosses lines)
_ESCAPED = {"&": "&amp;", "<": "&lt;", ">": "&gt;", "[": "\\[", "]": "\\]", "\\": "\\\\", "`": "\\`"}
_FENCE = re.compile(r" {0,3}(`{3,}|~{3,})")  # a line that opens or closes a fenced code block
_LINE_END = re.compile(r"\r\n?|\n")  # ends a heading or a table row early


def _text(text: object) -> str:
    """Text for the markdown, shown as written: outside its `code` spans (verbatim there), markup
    written as entities or backslash escapes."""
    text = str(text)
    code = [span.span() for span in _CODE.finditer(text)]

    def entity(m: re.Match) -> str:
        if any(start <= m.start() < end for start, end in code):
            return m.group()
        return "".join(_ESCAPED.get(c, c) for c in m.group())

    return _MARKUP.sub(entity, text)


def _block_text(text: object) -> str:
    """:func:`_text` of a paragraph, a list item or a Markdown block, where a line may define a link."""
    return _DEFINITION.sub(r"\1\\[", _text(text))


def _markdown_block(text: str) -> str:
    """A Markdown block's text: its fenced code blocks as written (code: nothing in them is markup), the rest
    as :func:`_block_text`; the fences paired as CommonMark pairs them, and one left open closed at the
    block's end (the rest of the document would be code)."""
    out, prose, fence = [], [], None
    for line in _LINE_END.split(text):
        mark = _FENCE.match(line)
        if fence is None and mark is None:
            prose.append(line)
        elif fence is None:  # opening: only its fence kept (an info string would be a class name)
            out += [_block_text("\n".join(prose))] if prose else []
            prose, fence = [], mark.group(1)
            out.append(fence)
        else:
            out.append(line)
            closing = mark is not None and mark.group(1)[0] == fence[0] and len(mark.group(1)) >= len(fence)
            if closing and not line.strip().strip(fence[0]):
                fence = None
    out += [_block_text("\n".join(prose))] if prose else []
    return "\n".join(out + ([fence] if fence else []))


def _line(text: object) -> str:
    """Text on one line of the markdown (a heading, a table cell): its line ends made spaces first, so that
    its `code` spans pair as the markdown will read them."""
    return _text(_LINE_END.sub(" ", str(text)))


_ANCHOR = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def _anchor(name: str) -> str:
    if not _ANCHOR.fullmatch(name):  # (written raw into both renderings: nothing to escape there)
        raise ValueError(f"an anchor is letters, digits, '-', '_' and '.', got {name!r}")
    return name


def _md_cell(c: str | Link) -> str:
    """A table cell on one line, its '|' escaped; a Link's text (']' escaped too) pointing at its anchor."""
    if not isinstance(c, Link):
        return _line(c).replace("|", "\\|")
    # (each ']' escaped once: escaping the escaped text again made _line's '\]' a '\\' and a live ']')
    shown = "\\]".join(_line(part).replace("|", "\\|") for part in str(c.text).split("]"))
    return f"[{shown}](#{_anchor(c.anchor)})"


def to_markdown(blocks: list[Block], out: Path) -> str:
    lines: list[str] = []
    for b in blocks:
        if isinstance(b, Heading):
            # (an explicit anchor: the one markdown viewers derive from a heading's text differs from one
            # viewer to another and changes with the text)
            anchor = [f'<a id="{_anchor(b.anchor)}"></a>', ""] if b.anchor else []
            lines += anchor + ["#" * b.level + " " + _line(b.text), ""]
        elif isinstance(b, Para):
            lines += [_block_text(b.text), ""]
        elif isinstance(b, Markdown):  # (its tables kept; no raw HTML or link: the text may come from a shared storage)
            lines += [_markdown_block(b.text), ""]
        elif isinstance(b, Bullets):
            lines += [f"- {_block_text(item)}" for item in b.items] + [""]
        elif isinstance(b, Table):
            lines.append("| " + " | ".join(map(_md_cell, b.header)) + " |")
            lines.append("|" + "---|" * len(b.header))
            lines += ["| " + " | ".join(map(_md_cell, row)) + " |" for row in b.rows]
            lines.append("")
        else:
            lines += [f"![{b.alt}]({b.path.relative_to(out).as_posix()})", ""]
    return "\n".join(lines)


def _inline(text: str) -> str:
    """Escaped text with `code` spans as <code>."""
    return _CODE.sub(r"<code>\2</code>", html.escape(str(text)))


def _cell(c: str | Link) -> str:
    return f"<a href='#{_anchor(c.anchor)}'>{_inline(c.text)}</a>" if isinstance(c, Link) else _inline(c)


def to_html(blocks: list[Block], title: str) -> str:
    parts = ["<!doctype html><html><head><meta charset='utf-8'>", f"<title>{html.escape(title)}</title>",
             f"<style>{STYLE}</style></head><body>"]  # fmt: skip
    for b in blocks:
        if isinstance(b, Heading):
            anchor = f" id='{_anchor(b.anchor)}'" if b.anchor else ""
            parts.append(f"<h{b.level}{anchor}>{_inline(b.text)}</h{b.level}>")
        elif isinstance(b, Para):
            parts.append(f"<p>{_inline(b.text)}</p>")
        elif isinstance(b, Markdown):
            parts.append(f"<pre>{html.escape(b.text)}</pre>")
        elif isinstance(b, Bullets):
            parts.append("<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in b.items) + "</ul>")
        elif isinstance(b, Table):
            head = "".join(f"<th>{_inline(h)}</th>" for h in b.header)
            body = "".join("<tr>" + "".join(f"<td>{_cell(c)}</td>" for c in row) + "</tr>" for row in b.rows)
            parts.append(f"<table><tr>{head}</tr>{body}</table>")
        else:
            data = base64.b64encode(b.data if b.data is not None else b.path.read_bytes()).decode()
            parts.append(f"<img alt='{html.escape(b.alt)}' src='data:image/png;base64,{data}'>")
    parts.append("</body></html>")
    return "\n".join(parts)
