"""The slice of SuiteQL the emulator answers: ``SELECT cols FROM table [WHERE ...] [ORDER BY col]``.

"Executing SuiteQL Queries Through REST Web Services"
(https://docs.oracle.com/en/cloud/saas/netsuite/ns-online-help/section_157909186990.html):
``POST /services/rest/query/v1/suiteql`` with the query in the body's ``q``, paging with
``limit`` and ``offset`` in the URL; the example in "Using SuiteQL with SuiteTalk REST Web
Services" (section_158394344595.html) sends ``Prefer: transient``. Conditions: ``col = literal``,
``col IN (literal, ...)``, ``col IS [NOT] NULL``, and ``col < > <= >= TO_DATE('YYYY-MM-DD',
'YYYY-MM-DD')`` on date-time columns (SuiteQL is Oracle SQL: TO_DATE is among its supported
functions, "SuiteQL Supported and Unsupported Functions", section_157938436398.html), joined by
AND; literals are single-quoted strings (``''`` escapes a quote) or numbers. Column names are
case-insensitive and come back lower-cased; values come back as strings (UNCONFIRMED: the REST
answer's value types), booleans as ``T``/``F`` as SuiteQL keeps them, date-times as
``YYYY-MM-DD HH:MM:SS`` in the account's time zone, UTC here (UNCONFIRMED: NetSuite formats
them after the user's date preferences). Anything else is refused with 400 INVALID_PARAMETER
(UNCONFIRMED code).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from . import errors

TOKEN = re.compile(
    r"\s*(?:(?P<string>'(?:[^']|'')*')|(?P<number>-?\d+(?:\.\d+)?)|(?P<word>[A-Za-z_][\w.]*)"
    r"|(?P<symbol><=|>=|[(),=*<>]))"
)


COMPARISONS = ("<", ">", "<=", ">=")


@dataclass(frozen=True)
class Condition:
    column: str
    op: str  # "in" (= is a one-value IN), "null", "not null", or one of COMPARISONS
    values: tuple[str, ...] = ()
    moment: datetime | None = None  # the TO_DATE bound of a comparison

    def holds(self, row: dict[str, Any]) -> bool:
        value = row.get(self.column)
        if self.op == "null":
            return value in (None, "")
        if self.op == "not null":
            return value not in (None, "")
        if self.op == "in":
            return str(value if value is not None else "") in self.values
        if value in (None, "") or self.moment is None:
            return False
        try:
            moment = datetime.fromisoformat(str(value))
        except ValueError:
            return False
        return {
            "<": moment < self.moment,
            ">": moment > self.moment,
            "<=": moment <= self.moment,
            ">=": moment >= self.moment,
        }[self.op]


@dataclass(frozen=True)
class Query:
    table: str
    columns: tuple[str, ...]  # () = *
    conditions: tuple[Condition, ...]
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

    def to_date() -> datetime:
        """``TO_DATE('2024-01-15', 'YYYY-MM-DD')``: the only date format emulated."""
        take("word", "TO_DATE")
        take("symbol")
        text = take("string")
        take("symbol")
        if take("string").upper() != "YYYY-MM-DD":
            raise errors.invalid_parameter("Invalid search query: TO_DATE format not emulated")
        take("symbol")
        try:
            return datetime.fromisoformat(text)
        except ValueError as err:
            raise errors.invalid_parameter(f"Invalid search query: {text!r} is no date") from err

    conditions: list[Condition] = []
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
                conditions.append(Condition(column, "in", tuple(values)))
            elif peek_word("IS"):
                take("word")
                negated = peek_word("NOT")
                if negated:
                    take("word")
                take("word", "NULL")
                conditions.append(Condition(column, "not null" if negated else "null"))
            else:
                op = take("symbol")
                if op in COMPARISONS:
                    conditions.append(Condition(column, op, moment=to_date()))
                elif op == "=":
                    conditions.append(Condition(column, "in", (_literal(take()),)))
                else:
                    raise errors.invalid_parameter("Invalid search query: expected =")
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
        if all(condition.holds(row) for condition in query.conditions):
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
