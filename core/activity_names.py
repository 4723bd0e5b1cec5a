"""Names of the activities the workflows call.

The workflow refers to activities by name so that workflow modules import no I/O code (store,
provider SDKs); activities/ registers its functions under these same names.
"""

DECIDE = "decide_export"
LOOKUP_MAPPINGS = "lookup_mappings"
LINK_CUSTOMER = "link_customer"
PUSH_INVOICE = "push_invoice"
RECORD_EXPORT = "record_export"
