"""What billing asks Stripe for, checked without a Stripe: localstripe has no hosted Checkout, so the session's
parameters are checked here (and their types against the stripe SDK's own SessionCreateParams by mypy), and
which way to pay each kind of server takes."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest
from pydantic import SecretStr

from services.billing.errors import InvalidBillingRequest
from services.billing.packs import Pack
from services.billing.purchases import CheckoutPages, TestCard, _payment, checkout_params, purchases_from_settings
from services.billing.settings import BillingSettings

PACK = Pack(id="writer", name="Writer", credits=Decimal(2000), bonusCredits=Decimal(200), amount=2000, currency="usd")
PAGES = CheckoutPages("https://films.example/paid?session={CHECKOUT_SESSION_ID}", "https://films.example/buy")


def test_a_checkout_session_sells_one_pack_and_names_the_purchase_twice() -> None:
    purchase = uuid.uuid4()
    params = checkout_params(purchase, 7, PACK, PAGES)
    named = {"purchase_id": str(purchase), "user_id": "7", "pack": "writer"}
    assert params["mode"] == "payment"
    assert params["line_items"] == [{"quantity": 1, "price_data": {
        "currency": "usd", "unit_amount": 2000, "product_data": {"name": "Writer: 2200 credits"}}}]
    assert (params["success_url"], params["cancel_url"]) == (PAGES.success_url, PAGES.cancel_url)
    assert params["client_reference_id"] == str(purchase)
    # On the session and on the PaymentIntent it creates: both kinds of event find the purchase.
    assert params["metadata"] == named and params["payment_intent_data"] == {"metadata": named}


def test_each_way_to_pay_where_it_works() -> None:
    assert _payment("", "4242 4242 4242 4242", None, test_cards=True) == TestCard("4242424242424242")
    assert _payment("", "", PAGES, test_cards=False) == PAGES
    assert _payment("pm_123", "", None, test_cards=False) == "pm_123"
    assert _payment("", "", None, test_cards=False) is None
    refusals = [
        (("", "4242424242424242", None), False, "only by the local fake Stripe"),
        (("", "", PAGES), True, "needs a real Stripe key"),
        (("pm_1", "4242424242424242", None), True, "at most one"),
        (("", "", CheckoutPages("javascript:alert(1)", "https://x.example")), False, "http(s) URL"),
        (("", "", CheckoutPages("https://user:pw@x.example", "https://x.example")), False, "without credentials"),
        (("card_123", "", None), False, "pm_"),
    ]
    for args, test_cards, why in refusals:
        with pytest.raises(InvalidBillingRequest, match=why.replace("(", r"\(").replace(")", r"\)")):
            _payment(*args, test_cards=test_cards)


def test_test_cards_are_never_taken_with_a_live_key() -> None:
    settings = BillingSettings(stripe_secret_key=SecretStr("sk_live_123"), stripe_test_cards=True)
    with pytest.raises(ValueError, match="never with a live key"):
        purchases_from_settings(None, settings)  # type: ignore[arg-type]
