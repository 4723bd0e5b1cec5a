#!/bin/sh
# One-shot (temporalio/admin-tools): once the Temporal frontend answers, make sure billbridge's
# namespace exists and register the search attributes its workflows upsert (InvoiceId,
# CustomerId, Provider, ExportStatus, ConnectionId: all Keyword; see workflows/search_attributes.py), so the
# Temporal UI can filter exports by invoice, customer, provider and status. Idempotent.
set -eu

ADDRESS=${TEMPORAL_ADDRESS:-temporal:7233}
NAMESPACE=${TEMPORAL_NAMESPACE:-default}
RETENTION=${TEMPORAL_NAMESPACE_RETENTION:-30d}
ATTEMPTS=${SETUP_ATTEMPTS:-60}
SEARCH_ATTRIBUTES="InvoiceId CustomerId Provider ExportStatus ConnectionId"

# retry DESCRIPTION COMMAND...: run COMMAND until it succeeds, at most $ATTEMPTS times.
retry() {
  what=$1
  shift
  attempt=1
  until "$@"; do
    if [ "$attempt" -ge "$ATTEMPTS" ]; then
      echo "temporal-setup: giving up: $what" >&2
      exit 1
    fi
    echo "temporal-setup: $what: not yet (attempt $attempt/$ATTEMPTS)"
    attempt=$((attempt + 1))
    sleep 2
  done
}

ensure_namespace() {
  temporal operator namespace describe --address "$ADDRESS" --namespace "$NAMESPACE" \
      >/dev/null 2>&1 \
    || temporal operator namespace create --address "$ADDRESS" --namespace "$NAMESPACE" \
      --retention "$RETENTION"
}

# Servers answer a repeated registration either with success or with "already exists".
ensure_search_attribute() {
  if output=$(temporal operator search-attribute create --address "$ADDRESS" \
      --namespace "$NAMESPACE" --name "$1" --type Keyword 2>&1); then
    echo "temporal-setup: search attribute $1 (Keyword) registered"
    return 0
  fi
  case "$output" in
    *"already exists"*) echo "temporal-setup: search attribute $1 already registered"; return 0 ;;
  esac
  echo "$output" >&2
  return 1
}

# The namespace registry is cached by the frontend; wait until the new attributes are listed.
search_attributes_listed() {
  listing=$(temporal operator search-attribute list --address "$ADDRESS" \
    --namespace "$NAMESPACE" 2>/dev/null) || return 1
  for name in $SEARCH_ATTRIBUTES; do
    echo "$listing" | grep -qw "$name" || return 1
  done
}

retry "cluster health at $ADDRESS" temporal operator cluster health --address "$ADDRESS"
retry "namespace $NAMESPACE" ensure_namespace
for name in $SEARCH_ATTRIBUTES; do
  retry "search attribute $name" ensure_search_attribute "$name"
done
retry "search attributes listed" search_attributes_listed
echo "temporal-setup: namespace $NAMESPACE ready with search attributes $SEARCH_ATTRIBUTES"
