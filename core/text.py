"""Text a store can keep: what the doors refuse before anything is parsed further or stored.

Python's json reads the escape of a lone UTF-16 surrogate ("\\ud800") into a str that is no
Unicode text at all: no UTF-8 encoder can write it (hashing a stored invoice, SQLite, PostgreSQL,
every provider's HTTP body), so it used to pass the door and crash the store. NUL (U+0000) is
Unicode, but PostgreSQL's text type cannot hold it ("PostgreSQL text fields cannot contain NUL
(0x00) bytes", psycopg) and no billing field means one. Both are refused anywhere in a payload,
keys included, with the field's location; the message shows the character escaped, so printing
the refusal cannot fail on it either.
"""

from __future__ import annotations

from collections.abc import Iterator

__all__ = ["unstorable_text"]


def _problem(text: str) -> str | None:
    if "\x00" in text:
        return "NUL character (U+0000), which billbridge cannot store"
    try:
        text.encode()
    except UnicodeEncodeError as err:  # only a lone surrogate cannot be encoded
        char = ascii(text[err.start])[1:-1]
        return f"lone surrogate {char}, which is not Unicode text (a stray \\u escape?)"
    return None


def unstorable_text(value: object, loc: tuple[str | int, ...] = ()) -> Iterator[str]:
    """One "field.path: problem" per string (or key) in `value` that a store cannot keep."""
    where = ".".join(str(part) for part in loc) or "<root>"
    if isinstance(value, str):
        problem = _problem(value)
        if problem is not None:
            yield f"{where}: {problem}"
    elif isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, str) and (problem := _problem(key)) is not None:
                yield f"{where}: key {key!a}: {problem}"
                continue
            yield from unstorable_text(item, (*loc, key))
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from unstorable_text(item, (*loc, index))
