"""How long one provider request may take, and how long a push may go without a heartbeat.

Pure (only datetime): the workflow imports PUSH_HEARTBEAT_TIMEOUT, the providers the rest.

The rule these numbers keep: an attempt of the push never writes while its own retry runs.
Temporal starts a retry of the push after PUSH_HEARTBEAT_TIMEOUT without a heartbeat; an attempt
whose worker is alive but stuck in a request must have given that request up (and with it the
attempt) before then. Every provider request heartbeats right before and right after it (the
providers' `_call`) and has a total deadline, not a per-socket-operation one
(activities/providers/deadline.py), so the longest silence the server sees is one request plus
the work next to it:

    request timeout + slack < heartbeat timeout

Heartbeat throttling does not add to the left side. Temporal's core SDK sends the first heartbeat
of an activity at once and then at most one per throttle interval (0.8 x the heartbeat timeout,
at most 60 s), sending the newest held-back heartbeat when an interval ends; with nothing held
back the interval closes and the next heartbeat goes out at once. So the heartbeat recorded just
before a request reaches the server no earlier than it was recorded, the one recorded just after
it reaches the server either at the end of the interval (0.8 x the heartbeat timeout after the
previous send) or at once, and the silence is at most max(0.8 x heartbeat timeout,
request + slack).

The slack (20 s in production) covers the heartbeat RPC itself, the store write between calls,
and thread scheduling. QuickBooks' OAuth token refresh is a step of its own between two
heartbeats, bounded by activities/oauth.TOKEN_TIMEOUT (30 s, per socket operation).

Why 25 s and 45 s: both APIs answer in well under a few seconds when healthy (Stripe's SDKs wait
80 s by default only as a last resort); a request still unanswered after 25 s is given up and
retried by Temporal, where the idempotency keys / requestid make the retry safe. The heartbeat
timeout is what a crashed worker costs: its push resumes elsewhere that long after its last
heartbeat, so it is kept as small as the rule allows.
"""

from __future__ import annotations

from datetime import timedelta

# Total time one provider request (connect, send, wait, read) may take.
PROVIDER_REQUEST_TIMEOUT = timedelta(seconds=25)
# The push activity's heartbeat timeout (workflows/export_invoice.py, _push_step).
PUSH_HEARTBEAT_TIMEOUT = timedelta(seconds=45)
# The largest part of a heartbeat timeout one request may use; the rest is the slack.
REQUEST_SHARE = 5 / 9

assert PROVIDER_REQUEST_TIMEOUT <= PUSH_HEARTBEAT_TIMEOUT * REQUEST_SHARE, (
    "a provider request must end well before the push's heartbeat timeout"
)


def request_timeout(heartbeat_timeout: timedelta | None) -> timedelta:
    """The total deadline of one provider request in an activity with this heartbeat timeout.

    PROVIDER_REQUEST_TIMEOUT, shortened when the activity's own heartbeat timeout is shorter than
    the push's (tests run the push with a short one): the rule above then holds whatever heartbeat
    timeout the activity was scheduled with. None: no heartbeat timeout (not a push).
    """
    if heartbeat_timeout is None:
        return PROVIDER_REQUEST_TIMEOUT
    return min(PROVIDER_REQUEST_TIMEOUT, heartbeat_timeout * REQUEST_SHARE)
