"""Usage in: Orb-shaped events through the door (Python and `billbridge usage ingest`), stored
once per idempotency key, exact Decimal quantities, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import subprocess
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from stores import (  # noqa: F401 (fixtures)
    both_database_urls,
    both_databases_store,
    throwaway_postgres,
)

from billbridge.activities.store import Store
from billbridge.core.models import Customer
from billbridge.core.usage import DimensionMapping, UsageEvent
from billbridge.starter.usage_door import (
    InvalidUsage,
    ingest_usage,
    ingest_usage_jsonl,
    parse_usage_jsonl,
)
from billbridge.workers.codec import generate_key
from conftest import BILLBRIDGE_CLI

HOUR = datetime(2026, 3, 1, 10, tzinfo=UTC)


def event(key: str, **fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "idempotency_key": key,
        "customer_id": "cust_1",
        "event_name": "api_call",
        "timestamp": "2026-03-01T10:15:00Z",
        "properties": {},
    }
    base.update(fields)
    return base


def jsonl(*events: dict[str, Any]) -> str:
    return "".join(json.dumps(e) + "\n" for e in events)


def test_the_model_has_orbs_ingestion_fields() -> None:
    """Field names as the Orb SDK sends them (orb/types/event_ingest_params.py)."""
    from orb.types.event_ingest_params import Event

    assert set(UsageEvent.model_fields) == set(Event.__annotations__)


def test_ingest_deduplicates_by_idempotency_key(store: Store) -> None:
    first = ingest_usage(store, [event("e1"), event("e2"), event("e1")])
    assert (first.accepted, first.duplicates, first.conflicts) == (2, 1, ())
    again = ingest_usage(store, [event("e1"), event("e2"), event("e3")])
    assert (again.accepted, again.duplicates) == (1, 2)
    stored = store.usage_events("cust_1", HOUR, HOUR + timedelta(hours=1))
    assert [s.event.idempotency_key for s in stored] == ["e1", "e2", "e3"]


def test_a_key_sent_again_with_other_content_keeps_the_first_and_is_reported(
    store: Store,
) -> None:
    ingest_usage(store, [event("e1", properties={"n": 5})])
    # 5 == 5.0: the same event (numbers compare by value), a plain duplicate.
    same = ingest_usage(store, [event("e1", properties={"n": Decimal("5.0")})])
    assert (same.accepted, same.duplicates, same.conflicts) == (0, 1, ())
    other = ingest_usage(store, [event("e1", properties={"n": 6})])
    assert (other.accepted, other.duplicates, other.conflicts) == (0, 1, ("e1",))
    in_one_call = ingest_usage(store, [event("e9"), event("e9", event_name="other")])
    assert (in_one_call.accepted, in_one_call.conflicts) == (1, ("e9",))
    (kept,) = store.usage_events("cust_1", HOUR, HOUR + timedelta(hours=1))[:1]
    assert kept.event.properties == {"n": 5}


def test_malformed_lines_are_named_and_nothing_is_stored(store: Store) -> None:
    text = (
        jsonl(event("ok1"))
        + "\n"  # blank lines are skipped but still counted
        + jsonl(event("bad_ts", timestamp="2026-03-01T10:15:00"))
        + "{not json\n"
        + jsonl(event("both", external_customer_id="acme"))
        + jsonl(event("nested", properties={"a": {"b": 1}}))
        + jsonl({k: v for k, v in event("no_name").items() if k != "event_name"})
        + "[1, 2]\n"
        + jsonl(event("epoch", timestamp=1767225600))
    )
    with pytest.raises(InvalidUsage) as caught:
        ingest_usage_jsonl(store, text)
    message = str(caught.value)
    assert message.startswith("7 malformed events; nothing was stored")
    assert "line 3: timestamp: timestamp has no timezone" in message
    assert "line 4: not JSON" in message
    assert "line 5: customer_id, external_customer_id: give exactly one" in message
    assert "line 6: properties: a: nested values are not allowed" in message
    assert "line 7: event_name: Field required" in message
    assert "line 8: expected a JSON object" in message
    assert "line 9: timestamp: expected an ISO 8601 date-time" in message
    assert "\nline 1:" not in message
    assert store.usage_events("cust_1", HOUR - timedelta(days=1), HOUR + timedelta(days=1)) == []


def test_at_most_twenty_problems_are_listed() -> None:
    text = jsonl(*[event(f"k{n}", timestamp="yesterday") for n in range(25)])
    with pytest.raises(InvalidUsage) as caught:
        parse_usage_jsonl(text)
    assert len(caught.value.problems) == 20
    assert str(caught.value).endswith("... and 5 more")


def test_external_customer_id_counts_for_the_customer_before_and_after_it_is_known(
    store: Store,
) -> None:
    count = [DimensionMapping(event_name="api_call", dimension="calls")]
    early = ingest_usage(store, [event("x1", customer_id=None, external_customer_id="acme")])
    assert early.unknown_customers == ("acme",)
    store.upsert_customers(
        [Customer(id="cust_1", external_customer_id="acme", name="Acme", email="a@acme.test")]
    )
    late = ingest_usage(store, [event("x2", customer_id=None, external_customer_id="acme")])
    assert late.unknown_customers == ()
    ingest_usage(store, [event("x3")])
    totals = store.usage_totals("cust_1", HOUR, HOUR + timedelta(hours=1), count)
    assert totals == {"calls": Decimal(3)}
    # Another customer's events stay theirs.
    assert store.usage_totals("cust_2", HOUR, HOUR + timedelta(hours=1), count) == {
        "calls": Decimal(0)
    }


def test_quantities_are_exact_decimals_from_json_numbers_and_strings(store: Store) -> None:
    text = jsonl(
        *[event(f"d{n}", properties={"gb": 0.1}) for n in range(3)],
        event("big", properties={"gb": "12345678901234567890.123456789"}),
    ).replace('"gb": 0.1', '"gb": 0.1000000000000000000000000001')
    ingest_usage_jsonl(store, text)
    mapping = DimensionMapping(event_name="api_call", property="gb", dimension="gb", factor="1")
    totals = store.usage_totals("cust_1", HOUR, HOUR + timedelta(hours=1), [mapping])
    assert totals["gb"] == Decimal("12345678901234567890.4234567890000000000000000003")
    # A float from a Python caller is read through its shortest repr, never its binary value.
    ingest_usage(store, [event("f1", customer_id="cust_f", properties={"gb": 0.1})])
    ingest_usage(store, [event("f2", customer_id="cust_f", properties={"gb": 0.2})])
    totals = store.usage_totals("cust_f", HOUR, HOUR + timedelta(hours=1), [mapping])
    assert totals["gb"] == Decimal("0.3")


def test_a_large_batch_is_stored_in_one_call(store: Store) -> None:
    events = [event(f"bulk{n}", properties={"n": n}) for n in range(1100)]
    result = ingest_usage(store, events)
    assert (result.accepted, result.duplicates) == (1100, 0)
    mapping = DimensionMapping(event_name="api_call", property="n", dimension="n")
    totals = store.usage_totals("cust_1", HOUR, HOUR + timedelta(hours=1), [mapping])
    assert totals["n"] == Decimal(sum(range(1100)))


def _cli(tmp_path: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("BILLBRIDGE_CODEC_KEY")},
        "DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}",
        "BILLBRIDGE_CODEC_KEY": generate_key(),
    }
    return subprocess.run(
        [*BILLBRIDGE_CLI, *args],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_cli_ingests_a_file_and_stdin_and_names_bad_lines(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text(jsonl(event("c1", properties={"gb": 1.5}), event("c2"), event("c1")))
    done = _cli(tmp_path, "usage", "ingest", str(path))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["accepted"] == 2
    assert json.loads(done.stdout)["duplicates"] == 1
    again = _cli(tmp_path, "usage", "ingest", "-", stdin=jsonl(event("c1", event_name="x")))
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["conflicts"] == ["c1"]
    assert "first event is kept" in again.stderr
    bad = _cli(
        tmp_path, "usage", "ingest", "-", stdin=jsonl(event("c3"), event("c4", timestamp=""))
    )
    assert bad.returncode == 1
    assert "line 2: timestamp:" in bad.stderr
    with Store(f"sqlite:///{tmp_path / 'cli.db'}") as store:
        keys = [
            s.event.idempotency_key
            for s in store.usage_events("cust_1", HOUR, HOUR + timedelta(hours=1))
        ]
    assert keys == ["c1", "c2"]
