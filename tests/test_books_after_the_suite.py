"""The last test of the session: after everything the suite did to the shared stack (every metered call,
fault, race, replay and refusal), `fsg-billing reconcile` finds every balance equal to the ledger, every hold
equal to its rows, and credits conserved over all accounts."""

from __future__ import annotations

from tests.reliability.support import assert_reconciled
from tests.stack import Stack


def test_reconcile_is_clean_after_the_whole_suite(stack: Stack) -> None:
    assert_reconciled(stack)
