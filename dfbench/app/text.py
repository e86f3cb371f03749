"""Record strings made safe for the pages dfbench writes: a markdown cell, a link target."""

from __future__ import annotations

#: what a record's string becomes in a markdown cell: nothing can open HTML, a code span or a link,
#: end a cell (``|``) or a row (a newline)
_MD_ESCAPES = {"\\": "\\\\", "|": "\\|", "`": "\\`", "[": "\\[", "]": "\\]", "&": "&amp;", "<": "&lt;", ">": "&gt;"}


def md(text) -> str:
    """``text`` safe inside one markdown table cell or heading: whitespace runs (newlines included)
    and control characters collapse to one space, and :data:`_MD_ESCAPES` are escaped."""
    import unicodedata

    text = "".join(" " if unicodedata.category(c).startswith("C") or c.isspace() else c for c in str(text))
    return "".join(_MD_ESCAPES.get(c, c) for c in " ".join(text.split()))


def _url(path: str) -> str:
    """A relative link target with every character that could end or break it percent-encoded."""
    from urllib.parse import quote

    return quote(path, safe="/.-_~")
