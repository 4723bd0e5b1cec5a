"""The slice of SuiteQL the emulator answers: ``SELECT cols FROM table [WHERE ...] [ORDER BY col]``.

"Executing SuiteQL Queries Through REST Web Services"
(https://docs.oracle.com/en/cloud/saas/netsuite/ns-online-help/section_157909186990.html):
``POST /services/rest/query/v1/suiteql`` with the query in the body's ``q``, paging with
``limit`` and ``offset`` in the URL; the example in "Using SuiteQL with SuiteTalk REST Web
Services" (section_158394344595.html) sends ``Prefer: transient``. Conditions: ``col = literal``,
``col IN (literal, ...)``, joined by AND; literals are single-quoted strings (``''`` escapes a
quote) or numbers. Column names are case-insensitive and come back lower-cased; values come back
as strings (UNCONFIRMED: the REST answer's value types), booleans as ``T``/``F`` as SuiteQL keeps
them. Anything else is refused with 400 INVALID_PARAMETER (UNCONFIRMED code).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from . import errors

TOKEN = re.compile(
    r"\s*(?:(?P<string>'(?:[^']|'')*')|(?P<number>-?\d+(?:\.\d+)?)|(?P<word>[A-Za-z_][\w.]*)"
    r"|(?P<symbol>[(),=*]))"
)


@dataclass(frozen=True)
class Query:
    table: str
    columns: tuple[str, ...]  # () = *
    conditions: tuple[tuple[str, tuple[str, ...]], ...]  # (column, allowed values)
    order_by: str | None = None


def _tokens(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    position = 0
    text = text.strip().rstrip(";")
    while position < len(text):
        match = TOKEN.match(text, position)
        if match is None or match.end() == position:
            raise errors.invalid_parameter(f"Invalid search query: unexpected text at {position}")
        kind = match.lastgroup or ""
        value = match.group(kind)
        if kind == "string":
            value = value[1:-1].replace("''", "'")
        out.append((kind, value))
        position = match.end()
    return out


def parse(text: str) -> Query:
    tokens = _tokens(text)
    position = 0

    def take(kind: str | None = None, word: str | None = None) -> str:
        nonlocal position
        if position >= len(tokens):
            raise errors.invalid_parameter("Invalid search query: unexpected end")
        got_kind, value = tokens[position]
        if kind is not None and got_kind != kind:
            raise errors.invalid_parameter(f"Invalid search query near {value!r}")
        if word is not None and value.upper() != word:
            raise errors.invalid_parameter(f"Invalid search query: expected {word} near {value!r}")
        position += 1
        return value

    def peek_word(word: str) -> bool:
        return position < len(tokens) and tokens[position][1].upper() == word

    def peek(symbol: str) -> bool:
        return position < len(tokens) and tokens[position][1] == symbol

    take("word", "SELECT")
    columns: list[str] = []
    if peek("*"):
        take("symbol")
    else:
        columns.append(take("word").lower())
        while peek(","):
            take("symbol")
            columns.append(take("word").lower())
    take("word", "FROM")
    table = take("word").lower()
    conditions: list[tuple[str, tuple[str, ...]]] = []
    if peek_word("WHERE"):
        take("word")
        while True:
            column = take("word").lower()
            if peek_word("IN"):
                take("word")
                take("symbol")
                values = [_literal(take())]
                while peek(","):
                    take("symbol")
                    values.append(_literal(take()))
                take("symbol")
                conditions.append((column, tuple(values)))
            else:
                if take("symbol") != "=":
                    raise errors.invalid_parameter("Invalid search query: expected =")
                conditions.append((column, (_literal(take()),)))
            if not peek_word("AND"):
                break
            take("word")
    order_by = None
    if peek_word("ORDER"):
        take("word")
        take("word", "BY")
        order_by = take("word").lower()
    if position != len(tokens):
        raise errors.invalid_parameter(f"Invalid search query near {tokens[position][1]!r}")
    return Query(table, tuple(columns), tuple(conditions), order_by)


def _literal(value: str) -> str:
    return value


def run(
    query: Query, rows: Callable[[str], Iterable[dict[str, Any]] | None]
) -> list[dict[str, Any]]:
    """The rows of `query`; `rows(table)` gives a table's rows (None: no such table)."""
    source = rows(query.table)
    if source is None:
        raise errors.invalid_parameter(
            f"Invalid search query: Search error occurred: Record '{query.table}' was not found."
        )
    found = []
    for row in source:
        if all(str(row.get(column, "")) in values for column, values in query.conditions):
            found.append(row)
    if query.order_by:
        found.sort(key=lambda row: _sort_key(row.get(query.order_by or "")))
    if not query.columns:
        return [dict(row) for row in found]
    for column in query.columns:
        if found and column not in found[0]:
            raise errors.invalid_parameter(f"Invalid search query: Unknown identifier '{column}'.")
    return [{column: row.get(column) for column in query.columns} for row in found]


def _sort_key(value: Any) -> tuple[int, Any]:
    text = str(value or "")
    return (0, int(text)) if text.isdigit() else (1, text)
