"""Bounds on a user's rate limits, shared by billing (which enforces them) and the edge (which validates
the admin's input before calling billing)."""

#: Above this a per-minute limit could admit more than `rpm` calls in a burst: billing's GCRA floors its
#: emission interval (60 s / rpm) to whole microseconds. 0 (no limit) is the way to go higher.
MAX_REQUESTS_PER_MINUTE = 6000
#: Concurrent metered calls (pending holds) one user may have.
MAX_CONCURRENT = 10_000
