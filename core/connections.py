"""Per-connection settings, as the platforms users compare billbridge with offer them."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class ConnectionSettings(BaseModel):
    """How invoices go out through one connection (`billbridge connections set ...`)."""

    model_config = ConfigDict(extra="forbid")

    cutover_date: date | None = Field(
        default=None,
        description="invoices issued before this date are not exported (migrating teams)",
    )
    minimum_amount: Decimal | None = Field(
        default=None, ge=0, description="invoices whose total is below this are not exported"
    )
    requests_per_second: float | None = Field(
        default=None,
        gt=0,
        le=10_000,
        description="requests per second every worker together sends through this connection "
        "(unset: 95% of the provider's documented limit where it documents a rate: Stripe 25/s "
        "in test mode and 100/s live, QuickBooks 500 a minute; BILL and NetSuite limit "
        "concurrent requests instead, which each worker keeps to)",
    )
    collection_method: Literal["send_invoice", "charge_automatically"] = Field(
        default="send_invoice",
        description="how Stripe collects the invoice",
        json_schema_extra={"providers": ["stripe_invoice"]},
    )
    leave_as_draft: bool = Field(
        default=False,
        description="create the provider invoice but do not finalize it",
        # QuickBooks has no draft invoices: what it creates is open at once.
        json_schema_extra={"providers": ["stripe_invoice"]},
    )
    create_missing_customers: bool = False
    stripe_rounding_line: bool = Field(
        default=False,
        description=(
            "when Stripe cannot charge the billed amount exactly (a three-decimal amount not "
            "ending in 0, a fraction of a zero-decimal currency or of ISK), add a rounding line "
            "to the nearest chargeable amount and record it, instead of waiting for a person"
        ),
        json_schema_extra={"providers": ["stripe_invoice"]},
    )
    accept_stripe_balance: bool = Field(
        default=False,
        description="finalize even when the Stripe customer's balance holds amounts billbridge "
        "did not put there (Stripe applies the whole balance); the difference is reported",
        json_schema_extra={"providers": ["stripe_invoice"]},
    )
    skip_below_minimum: bool = Field(
        default=False,
        description="do not export invoices whose amount due is below Stripe's minimum charge "
        "(Stripe would mark them paid and carry the amount to the customer's balance)",
        json_schema_extra={"providers": ["stripe_invoice"]},
    )
    send_email: bool = Field(
        default=True,
        description="with collection_method=send_invoice, have Stripe e-mail each finalized "
        "invoice to the customer (POST /v1/invoices/{id}/send)",
        json_schema_extra={"providers": ["stripe_invoice"]},
    )

    billcom_invoice_currencies: str | None = Field(
        default=None,
        pattern=r"^[A-Z]{3}(,[A-Z]{3})*$",
        description="currencies beyond USD the BILL organization is set up to invoice in "
        "(international invoicing), comma-separated, e.g. EUR,GBP: BILL's API does not tell",
        json_schema_extra={"providers": ["bill.com"]},
    )
    netsuite_subsidiary: str | None = Field(
        default=None,
        pattern=r"^[0-9]+$",
        description="internal id of the NetSuite subsidiary invoices and created customers belong "
        "to (OneWorld accounts); unset: the customer's own",
        json_schema_extra={"providers": ["netsuite"]},
    )
    netsuite_set_tran_id: bool = Field(
        default=False,
        description="send the billing invoice number as the NetSuite invoice's tranId (only for "
        "accounts whose invoice numbering allows an override); otherwise NetSuite numbers the "
        "invoice and the billing number goes into its memo",
        json_schema_extra={"providers": ["netsuite"]},
    )
    netsuite_concurrency_limit: int = Field(
        default=5,
        ge=1,
        le=1000,
        description="the NetSuite account's concurrency limit (5 on the shared tier and developer "
        "accounts, 15 on Tier 1, +10 per SuiteCloud Plus licence): a worker stays under it",
        json_schema_extra={"providers": ["netsuite"]},
    )

    @classmethod
    def applies_to(cls, setting: str, provider: str) -> bool:
        """Whether a setting means anything for a provider (unlisted: every provider)."""
        field = cls.model_fields.get(setting)
        extra = field.json_schema_extra if field is not None else None
        providers = extra.get("providers") if isinstance(extra, dict) else None
        return not isinstance(providers, list) or provider in providers
