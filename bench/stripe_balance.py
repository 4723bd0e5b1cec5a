"""Below-minimum Stripe invoices and the customer balance, at the scale issue 8 measured.

Exports 80 invoices for 10 customers (each customer's invoices in order, the customers at once),
about one in five below Stripe's minimum charge, against a real dev server and the Stripe
emulator, which applies the customer's whole balance at finalization and carries amounts below
the minimum to it. Prints how the exports ended, how many carried a debit from an earlier
invoice, and whether Stripe's amounts due plus the balances left equal what was billed.

    .venv/bin/python bench/stripe_balance.py [--customers 10] [--invoices-per-customer 8]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
import uuid
from collections import Counter
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

from billbridge.activities.store import Store
from billbridge.core.config import Settings
from billbridge.core.messages import ExportResult
from billbridge.emulators.stripe import StripeEmulator
from billbridge.starter.door import export_invoice
from billbridge.starter.samples import SampleLine, build_customer, build_invoice
from billbridge.starter.seed import seed_catalog, seed_customer, stripe_client
from billbridge.workers.client import connect
from billbridge.workers.codec import generate_key, load_codec
from billbridge.workers.dev_server import DevServer
from billbridge.workers.export_worker import build_worker


def amounts(rng: random.Random, count: int) -> list[Decimal]:
    """Seat prices in USD; about one in five below Stripe's 0.50 minimum charge."""
    return [
        Decimal(rng.randint(1, 49)) / 100
        if rng.random() < 0.2
        else Decimal(rng.randint(100, 99_999_999)) / 100
        for _ in range(count)
    ]


async def run(customers: int, per_customer: int) -> dict[str, object]:
    rng = random.Random(8)
    with (
        tempfile.TemporaryDirectory() as tmp,
        DevServer(Path(tmp) / "temporal", ui=False) as server,
        StripeEmulator(rate_limit_per_second=None) as emulator,
    ):
        settings = replace(
            Settings.from_env({}),
            temporal_address=server.address,
            database_url=f"sqlite:///{tmp}/bench.db",
            stripe_api_base=emulator.base_url,
            task_queue=f"bench-balance-{uuid.uuid4().hex[:8]}",
        )
        store = Store(settings.database_url)
        stripe = stripe_client(emulator.base_url, settings.stripe_api_key)
        seed_catalog(stripe, store, {"item_seats": "Seats"})
        run_id = uuid.uuid4().hex[:6]
        stripe_ids = {
            f"cust_{run_id}_{c}": seed_customer(stripe, store, build_customer(f"cust_{run_id}_{c}"))
            for c in range(customers)
        }
        client = await connect(
            server.address, codec=load_codec(settings, {"BILLBRIDGE_CODEC_KEY": generate_key()})
        )
        plans = {cid: amounts(rng, per_customer) for cid in stripe_ids}

        async def in_order(cid: str) -> list[tuple[dict[str, object], ExportResult]]:
            done = []
            for n, amount in enumerate(plans[cid]):
                seat = [SampleLine("item_seats", "Seats", Decimal(1), amount)]
                invoice = build_invoice(f"inv_{cid}_{n}", cid, "USD", seat)
                done.append(
                    (invoice, await export_invoice(client, store, invoice, settings.task_queue))
                )
            return done

        async with build_worker(client, store, settings):
            results = await asyncio.gather(*(in_order(cid) for cid in stripe_ids))

        statuses: Counter[str] = Counter()
        carried_in = differences = conserved = 0
        by_id = {inv["metadata"]["billbridge_invoice_id"]: inv for inv in emulator.invoices()}
        for cid, exported in zip(stripe_ids, results, strict=True):
            billed = asked = 0
            for invoice, result in exported:
                statuses[result.status.value] += 1
                carried_in += "billbridge's earlier invoice" in result.reason
                differences += "DIFFERENCE" in result.reason
                billed += int(Decimal(str(invoice["amount_due"])) * 100)
                asked += by_id[str(invoice["id"])]["amount_due"]
            balance = stripe.v1.customers.retrieve(stripe_ids[cid]).balance
            conserved += asked + balance == billed
        store.close()
        return {
            "invoices": customers * per_customer,
            "customers": customers,
            "below_minimum": sum(a < Decimal("0.50") for p in plans.values() for a in p),
            **{f"status_{status}": count for status, count in sorted(statuses.items())},
            "carried_debits_accounted": carried_in,
            "unexplained_differences": differences,
            "customers_amount_due_plus_balance_equals_billed": f"{conserved}/{customers}",
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=10)
    parser.add_argument("--invoices-per-customer", type=int, default=8)
    args = parser.parse_args()
    for key, value in asyncio.run(run(args.customers, args.invoices_per_customer)).items():
        print(f"{key:50} {value}")


if __name__ == "__main__":
    main()
