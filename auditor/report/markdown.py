"""Markdown that renders as meant where it is read (GitHub, GFM): strings from the user's code (layer names,
paths, notes) become text, never markup, raw HTML or an @-mention; comments stay under GitHub's size limit."""

from __future__ import annotations

import re

# GitHub rejects an issue or pull-request comment longer than this (REST API: "body is too long").
GITHUB_COMMENT_LIMIT = 65_536

_ACTIVE = re.compile(r"([\\`*_\[\]<>|~!#])")
# GitHub links `@name` where `@` follows the start or a non-word character, and GFM's autolinker turns
# `tanh@model.py` (a call-site activation's name) into a mailto: link: any @ before a word character.
_MENTION = re.compile(r"@(?=\w)")


def text(value) -> str:
    """A user-controlled string as literal Markdown text, safe in a paragraph or a table cell."""
    s = str(value).replace("\r", " ").replace("\n", " ")
    return text_mentions(_ACTIVE.sub(r"\\\1", s))


def text_mentions(s: str) -> str:
    """An invisible word joiner (U+2060) after an @ keeps GitHub from notifying a user or team named like a
    layer, and from making a layer name a mail link; it renders as nothing."""
    return _MENTION.sub("@\u2060", s)


def code(value) -> str:
    """A user-controlled string as an inline code span, safe in a table cell (GFM splits cells on `|` even
    inside code spans, so it is escaped there too)."""
    s = str(value).replace("\r", " ").replace("\n", " ").replace("|", "\\|")
    fence = "`" * (max((len(m) for m in re.findall(r"`+", s)), default=0) + 1)
    pad = " " if s.startswith("`") or s.endswith("`") else ""
    return f"{fence}{pad}{s}{pad}{fence}"


def fence(block: str) -> str:
    """A code fence longer than any run of backticks in `block`, so the block cannot close it early."""
    return "`" * max(3, max((len(m) for m in re.findall(r"`+", block)), default=0) + 1)


def fit(markdown: str, limit: int = GITHUB_COMMENT_LIMIT, more: str = "") -> str:
    """`markdown` cut at a block boundary so that it, and the note saying where the rest is, fit in `limit`
    characters. Blocks are separated by blank lines; `<details>` blocks are kept whole or left out whole."""
    if len(markdown) <= limit:
        return markdown
    blocks = _blocks(markdown)
    kept, left_out = [], 0
    note = _fold_note(len(blocks), more)
    budget = limit - len(note) - 2
    size = 0
    for block in blocks:
        if size + len(block) + 2 > budget:
            left_out += 1
            continue
        kept.append(block)
        size += len(block) + 2
    return "\n\n".join(kept) + "\n\n" + _fold_note(left_out, more)


def _fold_note(n: int, more: str) -> str:
    where = f": {more}" if more else " (the full report is in the job's artifacts)"
    return f"*{n} more section(s) left out to stay under GitHub's comment size limit{where}.*\n"


def _blocks(markdown: str) -> list[str]:
    """Blank-line separated blocks, with a `<details>` ... `</details>` span as one block."""
    blocks, current, depth = [], [], 0
    for line in markdown.split("\n"):
        depth += line.count("<details") - line.count("</details>")
        if not line.strip() and depth == 0 and current:
            blocks.append("\n".join(current))
            current = []
        elif line.strip() or current:
            current.append(line)
    if current:
        blocks.append("\n".join(current))
    return blocks
