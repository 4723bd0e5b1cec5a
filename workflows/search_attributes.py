"""Search attributes billbridge upserts, so the Temporal UI answers "where is invoice X and why".

The dev server registers them at start (workers.dev_server); a cluster needs them registered once
(`temporal operator search-attribute create`, see docker-compose.yml).
"""

from temporalio.common import SearchAttributeKey

INVOICE_ID = SearchAttributeKey.for_keyword("InvoiceId")
CUSTOMER_ID = SearchAttributeKey.for_keyword("CustomerId")
PROVIDER = SearchAttributeKey.for_keyword("Provider")
EXPORT_STATUS = SearchAttributeKey.for_keyword("ExportStatus")
# The connection a workflow is held for while it is paused (`billbridge provider pause`): resume
# finds the held workflows by it; ProviderConnectionWorkflow carries its own.
CONNECTION_ID = SearchAttributeKey.for_keyword("ConnectionId")

SEARCH_ATTRIBUTE_TYPES: dict[str, str] = {
    key.name: "Keyword" for key in (INVOICE_ID, CUSTOMER_ID, PROVIDER, EXPORT_STATUS, CONNECTION_ID)
}
