"""Replacing a generated block of a Markdown file (the benchmark tables in docs/)."""

from __future__ import annotations

import os


def replace_block(path: str, begin: str, end: str, block: str, heading: str | None = None) -> None:
    """Put `block` (which starts with `begin` and ends with `end`) in place of the text
    between those markers in `path`; append it (under `heading`, if given) when absent."""
    text = open(path).read() if os.path.isfile(path) else ""
    if begin in text and end in text:
        text = text[:text.index(begin)] + block + text[text.index(end) + len(end):]
    else:
        text = text.rstrip() + "\n\n" + (f"{heading}\n\n" if heading else "") + block + "\n"
    with open(path, "w") as f:
        f.write(text)
