"""Names of the activities the workflows call.

The workflow refers to activities by name so that workflow modules import no I/O code (store,
provider SDKs); activities/ registers its functions under these same names.
"""

DECIDE = "decide_export"
LOOKUP_MAPPINGS = "lookup_mappings"
LINK_CUSTOMER = "link_customer"
PUSH_INVOICE = "push_invoice"
RECORD_EXPORT = "record_export"

# Since the one-pass export (workflow patch "one-pass-export"): decide, map, link, plan and check
# in one step, then push and record in one more. The five above stay registered for workflows
# that started before it.
PREPARE_EXPORT = "prepare_export"
PUSH_PLANNED_INVOICE = "push_planned_invoice"

# MarketplaceMeteringWorkflow: aggregate closed hours from the store, save the exact requests in
# the ledger, send them, record the answers.
REPORT_METERING_HOURS = "report_metering_hours"

# ProviderConnectionWorkflow: write a connection's pause switch to the store; wake the workflows
# held while it was paused. ExportInvoiceWorkflow / MarketplaceMeteringWorkflow, held: whether
# their connection is still paused (a local activity, when no wake-up came).
SET_CONNECTION_PAUSED = "set_connection_paused"
RELEASE_HELD_WORKFLOWS = "release_held_workflows"
CONNECTION_PAUSED = "connection_paused"
