"""Low-credit alerts end to end, through real metered calls: one mail and one signed webhook per downward
crossing of the threshold, nothing more while the balance stays below, armed again when credits bring it back;
pending holds neither fire nor re-arm; a rolled-back settle leaves no alert; unlimited accounts never alert;
and a client hammering while broke makes one "credit limit" event, not one per refusal."""

from __future__ import annotations

import math
import uuid
from decimal import Decimal

import asyncpg
import httpx

from common.money import for_json
from protos import billing_pb2, billing_pb2_grpc
from services.billing import queries
from tests.alerts.support import MailSink, Receiver, billing_cli, put_alerts, text, verify_signature, wait_for
from tests.helpers import TestUser, UserFactory
from tests.purchases.stripe_side import LocalStripe
from tests.stack import Stack

STRUCTURE = {"storyInput": {"title": "Low Tide"}, "template": "three-act"}
JUST_BELOW_100 = Decimal("99.9999")  # any charge from 100 crosses it


def spend(client: httpx.Client, user: TestUser) -> Decimal:
    """One metered call; answers the balance after it."""
    response = client.post("/api/generate-structure", json=STRUCTURE, headers=user.headers)
    assert response.status_code == 200, response.text
    return Decimal(response.headers["X-Credits-Remaining"])


def grant(client: httpx.Client, stack: Stack, user: TestUser, credits: int) -> None:
    response = client.post("/api/admin/grant-credits", json={"username": user.username, "credits": credits},
                           headers={"X-API-Key": stack.admin_key, "Idempotency-Key": uuid.uuid4().hex})
    assert response.status_code == 200, response.text


async def alerts_of(db: asyncpg.Connection, user_id: int, kind: str | None = None) -> list[asyncpg.Record]:
    return list(await db.fetch("SELECT * FROM credit_alerts WHERE user_id = $1 AND ($2::text IS NULL OR kind = $2) "
                               "ORDER BY id", user_id, kind))


def armed(client: httpx.Client, user: TestUser) -> bool:
    response = client.get("/api/my-alerts", headers=user.headers)
    assert response.status_code == 200, response.text
    return bool(response.json()["armed"])


async def test_a_crossing_alerts_once_by_mail_and_webhook_and_credits_rearm_it(
    alerts_stack: Stack, client: httpx.Client, users: UserFactory, db: asyncpg.Connection, sink: MailSink,
    receiver: Receiver,
) -> None:
    user = users.create(credits=100)
    url, hook = receiver.hook()
    secret = put_alerts(client, user.headers, threshold=JUST_BELOW_100, webhookUrl=url)["webhookSecret"]

    balance = spend(client, user)
    # Written by the settle's own transaction: there the moment the call answered.
    [first] = await alerts_of(db, user.id)
    assert (first["kind"], first["balance"], first["threshold"]) == ("low_balance", balance, JUST_BELOW_100)
    [mail] = sink.wait(user.email, 1)
    assert mail["To"] == user.email and mail["From"] == "FSG Alerts <alerts@fsg.test>"
    assert mail["Subject"] == f"Your Film Script Generator credits are running low: {for_json(balance)} left"
    assert f"Hello {user.username}" in text(mail)
    assert f"Your balance is {for_json(balance)} credits" in text(mail) and "threshold of 99.9999" in text(mail)
    assert mail["Message-ID"] == f"<alert_{first['id']}@fsg.test>"
    [delivery] = wait_for("the webhook", hook.accepted)
    verify_signature(secret, delivery)
    assert delivery.headers["Content-Type"] == "application/json"
    assert delivery.event["id"] == delivery.headers["FSG-Event-Id"] == f"alert_{first['id']}"
    assert delivery.event["type"] == "credit.low_balance"
    assert delivery.event["data"] == {"user_id": user.id, "balance": balance, "available": balance,
                                      "threshold": JUST_BELOW_100}
    assert not armed(client, user)

    # Staying below sends nothing more: no event is even written.
    below = spend(client, user)
    assert len(await alerts_of(db, user.id)) == 1

    # Credits that bring the balance back to the threshold re-arm it; spending across it again alerts again.
    grant(client, alerts_stack, user, math.ceil(JUST_BELOW_100 - below))
    assert armed(client, user)
    assert len(await alerts_of(db, user.id)) == 1
    for _ in range(50):
        if spend(client, user) < JUST_BELOW_100:
            break
    first_again, second = await alerts_of(db, user.id)
    assert first_again["id"] == first["id"] and second["kind"] == "low_balance"
    mails = sink.wait(user.email, 2)
    hooks = wait_for("the second webhook", lambda: h if len(h := hook.accepted()) >= 2 else None)
    verify_signature(secret, hooks[1])
    assert [h.event["id"] for h in hooks] == [f"alert_{first['id']}", f"alert_{second['id']}"]
    assert [m["Message-ID"] for m in mails] == [f"<alert_{first['id']}@fsg.test>", f"<alert_{second['id']}@fsg.test>"]
    # Exactly one of each per crossing: every delivery of both events is done, each in one attempt.
    deliveries = await db.fetch("SELECT channel, state, attempts FROM credit_alert_deliveries "
                                "WHERE alert_id = ANY($1::bigint[]) ORDER BY id", [first["id"], second["id"]])
    assert [tuple(d) for d in deliveries] == [("email", "delivered", 1), ("webhook", "delivered", 1)] * 2
    assert len(hook.received) == 2 and len(sink.messages(user.email)) == 2


async def test_the_default_threshold_and_an_adjustment(
    alerts_stack: Stack, users: UserFactory, db: asyncpg.Connection, sink: MailSink
) -> None:
    """No threshold of one's own: the default (50 here) applies; an operator's adjustment is a movement like
    any other (the trigger sees every UPDATE of the balance, whoever makes it)."""
    user = users.create(credits=60)
    result = billing_cli(alerts_stack, "grant", "--type", "adjustment", "--", str(user.id), "-15")
    assert result.returncode == 0, result.stdout + result.stderr
    [alert] = await alerts_of(db, user.id)
    assert (alert["balance"], alert["threshold"]) == (45, 50)
    [mail] = sink.wait(user.email, 1)
    assert "below your alert threshold of 50 credits" in text(mail)


async def test_pending_holds_neither_fire_nor_rearm(
    alerts_stack: Stack, client: httpx.Client, users: UserFactory, db: asyncpg.Connection
) -> None:
    """A hold moves credits from available to held without spending them: the balance the alert watches does
    not move, so reserving and voiding neither alert nor re-arm, however low `available` goes."""
    user = users.create(credits=100)
    put_alerts(client, user.headers, threshold=JUST_BELOW_100)
    async with alerts_stack.channel("billing") as channel:
        billing = billing_pb2_grpc.BillingStub(channel)

        async def hold_and_void() -> None:
            hold = str(uuid.uuid4())
            reserved = await billing.Reserve(billing_pb2.ReserveRequest(hold_id=hold, user_id=user.id, amount="60",
                                                                        ttl_seconds=60))
            assert reserved.ok and Decimal(reserved.available) < 50
            await billing.Release(billing_pb2.ReleaseRequest(hold_id=hold, user_id=user.id))

        await hold_and_void()
        assert await alerts_of(db, user.id) == [] and armed(client, user)
        spend(client, user)  # the crossing: now disarmed
        assert len(await alerts_of(db, user.id)) == 1 and not armed(client, user)
        await hold_and_void()
        assert len(await alerts_of(db, user.id)) == 1 and not armed(client, user)


async def test_a_rolled_back_settle_leaves_no_alert(
    alerts_stack: Stack, client: httpx.Client, users: UserFactory, db: asyncpg.Connection, sink: MailSink
) -> None:
    user = users.create(credits=100)
    put_alerts(client, user.headers, threshold=JUST_BELOW_100)
    hold = uuid.uuid4()
    async with alerts_stack.channel("billing") as channel:
        billing = billing_pb2_grpc.BillingStub(channel)
        assert (await billing.Reserve(billing_pb2.ReserveRequest(hold_id=str(hold), user_id=user.id, amount="10",
                                                                 ttl_seconds=60))).ok
        settle = (hold, user.id, "posted", Decimal(5), None, "", "/api/generate-structure", "POST", 900, 400,
                  Decimal(0), "", "", "", 5)
        as_billing = await asyncpg.connect(alerts_stack.role_dsns["billing"])
        try:
            # The crossing writes its alert inside the settle's transaction ...
            transaction = as_billing.transaction()
            await transaction.start()
            assert (await as_billing.fetchrow(queries.SETTLE, *settle))["settled_outcome"] == "posted"
            assert await as_billing.fetchval("SELECT count(*) FROM credit_alerts WHERE user_id = $1", user.id) == 1
            await transaction.rollback()  # ... and a charge rolled back takes it along.
            # A settle that fails on a constraint after the balance moved (a negative token count breaks the usage
            # row's CHECK): one statement, rolled back whole, trigger's writes included.
            bad = (*settle[:8], -1, *settle[9:])
            try:
                await as_billing.fetchrow(queries.SETTLE, *bad)
                raise AssertionError("the settle should have failed")
            except asyncpg.CheckViolationError:
                pass
        finally:
            await as_billing.close()
        assert await alerts_of(db, user.id) == []
        assert await db.fetchval("SELECT count(*) FROM credit_alert_deliveries d JOIN credit_alerts a "
                                 "ON a.id = d.alert_id WHERE a.user_id = $1", user.id) == 0
        # The hold is still pending; posting it for real is the one crossing, and the one mail.
        posted = await billing.Commit(billing_pb2.CommitRequest(hold_id=str(hold), user_id=user.id, amount="5",
                                                                usage=billing_pb2.Usage(endpoint="/api/x")))
    assert posted.outcome == billing_pb2.Outcome.POSTED
    [alert] = await alerts_of(db, user.id)
    assert alert["balance"] == 95
    [mail] = sink.wait(user.email, 1)
    assert "Your balance is 95 credits" in text(mail)


async def test_unlimited_accounts_never_alert(
    alerts_stack: Stack, client: httpx.Client, db: asyncpg.Connection
) -> None:
    admin = {"X-API-Key": alerts_stack.admin_key}
    admin_id = await db.fetchval("SELECT id FROM user_accounts WHERE username = 'admin'")
    settings = put_alerts(client, admin, threshold=100000000)
    assert settings["unlimited"] is True
    response = client.post("/api/generate-structure", json=STRUCTURE, headers=admin)
    assert response.status_code == 200, response.text
    assert await alerts_of(db, admin_id) == []


async def test_refusals_for_insufficient_credits_make_one_event_until_credits_arrive(
    alerts_stack: Stack, client: httpx.Client, users: UserFactory, db: asyncpg.Connection, sink: MailSink,
    receiver: Receiver,
) -> None:
    """The guide's "users hitting credit limits": the first refusal is an event (outbox, mail, webhook and one
    structured log line); a client hammering while broke adds none, until credits arrive and re-arm it."""
    user = users.create(credits=3)
    url, hook = receiver.hook()
    secret = put_alerts(client, user.headers, webhookUrl=url)["webhookSecret"]

    def refused() -> dict[str, object]:
        response = client.post("/api/generate-structure", json=STRUCTURE, headers=user.headers)
        assert response.status_code == 402, response.text
        return dict(response.json())

    answers = [refused() for _ in range(8)]
    first = answers[0]
    [event] = await alerts_of(db, user.id)
    assert (event["kind"], event["available"], event["balance"]) == ("credit_limit", 3, 3)
    assert (event["required"], event["endpoint"]) == (Decimal(str(first["required"])), "/api/generate-structure")
    [mail] = sink.wait(user.email, 1)
    assert mail["Subject"] == "A Film Script Generator call was refused: insufficient credits"
    assert (f"A call to /api/generate-structure needed {for_json(event['required'])} credits, but 3 were available"
            in text(mail))
    [delivery] = wait_for("the webhook", hook.accepted)
    verify_signature(secret, delivery)
    assert delivery.event["type"] == "credit.limit_reached"
    assert delivery.event["data"] == {"user_id": user.id, "balance": 3, "available": 3,
                                      "required": event["required"], "endpoint": "/api/generate-structure"}
    logged = [line for line in alerts_stack.log("billing").splitlines()
              if "event=alerts.credit_limit_reached" in line and f"user_id={user.id}" in line.split()]
    assert len(logged) == 1 and f"alert_id={event['id']}" in logged[0], logged

    grant(client, alerts_stack, user, 1)  # still too little, but credits arrived: armed again
    for _ in range(3):
        refused()
    assert [a["kind"] for a in await alerts_of(db, user.id)] == ["credit_limit", "credit_limit"]
    assert len(sink.wait(user.email, 2)) == 2


async def test_bought_credits_rearm_and_spending_or_a_clawback_crosses(
    alerts_stack: Stack, client: httpx.Client, users: UserFactory, db: asyncpg.Connection, sink: MailSink,
) -> None:
    """The issue's walk: buy a pack through the local Stripe, the credits arrive, spend below the threshold and
    a mail arrives; a refund's clawback is a balance mover like any other."""
    stripe_side = LocalStripe(alerts_stack)
    user = users.create(credits=0)
    threshold = Decimal("499.9")  # just below the starter pack's 500: one call crosses it
    put_alerts(client, user.headers, threshold=threshold)

    def buy(pack: str) -> str:
        bought = client.post("/api/purchases", json={"pack": pack, "paymentMethod": stripe_side.card()},
                             headers=user.headers)
        assert bought.status_code == 201, bought.text
        return str(wait_for("the purchase's webhook", lambda: next(
            (p["paymentIntentId"] for p in client.get("/api/my-purchases", headers=user.headers).json()["purchases"]
             if p["purchaseId"] == bought.json()["purchaseId"] and p["state"] == "succeeded"), None)))

    starter = buy("starter")
    assert armed(client, user)
    balance = spend(client, user)
    assert balance < threshold
    [crossed] = await alerts_of(db, user.id, "low_balance")
    assert crossed["balance"] == balance
    [mail] = sink.wait(user.email, 1)
    assert f"Your balance is {for_json(balance)} credits" in text(mail)

    # Already below: the starter's refund takes the balance under zero without a second alert.
    stripe_side.refund(starter)
    assert stripe_side.delivery(stripe_side.refunded_event(starter)).send(client).json()["outcome"] == "applied"
    assert len(await alerts_of(db, user.id, "low_balance")) == 1
    # A bigger pack re-arms it (paying the debt first); its refund crosses again.
    writer = buy("writer")
    assert armed(client, user)
    stripe_side.refund(writer)
    assert stripe_side.delivery(stripe_side.refunded_event(writer)).send(client).json()["outcome"] == "applied"
    first, second = await alerts_of(db, user.id, "low_balance")
    assert first["id"] == crossed["id"] and second["balance"] == balance - 500 < 0
    sink.wait(user.email, 2)
