"""Silent successes become clear errors; a broken environment is one line, not a traceback.

Every command runs as a user runs it: the CLI in a separate process (conftest.billbridge).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from billbridge.activities.store import Store
from billbridge.core.config import Settings
from billbridge.core.providers import PROVIDER_ENTRIES
from billbridge.workers.dev_server import free_port
from conftest import BILLBRIDGE_CLI, StripeAccount, billbridge, process_env


def error_line(done: subprocess.CompletedProcess[str]) -> str:
    """The one `billbridge: ...` line of stderr; no traceback around it."""
    assert "Traceback" not in done.stderr, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("billbridge")]
    assert len(lines) == 1, done.stderr
    return lines[0]


# --------------------------------------------------------------------- connections add


def test_connections_add_refuses_a_missing_or_empty_key(
    settings: Settings, store: Store, tmp_path: Path
) -> None:
    added = billbridge(settings, "connections", "add", "stripe_invoice", "--api-key", "sk_test_1")
    assert added.returncode == 0, added.stderr
    # It reports the check it just made, not "not checked".
    (report,) = json.loads(added.stdout)
    assert report["health"] == "credentials accepted (just now)"
    row = store.get_connection("stripe_invoice")
    assert row is not None and row.credentials_ref
    sealed = row.credentials_ref

    empty_file = tmp_path / "key.txt"
    empty_file.write_text("\n")
    for flags, says in (
        (["--api-key-file", str(empty_file)], f"--api-key-file: {empty_file} is empty"),
        (["--api-key", ""], "--api-key: the key is empty"),
        ([], "needs the key"),
        (["--api-key-env", "BILLBRIDGE_TEST_UNSET_KEY"], "BILLBRIDGE_TEST_UNSET_KEY is not set"),
    ):
        refused = billbridge(settings, "connections", "add", "stripe_invoice", *flags)
        assert refused.returncode == 2, (flags, refused.stdout)
        assert says in error_line(refused)
        row = store.get_connection("stripe_invoice")
        assert row is not None and row.credentials_ref == sealed  # the old key, untouched

    unchecked = billbridge(
        settings, "connections", "add", "stripe_invoice", "--api-key", "sk_test_2", "--no-verify"
    )
    assert json.loads(unchecked.stdout)[0]["health"] == "not checked (--no-verify)"


# ---------------------------------------------------------------------------- mappings


def test_mappings_set_refuses_an_unknown_connection(settings: Settings, store: Store) -> None:
    done = billbridge(settings, "mappings", "set", "stirpe_invoice", "item_a", "prod_a")
    assert done.returncode == 2
    known = sorted(entry.name for entry in PROVIDER_ENTRIES)
    assert f"'stirpe_invoice' is not one of {known}" in error_line(done)
    assert store.list_mappings("stirpe_invoice") == {}


def test_mappings_set_checks_the_provider_item(
    settings: Settings, store: Store, stripe_account: StripeAccount
) -> None:
    missing = billbridge(settings, "mappings", "set", "stripe_invoice", "item_a", "prod_nope")
    assert missing.returncode == 1
    assert "prod_nope" in error_line(missing) and "nothing stored" in missing.stderr
    assert "item_a" not in store.list_mappings("stripe_invoice")

    product = stripe_account.products["item_seats"]
    price = stripe_account.client.v1.prices.create(
        params={"product": product, "unit_amount": 100, "currency": "usd"}
    )
    for target in (product, price.id):  # a product or a price of one
        done = billbridge(settings, "mappings", "set", "stripe_invoice", "item_a", target)
        assert done.returncode == 0, done.stderr
        assert store.list_mappings("stripe_invoice")["item_a"] == target

    # Provider unreachable: stored, with a warning that it could not be checked.
    closed = f"http://127.0.0.1:{free_port()}"
    unchecked = billbridge(
        settings,
        "mappings",
        "set",
        "stripe_invoice",
        "item_b",
        "prod_later",
        env={"STRIPE_API_BASE": closed},
    )
    assert unchecked.returncode == 0, unchecked.stderr
    assert "warning: stripe_invoice: could not check that prod_later exists" in unchecked.stderr
    assert store.list_mappings("stripe_invoice")["item_b"] == "prod_later"


# ------------------------------------------------------------------- exports, attention


def test_exports_list_refuses_an_unknown_status(settings: Settings) -> None:
    done = billbridge(settings, "exports", "list", "--status", "bogus")
    assert done.returncode == 2
    assert "invalid choice: 'bogus'" in done.stderr
    assert "'needs_attention'" in done.stderr and "'exported'" in done.stderr


def test_attention_retry_fails_when_temporal_is_unreachable(settings: Settings) -> None:
    address = f"127.0.0.1:{free_port()}"
    done = billbridge(settings, "attention", "retry", env={"TEMPORAL_ADDRESS": address})
    assert done.returncode == 3
    assert f"cannot reach Temporal at TEMPORAL_ADDRESS={address}" in error_line(done)
    # With Temporal there, it says what it did.
    reached = billbridge(settings, "attention", "retry")
    assert reached.returncode == 0, reached.stderr
    assert "signalled" in reached.stdout


# ------------------------------------------------------ the environment, in one line


def test_unreachable_database_is_one_line(settings: Settings) -> None:
    url = f"postgresql://billbridge:s3cret@127.0.0.1:{free_port()}/billbridge"
    for command in (["worker"], ["exports", "list"]):
        done = billbridge(settings, *command, env={"DATABASE_URL": url})
        assert done.returncode == 1, command
        line = error_line(done)
        assert line.startswith("billbridge: cannot open the database at DATABASE_URL=")
        assert url.replace("s3cret", "***") in line and "s3cret" not in done.stderr


def test_missing_or_unreadable_codec_key_is_one_line(settings: Settings, tmp_path: Path) -> None:
    missing = billbridge(settings, "worker", env={"BILLBRIDGE_CODEC_KEY": ""})
    assert missing.returncode == 1
    line = error_line(missing)
    assert f"TEMPORAL_ADDRESS is set ({settings.temporal_address})" in line
    assert "BILLBRIDGE_CODEC_KEY" in line

    key_file = tmp_path / "no-such-dir" / "codec.key"
    unreadable = billbridge(
        settings,
        "worker",
        env={"BILLBRIDGE_CODEC_KEY": "", "BILLBRIDGE_CODEC_KEY_FILE": str(key_file)},
    )
    assert unreadable.returncode == 1
    assert f"BILLBRIDGE_CODEC_KEY_FILE={key_file} cannot be read" in error_line(unreadable)


def test_worker_with_unreachable_temporal_is_one_line(settings: Settings) -> None:
    address = f"127.0.0.1:{free_port()}"
    done = billbridge(settings, "worker", env={"TEMPORAL_ADDRESS": address})
    assert done.returncode == 3
    assert f"cannot reach Temporal at TEMPORAL_ADDRESS={address}" in error_line(done)


# ------------------------------------------------------------------ a closed stdout


def test_printing_to_a_closed_pipe_ends_quietly(settings: Settings) -> None:
    # `billbridge schema invoice | head -0`: the reader is gone before the first write.
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = subprocess.run(
            [*BILLBRIDGE_CLI, "schema", "invoice"],
            env=process_env(settings),
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
        )
    finally:
        os.close(write_end)
    assert done.returncode == 141  # as a Unix tool killed by SIGPIPE ends
    assert done.stderr == ""
