"""A subset of Stripe's Search Query Language (https://docs.stripe.com/search).

Supported: clauses ``field:'value'``, ``metadata['key']:'value'``, ``field~'substr'``,
numeric ``field>N`` / ``<`` / ``>=`` / ``<=`` / ``:N``, ``field:null``, negation ``-clause``,
joined by ``AND`` or by ``OR`` (not both), up to 10 clauses. String equality is
case-insensitive, as Stripe documents for ``:``.

Real Stripe search is eventually consistent (new objects can take about a minute to appear);
the emulator only models that when constructed with ``search_visibility_delay_seconds``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from . import errors

MAX_CLAUSES = 10

_TOKEN_RE = re.compile(
    r"""\s*(?:
        (?P<neg>-)?
        (?P<field>metadata\[(?P<mq>['"])(?P<mkey>(?:\\.|(?!(?P=mq)).)*)(?P=mq)\]|[a-z_][a-z0-9_.]*)
        (?P<op>>=|<=|:|~|>|<)
        (?P<value>'(?:\\.|[^'\\])*'|"(?:\\.|[^"\\])*"|-?\d+(?:\.\d+)?|null)
      |(?P<kw>AND|OR|and|or)(?=\s)
    )""",
    re.VERBOSE,
)


@dataclass(frozen=True)
class Clause:
    negate: bool
    field: str
    metadata_key: str | None
    op: str
    value: str | int | float | None


@dataclass(frozen=True)
class Query:
    clauses: tuple[Clause, ...]
    conjunction: str  # "AND" | "OR"


def _bad(message: str) -> errors.StripeError:
    return errors.invalid(message, "query")


def _unquote(raw: str) -> str | int | float | None:
    if raw == "null":
        return None
    if raw[0] in "'\"":
        return re.sub(r"\\(.)", r"\1", raw[1:-1])
    return float(raw) if "." in raw else int(raw)


def parse(text: str) -> Query:
    pos = 0
    clauses: list[Clause] = []
    conjunctions: set[str] = set()
    expect_clause = True
    text = text.strip()
    if not text:
        raise _bad("The search query must not be empty.")
    while pos < len(text):
        match = _TOKEN_RE.match(text, pos)
        if match is None or match.end() == pos:
            raise _bad(
                f"The query `{text}` could not be parsed near position {pos}: "
                f"`{text[pos : pos + 30]}`."
            )
        pos = match.end()
        if match.group("kw"):
            if expect_clause:
                raise _bad(f"Unexpected `{match.group('kw')}` in query `{text}`.")
            conjunctions.add(match.group("kw").upper())
            expect_clause = True
            continue
        if not expect_clause:
            conjunctions.add("AND")  # whitespace-separated clauses are ANDed
        mkey = match.group("mkey")
        clauses.append(
            Clause(
                negate=bool(match.group("neg")),
                field="metadata" if mkey is not None else match.group("field"),
                metadata_key=re.sub(r"\\(.)", r"\1", mkey) if mkey is not None else None,
                op=match.group("op"),
                value=_unquote(match.group("value")),
            )
        )
        expect_clause = False
    if expect_clause:
        raise _bad(f"The query `{text}` ends with a dangling keyword.")
    if len(conjunctions) > 1:
        raise _bad("You cannot combine `AND` and `OR` in the same search query.")
    if len(clauses) > MAX_CLAUSES:
        raise _bad(f"Search queries can contain at most {MAX_CLAUSES} clauses.")
    return Query(tuple(clauses), conjunctions.pop() if conjunctions else "AND")


Getter = Callable[[Mapping[str, Any]], Any]


def _field(name: str) -> Getter:
    return lambda obj: obj.get(name)


INVOICE_FIELDS: dict[str, Getter] = {
    name: _field(name)
    for name in ("created", "currency", "customer", "number", "receipt_number", "status", "total")
}
INVOICE_FIELDS["subscription"] = lambda obj: None
INVOICE_FIELDS["last_finalization_error_code"] = lambda obj: None
INVOICE_FIELDS["last_finalization_error_type"] = lambda obj: None

CUSTOMER_FIELDS: dict[str, Getter] = {
    name: _field(name) for name in ("created", "email", "name", "phone")
}
PRICE_FIELDS: dict[str, Getter] = {
    name: _field(name) for name in ("active", "currency", "lookup_key", "product", "type")
}
PRODUCT_FIELDS: dict[str, Getter] = {
    name: _field(name) for name in ("active", "description", "name", "shippable", "url")
}


def _matches(clause: Clause, obj: Mapping[str, Any], fields: Mapping[str, Getter]) -> bool:
    if clause.field == "metadata":
        actual: Any = (obj.get("metadata") or {}).get(clause.metadata_key or "")
    else:
        actual = fields[clause.field](obj)
    expected = clause.value
    if clause.op in (":", "~") and expected is None:
        result = actual is None
    elif clause.op == ":":
        if isinstance(expected, str):
            if isinstance(actual, bool):
                result = str(actual).lower() == expected.lower()
            else:
                result = actual is not None and str(actual).lower() == expected.lower()
        else:
            result = isinstance(actual, int | float) and actual == expected
    elif clause.op == "~":
        result = (
            isinstance(actual, str)
            and isinstance(expected, str)
            and expected.lower() in actual.lower()
        )
    else:
        if not isinstance(expected, int | float) or not isinstance(actual, int | float):
            result = False
        elif clause.op == ">":
            result = actual > expected
        elif clause.op == "<":
            result = actual < expected
        elif clause.op == ">=":
            result = actual >= expected
        else:
            result = actual <= expected
    return result != clause.negate


def compile_query(
    text: str, fields: Mapping[str, Getter], resource: str
) -> Callable[[Mapping[str, Any]], bool]:
    query = parse(text)
    for clause in query.clauses:
        if clause.field != "metadata" and clause.field not in fields:
            raise _bad(
                f"Field `{clause.field}` is an unsupported search field for resource "
                f"`{resource}`. See https://stripe.com/docs/search#query-fields-for-{resource} "
                "for a list of supported fields."
            )
        if clause.op == "~" and not isinstance(clause.value, str):
            raise _bad("The `~` operator only supports string values.")

    def predicate(obj: Mapping[str, Any]) -> bool:
        results = (_matches(c, obj, fields) for c in query.clauses)
        return all(results) if query.conjunction == "AND" else any(results)

    return predicate
