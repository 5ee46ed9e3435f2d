"""Buying credits through the stack's own localstripe: credits arrive only from verified Stripe events, each
applied once, in any order; refunds and disputes claw back, even what was spent; reconcile agrees with Stripe.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from tests.helpers import TestUser, UserFactory, db_snapshot
from tests.purchases.stripe_side import DECLINED, LocalStripe, event, wait_for
from tests.reliability.support import reconcile_cli
from tests.stack import Stack

PACKS_FILE = Path(__file__).resolve().parents[2] / "services" / "billing" / "packs.json"
STRUCTURE = {"storyInput": {"title": "Debts", "logline": "A writer spends credits she no longer has."},
             "template": "three-act"}


@pytest.fixture(scope="module")
def stripe_side(stack: Stack) -> LocalStripe:
    return LocalStripe(stack)


def packs() -> dict[str, dict[str, Any]]:
    """The catalogue as its data file says (read here, not through billing's code)."""
    return {p["id"]: p for p in json.loads(PACKS_FILE.read_text())}


def pack_credits(pack_id: str) -> Decimal:
    p = packs()[pack_id]
    return Decimal(p["credits"]) + Decimal(p["bonusCredits"])


def buy(client: httpx.Client, user: TestUser, pack: str, **extra: Any) -> httpx.Response:
    headers = {**user.headers, **extra.pop("headers", {})}
    return client.post("/api/purchases", json={"pack": pack, **extra}, headers=headers)


def purchase_of(client: httpx.Client, user: TestUser, purchase_id: str) -> dict[str, Any]:
    listed = client.get("/api/my-purchases", headers=user.headers)
    assert listed.status_code == 200, listed.text
    return next(p for p in listed.json()["purchases"] if p["purchaseId"] == purchase_id)


def settled(client: httpx.Client, user: TestUser, purchase_id: str, state: str) -> dict[str, Any]:
    return wait_for(lambda: (p := purchase_of(client, user, purchase_id))["state"] == state and p,
                    what=f"purchase {purchase_id} to be {state}")


def paid(client: httpx.Client, user: TestUser, stripe_side: LocalStripe, pack: str) -> tuple[str, str]:
    """Buy a pack with the card that pays and wait for its webhook: (purchase id, PaymentIntent id)."""
    started = buy(client, user, pack, paymentMethod=stripe_side.card())
    assert started.status_code == 201, started.text
    purchase = settled(client, user, started.json()["purchaseId"], "succeeded")
    return purchase["purchaseId"], purchase["paymentIntentId"]


async def ledger(db: asyncpg.Connection, user_id: int) -> list[asyncpg.Record]:
    return list(await db.fetch(
        """SELECT transaction_type, credits_amount, balance_after, purchase_id::text, stripe_event_id, notes
           FROM credit_transactions WHERE user_id = $1 AND transaction_type IN ('purchase', 'clawback', 'grant')
           ORDER BY id""", user_id))


async def available(db: asyncpg.Connection, user_id: int) -> Decimal:
    return Decimal(await db.fetchval("SELECT available FROM credit_accounts WHERE user_id = $1", user_id))


def assert_reconciled_with_stripe(stack: Stack) -> str:
    result = reconcile_cli(stack)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "every purchase what Stripe says" in result.stdout, result.stdout
    return result.stdout


# -- the catalogue ------------------------------------------------------------------------------------------
def test_the_packs_on_sale_are_the_catalogue_file(client: httpx.Client) -> None:
    answer = client.get("/api/credit-packs")  # no key: a price list is public
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["publishableKey"], body["testMode"]) == ("pk_test_localstripe", True)
    listed = {p["id"]: p for p in body["packs"]}
    assert list(listed) == list(packs())
    for pack_id, p in packs().items():
        assert Decimal(str(listed[pack_id]["credits"])) == pack_credits(pack_id)
        assert Decimal(str(listed[pack_id]["bonusCredits"])) == Decimal(p["bonusCredits"])
        assert (listed[pack_id]["amount"], listed[pack_id]["currency"]) == (p["amount"], p["currency"])
    assert any(Decimal(p["bonusCredits"]) > 0 for p in packs().values()), "a larger pack carries a bonus"


# -- buying -------------------------------------------------------------------------------------------------
async def test_a_paid_purchase_credits_the_pack_from_the_webhook(
        client: httpx.Client, users: UserFactory, stripe_side: LocalStripe, db: asyncpg.Connection) -> None:
    user = users.create(credits=0)
    started = buy(client, user, "writer", paymentMethod=stripe_side.card())
    assert started.status_code == 201, started.text
    body = started.json()
    assert set(body) >= {"purchaseId", "clientSecret", "amount", "currency", "credits"}
    assert (body["amount"], body["currency"], Decimal(str(body["credits"]))) == (2000, "usd", pack_credits("writer"))
    assert body["paymentStatus"] == "succeeded"
    # Stripe has the purchase's user, pack and id in the intent's metadata.
    intent = stripe_side.intent(purchase_of(client, user, body["purchaseId"])["paymentIntentId"])
    assert intent["metadata"] == {"purchase_id": body["purchaseId"], "user_id": str(user.id), "pack": "writer"}
    assert body["clientSecret"] == intent["client_secret"]

    bought = settled(client, user, body["purchaseId"], "succeeded")
    assert Decimal(str(bought["credited"])) == pack_credits("writer")
    assert users.balance(user) == pack_credits("writer")
    rows = await ledger(db, user.id)
    assert [(r["transaction_type"], r["credits_amount"], r["purchase_id"]) for r in rows] == [
        ("purchase", pack_credits("writer"), body["purchaseId"])]
    assert rows[0]["stripe_event_id"].startswith("evt_") and intent["id"] in rows[0]["notes"]
    [shown] = client.get("/api/my-transactions", headers=user.headers).json()["transactions"]
    assert (shown["purchase_id"], shown["stripe_event_id"]) == (body["purchaseId"], rows[0]["stripe_event_id"])


def test_a_client_confirms_with_the_client_secret(
        client: httpx.Client, users: UserFactory, stripe_side: LocalStripe) -> None:
    user = users.create(credits=0)
    started = buy(client, user, "starter")
    assert started.status_code == 201, started.text
    assert started.json()["paymentStatus"] == "requires_payment_method"
    purchase = purchase_of(client, user, started.json()["purchaseId"])
    assert purchase["state"] == "pending" and users.balance(user) == 0
    assert stripe_side.pay(purchase["paymentIntentId"]) == "succeeded"
    settled(client, user, purchase["purchaseId"], "succeeded")
    assert users.balance(user) == pack_credits("starter")


async def test_a_declined_card_buys_nothing(
        client: httpx.Client, users: UserFactory, stripe_side: LocalStripe, db: asyncpg.Connection) -> None:
    user = users.create(credits=0)
    with stripe_side.held_webhooks() as tap:
        declined = buy(client, user, "starter", paymentMethod=stripe_side.card(DECLINED))
        assert declined.status_code == 402, declined.text
        assert declined.json()["error"] == "Payment declined"
        [purchase] = client.get("/api/my-purchases", headers=user.headers).json()["purchases"]
        assert purchase["state"] == "failed" and "declined" in purchase["failureMessage"]
        failed = tap.wait("payment_intent.payment_failed", purchase["paymentIntentId"])
    answer = failed.send(client)
    assert (answer.status_code, answer.json()["outcome"]) == (200, "applied"), answer.text
    assert purchase_of(client, user, purchase["purchaseId"])["state"] == "failed"
    assert users.balance(user) == 0 and await ledger(db, user.id) == []


def test_a_retried_purchase_with_its_idempotency_key_is_the_same_purchase(
        client: httpx.Client, users: UserFactory) -> None:
    user = users.create(credits=0)
    key = {"Idempotency-Key": "buy-writer-once"}
    first, again = buy(client, user, "writer", headers=key), buy(client, user, "writer", headers=key)
    assert first.status_code == again.status_code == 201, again.text
    assert again.json() == first.json()
    assert len(client.get("/api/my-purchases", headers=user.headers).json()["purchases"]) == 1
    other = buy(client, user, "studio", headers=key)
    assert other.status_code == 422 and other.json()["error"] == "Idempotency key reused", other.text


# -- webhooks: verified, once, any order --------------------------------------------------------------------
async def test_a_webhook_that_does_not_verify_is_refused_and_changes_nothing(
        client: httpx.Client, users: UserFactory, stripe_side: LocalStripe, db: asyncpg.Connection) -> None:
    user = users.create(credits=0)
    started = buy(client, user, "starter").json()
    purchase = purchase_of(client, user, started["purchaseId"])
    intent = stripe_side.intent(purchase["paymentIntentId"])
    paid = event("payment_intent.succeeded", {**intent, "status": "succeeded", "amount_received": 500})
    genuine = stripe_side.delivery(paid)
    tampered = genuine.body.replace(b'"amount_received": 500', b'"amount_received": 50000')
    assert tampered != genuine.body
    events_before = await db.fetchval("SELECT count(*) FROM stripe_events")
    before = await db_snapshot(db, user.id)
    attempts = {
        "tampered body": (tampered, genuine.signature),
        "no signature": (genuine.body, ""),
        "another secret": (genuine.body, stripe_side.delivery(paid, secret="whsec_not_ours").signature),
        "too old": (genuine.body, stripe_side.delivery(paid, timestamp=int(time.time()) - 301).signature),
        "garbage header": (genuine.body, "t=soon,v1=nope"),
    }
    for name, (body, signature) in attempts.items():
        answer = client.post("/api/webhooks/stripe", content=body, headers={"Stripe-Signature": signature})
        assert answer.status_code == 400, (name, answer.text)
        assert answer.json()["error"] == "Invalid Stripe signature", name
    assert await db.fetchval("SELECT count(*) FROM stripe_events") == events_before
    assert await db_snapshot(db, user.id) == before
    assert purchase_of(client, user, started["purchaseId"])["state"] == "pending"


async def test_the_same_event_delivered_twice_and_concurrently_grants_once(
        client: httpx.Client, users: UserFactory, stripe_side: LocalStripe, db: asyncpg.Connection) -> None:
    user = users.create(credits=0)
    with stripe_side.held_webhooks() as tap:
        started = buy(client, user, "studio", paymentMethod=stripe_side.card()).json()
        intent_id = purchase_of(client, user, started["purchaseId"])["paymentIntentId"]
        delivery = tap.wait("payment_intent.succeeded", intent_id)  # signed by localstripe, as Stripe signs
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda _: delivery.send(client), range(16)))
    outcomes = sorted(a.json()["outcome"] for a in answers)
    assert all(a.status_code == 200 for a in answers)
    assert outcomes == ["applied"] + ["duplicate"] * 15
    again = delivery.send(client)
    assert (again.status_code, again.json()["outcome"]) == (200, "duplicate")
    assert [r["credits_amount"] for r in await ledger(db, user.id)] == [pack_credits("studio")]
    assert users.balance(user) == pack_credits("studio")


async def test_a_refund_delivered_before_the_payment_ends_refunded(
        client: httpx.Client, users: UserFactory, stripe_side: LocalStripe, db: asyncpg.Connection,
        stack: Stack) -> None:
    user = users.create(credits=0)
    with stripe_side.held_webhooks() as tap:
        started = buy(client, user, "starter", paymentMethod=stripe_side.card()).json()
        intent_id = purchase_of(client, user, started["purchaseId"])["paymentIntentId"]
        succeeded = tap.wait("payment_intent.succeeded", intent_id)
    stripe_side.refund(intent_id)
    refunded = stripe_side.delivery(stripe_side.refunded_event(intent_id))
    assert refunded.send(client).json()["outcome"] == "applied"
    assert succeeded.send(client).json()["outcome"] == "applied"
    final = purchase_of(client, user, started["purchaseId"])
    assert (final["state"], Decimal(str(final["credited"])), final["refundedAmount"]) == ("refunded", 0, 500)
    assert users.balance(user) == 0
    assert await ledger(db, user.id) == []  # nothing was ever credited, so nothing clawed back
    assert_reconciled_with_stripe(stack)


async def test_a_refund_after_spending_leaves_a_debt_that_blocks_calls_until_paid(
        client: httpx.Client, users: UserFactory, stripe_side: LocalStripe, db: asyncpg.Connection,
        stack: Stack) -> None:
    user = users.create(credits=0)
    purchase_id, intent_id = paid(client, user, stripe_side, "starter")
    for _ in range(2):
        spent = client.post("/api/generate-structure", json=STRUCTURE, headers=user.headers)
        assert spent.status_code == 200, spent.text
    left = users.balance(user)
    assert 0 < left < pack_credits("starter")

    stripe_side.refund(intent_id)
    answer = stripe_side.delivery(stripe_side.refunded_event(intent_id)).send(client)
    assert answer.json()["outcome"] == "applied", answer.text

    owed = pack_credits("starter") - left
    stats = users.stats(user)["user"]
    assert Decimal(str(stats["credits_remaining"])) == -owed
    assert Decimal(str(stats["credits_owed"])) == owed
    assert purchase_of(client, user, purchase_id)["state"] == "refunded"
    rows = await ledger(db, user.id)
    assert [(r["transaction_type"], r["credits_amount"]) for r in rows] == [
        ("purchase", pack_credits("starter")), ("clawback", -pack_credits("starter"))]
    assert rows[-1]["balance_after"] == -owed
    refused = client.post("/api/generate-structure", json=STRUCTURE, headers=user.headers)
    assert refused.status_code == 402, refused.text
    assert Decimal(str(refused.json()["owed"])) == owed and "owes" in refused.json()["message"]
    assert_reconciled_with_stripe(stack)

    # Buying again pays the debt first; what is left can be spent.
    again = buy(client, user, "writer", paymentMethod=stripe_side.card()).json()
    settled(client, user, again["purchaseId"], "succeeded")
    assert users.balance(user) == pack_credits("writer") - owed
    assert client.post("/api/generate-structure", json=STRUCTURE, headers=user.headers).status_code == 200
    assert_reconciled_with_stripe(stack)


async def test_a_partial_refund_claws_back_its_share_rounded_up(
        client: httpx.Client, users: UserFactory, stripe_side: LocalStripe, db: asyncpg.Connection) -> None:
    user = users.create(credits=0)
    purchase_id, intent_id = paid(client, user, stripe_side, "writer")
    stripe_side.refund(intent_id, amount=333)
    stripe_side.delivery(stripe_side.refunded_event(intent_id)).send(client)
    # 333 of 2000 cents refunded: 2200 × 333 / 2000 = 366.3 credits back, exactly (no rounding needed here);
    # and 1 more cent: 2200 × 334 / 2000 = 367.4.
    assert purchase_of(client, user, purchase_id)["state"] == "partially_refunded"
    assert users.balance(user) == Decimal("2200") - Decimal("366.3")
    stripe_side.refund(intent_id, amount=1)
    stripe_side.delivery(stripe_side.refunded_event(intent_id)).send(client)
    assert users.balance(user) == Decimal("2200") - Decimal("367.4")
    assert [r["credits_amount"] for r in await ledger(db, user.id)] == [
        Decimal("2200"), Decimal("-366.3"), Decimal("-1.1")]


async def test_a_dispute_claws_back_and_a_won_dispute_gives_back_in_any_order(
        client: httpx.Client, users: UserFactory, stripe_side: LocalStripe, db: asyncpg.Connection,
        stack: Stack) -> None:
    user = users.create(credits=0)
    purchase_id, intent_id = paid(client, user, stripe_side, "starter")
    charge = stripe_side.charge(intent_id)
    dispute = {"id": f"dp_{charge['id'][3:]}", "object": "dispute", "amount": 500, "currency": "usd",
               "charge": charge["id"], "payment_intent": intent_id, "status": "needs_response"}
    opened = stripe_side.delivery(event("charge.dispute.created", dispute))
    won = stripe_side.delivery(event("charge.dispute.closed", {**dispute, "status": "won"}))

    assert opened.send(client).json()["outcome"] == "applied"
    assert purchase_of(client, user, purchase_id)["state"] == "disputed"
    assert users.balance(user) == 0
    assert won.send(client).json()["outcome"] == "applied"
    assert purchase_of(client, user, purchase_id)["state"] == "succeeded"
    assert users.balance(user) == pack_credits("starter")
    # A late copy of the opening event (a new delivery of it) cannot reopen a closed dispute.
    late = stripe_side.delivery(event("charge.dispute.updated", {**dispute, "status": "under_review"}))
    assert late.send(client).json()["outcome"] == "applied"
    assert users.balance(user) == pack_credits("starter")
    assert [r["credits_amount"] for r in await ledger(db, user.id)] == [Decimal(500), Decimal(-500), Decimal(500)]
    assert_reconciled_with_stripe(stack)


async def test_a_payment_of_another_amount_than_the_pack_credits_nothing(
        client: httpx.Client, users: UserFactory, stripe_side: LocalStripe, db: asyncpg.Connection) -> None:
    user = users.create(credits=0)
    started = buy(client, user, "studio").json()
    intent = stripe_side.intent(purchase_of(client, user, started["purchaseId"])["paymentIntentId"])
    cheap = event("payment_intent.succeeded", {**intent, "status": "succeeded", "amount": 100, "amount_received": 100})
    assert stripe_side.delivery(cheap).send(client).json()["outcome"] == "applied"
    assert purchase_of(client, user, started["purchaseId"])["state"] == "mismatch"
    assert users.balance(user) == 0 and await ledger(db, user.id) == []


async def test_events_billing_does_not_act_on_are_acknowledged_and_ignored(
        client: httpx.Client, stripe_side: LocalStripe, db: asyncpg.Connection) -> None:
    unknown = stripe_side.delivery(event("customer.created", {"id": "cus_123", "object": "customer"}))
    answer = unknown.send(client)
    assert (answer.status_code, answer.json()["outcome"]) == (200, "ignored"), answer.text
    assert unknown.send(client).json()["outcome"] == "duplicate"
    stranger = stripe_side.delivery(event("payment_intent.succeeded", {
        "id": "pi_notours", "object": "payment_intent", "amount": 500, "amount_received": 500, "currency": "usd",
        "status": "succeeded", "metadata": {}}))
    assert stranger.send(client).json()["outcome"] == "not_ours"
    outcomes = await db.fetch("SELECT outcome FROM stripe_events WHERE id = ANY($1::text[])",
                              [unknown.event["id"], stranger.event["id"]])
    assert sorted(r["outcome"] for r in outcomes) == ["ignored", "not_ours"]


# -- bad input ----------------------------------------------------------------------------------------------
async def test_bad_purchases_are_refused_and_change_nothing(
        client: httpx.Client, users: UserFactory, admin_headers: dict[str, str], db: asyncpg.Connection) -> None:
    user = users.create(credits=0)
    before = await db_snapshot(db, user.id)
    cases = {
        "unknown pack": ({"pack": "gold-bar"}, user.headers, 404),
        "no pack": ({}, user.headers, 422),
        "a payment method that is no id": ({"pack": "starter", "paymentMethod": "4242424242424242"}, user.headers, 422),
        "extra field": ({"pack": "starter", "credits": 1000000}, user.headers, 422),
        "no key": ({"pack": "starter"}, {}, 401),
    }
    for name, (body, headers, status) in cases.items():
        answer = client.post("/api/purchases", json=body, headers=headers)
        assert answer.status_code == status, (name, answer.text)
        assert "error" in answer.json(), name
    assert await db_snapshot(db, user.id) == before
    assert await db.fetchval("SELECT count(*) FROM purchases WHERE user_id = $1", user.id) == 0

    disabled = client.post(f"/api/admin/users/{user.username}/disable", headers=admin_headers)
    assert disabled.status_code == 200, disabled.text
    refused = client.post("/api/purchases", json={"pack": "starter"}, headers=user.headers)
    assert refused.status_code == 401, refused.text
    assert await db.fetchval("SELECT count(*) FROM purchases WHERE user_id = $1", user.id) == 0


def test_an_oversized_webhook_is_refused(client: httpx.Client, stack: Stack) -> None:
    body = b'{"id": "evt_big", "pad": "' + b"x" * (1024 * 1024) + b'"}'
    answer = client.post("/api/webhooks/stripe", content=body, headers={"Stripe-Signature": "t=1,v1=00"})
    assert answer.status_code == 413, answer.text
    assert answer.json()["error"] == "Request body too large"


# -- reconcile against Stripe -------------------------------------------------------------------------------
def test_reconcile_finds_a_refund_the_books_never_heard_of(
        client: httpx.Client, users: UserFactory, stripe_side: LocalStripe, stack: Stack) -> None:
    user = users.create(credits=0)
    purchase_id, intent_id = paid(client, user, stripe_side, "starter")
    stripe_side.refund(intent_id)  # at Stripe; its event not delivered (yet)
    differs = reconcile_cli(stack)
    assert differs.returncode == 1, differs.stdout
    assert f"purchase {purchase_id}" in differs.stdout
    assert "Stripe says 500 was refunded; the purchase counts 0" in differs.stdout
    stripe_side.delivery(stripe_side.refunded_event(intent_id)).send(client)
    assert_reconciled_with_stripe(stack)


async def test_reconcile_finds_a_purchase_whose_credits_differ_from_its_ledger(
        client: httpx.Client, users: UserFactory, stripe_side: LocalStripe, stack: Stack,
        db: asyncpg.Connection) -> None:
    user = users.create(credits=0)
    purchase_id, _ = paid(client, user, stripe_side, "starter")
    await db.execute("UPDATE purchases SET credited = 400 WHERE id = $1::uuid", purchase_id)
    try:
        differs = reconcile_cli(stack)
        assert differs.returncode == 1
        assert f"purchase {purchase_id} (user {user.id}): credited 400.0000 but its ledger rows sum to " \
               "500.0000" in differs.stdout
    finally:
        await db.execute("UPDATE purchases SET credited = 500 WHERE id = $1::uuid", purchase_id)
    assert_reconciled_with_stripe(stack)


# -- ways to pay ----------------------------------------------------------------------------------------------
async def test_a_test_card_pays_against_the_local_fake_stripe(
        client: httpx.Client, users: UserFactory, db: asyncpg.Connection) -> None:
    assert client.get("/api/credit-packs").json()["testMode"] is True
    user = users.create(credits=0)
    started = buy(client, user, "starter", testCard="4242 4242 4242 4242")
    assert started.status_code == 201 and started.json()["paymentStatus"] == "succeeded", started.text
    settled(client, user, started.json()["purchaseId"], "succeeded")
    assert users.balance(user) == pack_credits("starter")
    declined = buy(client, user, "starter", testCard=DECLINED)
    assert (declined.status_code, declined.json()["error"]) == (402, "Payment declined"), declined.text
    assert users.balance(user) == pack_credits("starter")


def test_one_way_to_pay_and_only_where_it_works(client: httpx.Client, users: UserFactory) -> None:
    user = users.create(credits=0)
    both = buy(client, user, "starter", testCard="4242424242424242", paymentMethod="pm_card_visa")
    assert both.status_code == 400 and "at most one" in both.json()["error"], both.text
    hosted = buy(client, user, "starter", checkout={"successUrl": "https://example.com/ok",
                                                    "cancelUrl": "https://example.com/no"})
    assert hosted.status_code == 400 and "real Stripe key" in hosted.json()["error"], hosted.text
    not_a_card = buy(client, user, "starter", testCard="4242-4242")
    assert not_a_card.status_code == 422, not_a_card.text
    assert client.get("/api/my-purchases", headers=user.headers).json()["purchases"] == []


async def test_a_completed_hosted_checkout_credits_its_purchase(
        client: httpx.Client, users: UserFactory, stripe_side: LocalStripe, db: asyncpg.Connection) -> None:
    """localstripe has no Checkout, so the test pays the intent there (what Stripe's page does) and delivers
    the checkout.session.completed event Stripe sends, instead of the intent's own event."""
    user = users.create(credits=0)
    with stripe_side.held_webhooks():
        started = buy(client, user, "writer").json()
        intent_id = purchase_of(client, user, started["purchaseId"])["paymentIntentId"]
        assert stripe_side.pay(intent_id) == "succeeded"
    session = {"id": "cs_test_" + intent_id[3:], "object": "checkout.session", "mode": "payment",
               "payment_status": "paid", "status": "complete", "amount_total": 2000, "currency": "usd",
               "payment_intent": intent_id, "client_reference_id": started["purchaseId"],
               "metadata": {"purchase_id": started["purchaseId"], "user_id": str(user.id), "pack": "writer"}}
    answer = stripe_side.delivery(event("checkout.session.completed", session)).send(client)
    assert answer.json()["outcome"] == "applied", answer.text
    assert purchase_of(client, user, started["purchaseId"])["state"] == "succeeded"
    assert users.balance(user) == pack_credits("writer")
