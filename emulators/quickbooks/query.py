"""The slice of QuickBooks' SQL-like query language that exporters use.

select * | count(*) from <Entity>
    [where <Field> = <value> | <Field> in (<value>, ...) | <Field> like '<pattern>'
           | <Time> <op> '<date-time>' [and ...]]
    [orderby <Field> [asc|desc], ...] [startposition <n>] [maxresults <m>]

<op> is one of < > <= >= ("Query operations and syntax", developer.intuit.com/app/developer/
qbo/docs/learn/explore-the-quickbooks-online-api/data-queries: "Operator IN, =, <, >, <=, >=,
LIKE"); the emulator takes them on the MetaData times only, which QuickBooks' incremental reads
filter on. A date-time without an offset is the company's local time, as QuickBooks writes them.

Keywords and entity names are case-insensitive. String values are single-quoted with backslash
escapes (``'O\\'Brien'``); ``true``/``false`` and numbers may be bare. Customers and items that
are inactive are left out unless the where clause constrains ``Active`` itself (QuickBooks does
the same). Anything unparsable is a 400 with code 4000 ("Error parsing query").
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from . import errors

# UNCONFIRMED: QuickBooks compares strings in queries without regard to case (as its SQL
# backend's collation does); set False for exact comparisons.
CASE_INSENSITIVE = True
DEFAULT_MAX_RESULTS = 100
# UNCONFIRMED: a larger maxresults is cut to 1000 silently rather than refused.
MAX_RESULTS_LIMIT = 1000

# Queryable fields per entity: lower-cased name -> (canonical name, path into the entity).
FIELDS: dict[str, dict[str, tuple[str, tuple[str, ...]]]] = {
    "Customer": {
        "id": ("Id", ("Id",)),
        "displayname": ("DisplayName", ("DisplayName",)),
        "primaryemailaddr": ("PrimaryEmailAddr", ("PrimaryEmailAddr", "Address")),
        "companyname": ("CompanyName", ("CompanyName",)),
        "active": ("Active", ("Active",)),
    },
    "Item": {
        "id": ("Id", ("Id",)),
        "name": ("Name", ("Name",)),
        "type": ("Type", ("Type",)),
        "active": ("Active", ("Active",)),
    },
    "Invoice": {
        "id": ("Id", ("Id",)),
        "docnumber": ("DocNumber", ("DocNumber",)),
        "customerref": ("CustomerRef", ("CustomerRef", "value")),
        "txndate": ("TxnDate", ("TxnDate",)),
        "metadata.createtime": ("MetaData.CreateTime", ("MetaData", "CreateTime")),
        "metadata.lastupdatedtime": ("MetaData.LastUpdatedTime", ("MetaData", "LastUpdatedTime")),
    },
    "CompanyInfo": {"id": ("Id", ("Id",))},
    "Preferences": {"id": ("Id", ("Id",))},
    "TaxCode": {
        "id": ("Id", ("Id",)),
        "name": ("Name", ("Name",)),
        "active": ("Active", ("Active",)),
    },
    "TaxRate": {
        "id": ("Id", ("Id",)),
        "name": ("Name", ("Name",)),
        "active": ("Active", ("Active",)),
    },
}
ENTITIES = {name.lower(): name for name in FIELDS}
# Fields the comparison operators take (date-times, compared as instants).
TIMES = frozenset({("MetaData", "CreateTime"), ("MetaData", "LastUpdatedTime")})
COMPARISONS = ("<", ">", "<=", ">=")

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<string>'(?:[^'\\]|\\.)*')
      | (?P<number>-?\d+(?:\.\d+)?)
      | (?P<word>[A-Za-z_][A-Za-z0-9_.]*)
      | (?P<punct>!=|<=|>=|[*(),=<>])
    )""",
    re.VERBOSE | re.DOTALL,
)
_UNESCAPE = re.compile(r"\\(.)", re.DOTALL)


@dataclass(frozen=True)
class _Token:
    kind: Literal["string", "number", "word", "punct", "end"]
    text: str
    column: int

    def is_word(self, *words: str) -> bool:
        return self.kind == "word" and self.text.lower() in words


@dataclass(frozen=True)
class Condition:
    field: str  # canonical name
    path: tuple[str, ...]
    op: Literal["=", "in", "like", "<", ">", "<=", ">="]
    values: tuple[str, ...]


@dataclass(frozen=True)
class Query:
    entity: str  # canonical name
    count: bool
    conditions: tuple[Condition, ...]
    order: tuple[tuple[tuple[str, ...], bool], ...]  # (path, descending)
    start: int
    max_results: int


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    pos = 0
    while True:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos >= len(text):
            tokens.append(_Token("end", "<EOF>", pos + 1))
            return tokens
        match = _TOKEN.match(text, pos)
        if match is None or match.lastgroup is None:
            raise errors.query_parse(
                f'Lexical error at line 1, column {pos + 1}. Encountered: "{text[pos]}"'
            )
        kind = match.lastgroup
        start = match.start(kind)
        tokens.append(_Token(kind, match.group(kind), start + 1))  # type: ignore[arg-type]
        pos = match.end()


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = _tokenize(text)
        self.i = 0

    def peek(self) -> _Token:
        return self.tokens[self.i]

    def take(self) -> _Token:
        token = self.tokens[self.i]
        if token.kind != "end":
            self.i += 1
        return token

    @staticmethod
    def fail(token: _Token) -> errors.QuickBooksError:
        return errors.query_parse(f'Encountered "{token.text}" at line 1, column {token.column}.')

    def expect_word(self, *words: str) -> _Token:
        token = self.take()
        if not token.is_word(*words):
            raise self.fail(token)
        return token

    def expect_punct(self, punct: str) -> None:
        token = self.take()
        if token.kind != "punct" or token.text != punct:
            raise self.fail(token)

    def integer(self) -> int:
        token = self.take()
        if token.kind != "number" or not token.text.lstrip("-").isdigit():
            raise self.fail(token)
        return int(token.text)

    def value(self) -> str:
        token = self.take()
        if token.kind == "string":
            return _UNESCAPE.sub(r"\1", token.text[1:-1])
        if token.kind == "number" or token.is_word("true", "false"):
            return token.text.lower()
        raise self.fail(token)

    def field(self, entity: str) -> tuple[str, tuple[str, ...]]:
        token = self.take()
        if token.kind != "word":
            raise self.fail(token)
        found = FIELDS[entity].get(token.text.lower())
        if found is None:
            raise errors.query_invalid(f"property '{token.text}' is not queryable on {entity}")
        return found

    def condition(self, entity: str) -> Condition:
        name, path = self.field(entity)
        token = self.take()
        if token.kind == "punct" and token.text == "=":
            return Condition(name, path, "=", (self.value(),))
        if token.kind == "punct" and token.text in COMPARISONS:
            if path not in TIMES:
                raise errors.query_invalid(f"operator {token.text} on {name} is not emulated")
            moment = self.value()
            if _instant(moment) is None:
                raise errors.query_invalid(f"{moment!r} is not a date-time for {name}")
            return Condition(name, path, token.text, (moment,))  # type: ignore[arg-type]
        if token.is_word("like"):
            pattern = self.take()
            if pattern.kind != "string":
                raise self.fail(pattern)
            return Condition(name, path, "like", (_UNESCAPE.sub(r"\1", pattern.text[1:-1]),))
        if token.is_word("in"):
            self.expect_punct("(")
            values = [self.value()]
            while self.peek().kind == "punct" and self.peek().text == ",":
                self.take()
                values.append(self.value())
            self.expect_punct(")")
            return Condition(name, path, "in", tuple(values))
        raise self.fail(token)  # other operators (!=) are not emulated

    def parse(self) -> Query:
        self.expect_word("select")
        count = False
        if self.peek().is_word("count"):
            self.take()
            self.expect_punct("(")
            self.expect_punct("*")
            self.expect_punct(")")
            count = True
        else:
            # UNCONFIRMED gap: QuickBooks also accepts a list of properties; only * is emulated.
            self.expect_punct("*")
        self.expect_word("from")
        token = self.take()
        entity = ENTITIES.get(token.text.lower()) if token.kind == "word" else None
        if entity is None:
            raise self.fail(token)
        conditions: list[Condition] = []
        order: list[tuple[tuple[str, ...], bool]] = []
        start, max_results = 1, DEFAULT_MAX_RESULTS
        seen: set[str] = set()
        while self.peek().kind != "end":
            token = self.take()
            keyword = token.text.lower() if token.kind == "word" else ""
            if keyword in seen or keyword not in (
                "where",
                "orderby",
                "order",
                "startposition",
                "maxresults",
            ):
                raise self.fail(token)
            seen.add(keyword)
            if keyword == "where":
                conditions.append(self.condition(entity))
                while self.peek().is_word("and"):
                    self.take()
                    conditions.append(self.condition(entity))
            elif keyword in ("orderby", "order"):
                if keyword == "order":
                    self.expect_word("by")
                order.append(self.order_key(entity))
                while self.peek().kind == "punct" and self.peek().text == ",":
                    self.take()
                    order.append(self.order_key(entity))
            elif keyword == "startposition":
                start = self.integer()
            else:
                max_results = self.integer()
        if start < 1:
            raise errors.query_invalid("STARTPOSITION must be 1 or more")
        if max_results < 1:
            raise errors.query_invalid("MAXRESULTS must be 1 or more")
        return Query(
            entity,
            count,
            tuple(conditions),
            tuple(order),
            start,
            min(max_results, MAX_RESULTS_LIMIT),
        )

    def order_key(self, entity: str) -> tuple[tuple[str, ...], bool]:
        _, path = self.field(entity)
        descending = False
        if self.peek().is_word("asc", "desc"):
            descending = self.take().text.lower() == "desc"
        return path, descending


def parse(text: str) -> Query:
    if not text.strip():
        raise errors.query_parse('Encountered "<EOF>" at line 1, column 1.')
    return _Parser(text).parse()


def _lookup(row: dict[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = row
    for key in path:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _fold(text: str) -> str:
    return text.casefold() if CASE_INSENSITIVE else text


def _like(pattern: str) -> re.Pattern[str]:
    parts = (re.escape(part) for part in pattern.split("%"))
    flags = (re.IGNORECASE | re.DOTALL) if CASE_INSENSITIVE else re.DOTALL
    return re.compile(".*".join(parts), flags)


def _instant(text: str) -> datetime | None:
    """A date-time (or date) as an aware instant; no offset: the emulator's local time."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.astimezone()


def _compare(op: str, actual: datetime, bound: datetime) -> bool:
    return {
        "<": actual < bound,
        ">": actual > bound,
        "<=": actual <= bound,
        ">=": actual >= bound,
    }[op]


def _matches(condition: Condition, row: dict[str, Any]) -> bool:
    actual = _lookup(row, condition.path)
    if actual is None:
        return False
    text = _text(actual)
    if condition.op in COMPARISONS:
        moment, bound = _instant(text), _instant(condition.values[0])
        return moment is not None and bound is not None and _compare(condition.op, moment, bound)
    if condition.op == "like":
        return _like(condition.values[0]).fullmatch(text) is not None
    return any(_fold(text) == _fold(value) for value in condition.values)


def _sort_key(row: dict[str, Any], path: tuple[str, ...]) -> tuple[int, Any]:
    value = _lookup(row, path)
    if value is None:
        return (1, "")
    if path == ("Id",) and str(value).isdigit():
        return (0, int(value))
    if path in TIMES and (moment := _instant(_text(value))) is not None:
        return (0, moment)
    return (0, _fold(_text(value)))


def run(query: Query, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The ``QueryResponse`` object for ``query`` over ``rows`` (rendered entities, by Id)."""
    conditions = list(query.conditions)
    active = FIELDS[query.entity].get("active")
    if active is not None and not any(c.field == "Active" for c in conditions):
        conditions.append(Condition("Active", active[1], "=", ("true",)))
    found = [row for row in rows if all(_matches(c, row) for c in conditions)]
    if query.count:
        return {"totalCount": len(found)}
    for path, descending in reversed(query.order):
        found.sort(key=lambda row: _sort_key(row, path), reverse=descending)
    page = found[query.start - 1 : query.start - 1 + query.max_results]
    if not page:
        return {}
    return {query.entity: page, "startPosition": query.start, "maxResults": len(page)}
