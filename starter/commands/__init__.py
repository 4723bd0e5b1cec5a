"""Operator commands on the store, one module per command group.

billbridge mappings set CONNECTION BILLING_ITEM PROVIDER_ITEM   (BILLING_ITEM `*`: default item)
billbridge mappings list|export CONNECTION                      (export: CSV on stdout)
billbridge mappings delete CONNECTION BILLING_ITEM
billbridge mappings import CONNECTION mappings.csv               (all rows or none)
billbridge connections add|authorize PROVIDER [--id CONNECTION]    (id default: the provider)
billbridge connections list|revoke|set|enable|disable CONNECTION ...
billbridge connections add aws|azure|gcp --id NAME ...           (marketplace connections)
billbridge usage ingest events.jsonl|-                            (Orb-shaped usage events)
billbridge marketplace link|unlink|list|dimensions|ledger ...    (marketplace metering)
billbridge settings show|set KEY VALUE          (connection.<provider>: which connection exports)
billbridge attention list|retry
billbridge exports list [--status S]
billbridge exports show INVOICE_ID                               (record + every attempt)
billbridge provider pause CONNECTION --reason "..." | resume CONNECTION | status [CONNECTION]
billbridge reconcile --provider P [--connection ID] [--since YYYY-MM-DD] [--json]  (audit)

A command that cannot do what it was asked says so and exits non-zero: an unknown connection, a
provider item the provider does not have, an empty API key, a status that does not exist.
What several groups use (opening the store, signalling waiting exports) is in `common.py`.
"""
