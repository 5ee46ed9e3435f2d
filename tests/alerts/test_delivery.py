"""Delivery of the alert outbox through failures: billing killed after an alert committed, or dying between
claiming a delivery and sending it; a webhook that keeps failing becomes a dead letter that the operator
lists and replays (the mail of the same event is not touched); and two billing replicas deliver each alert
once."""

from __future__ import annotations

import asyncio
import re
from concurrent.futures import ThreadPoolExecutor

import asyncpg
import httpx

from services.billing.alerts.repository import AlertRepository
from tests.alerts.support import (
    MailSink,
    Receiver,
    billing_cli,
    put_alerts,
    restart_billing,
    text,
    verify_signature,
    wait_for,
)
from tests.alerts.test_alerts import JUST_BELOW_100, alerts_of, spend
from tests.helpers import UserFactory
from tests.stack import Stack

FAULTS = {"FSG_FAULT_INJECTION": "1"}


async def deliveries(db: asyncpg.Connection, alert_id: int) -> dict[str, asyncpg.Record]:
    rows = await db.fetch("SELECT * FROM credit_alert_deliveries WHERE alert_id = $1", alert_id)
    return {r["channel"]: r for r in rows}


async def wait_state(db: asyncpg.Connection, delivery_id: int, state: str) -> asyncpg.Record:
    deadline = asyncio.get_running_loop().time() + 30
    while True:
        row = await db.fetchrow("SELECT * FROM credit_alert_deliveries WHERE id = $1", delivery_id)
        if row["state"] == state:
            return row
        assert asyncio.get_running_loop().time() < deadline, f"delivery {delivery_id} is {row['state']}, not {state}"
        await asyncio.sleep(0.05)


async def test_an_alert_committed_before_billing_is_killed_is_delivered_after_the_restart(
    alerts_stack: Stack, client: httpx.Client, users: UserFactory, db: asyncpg.Connection, sink: MailSink,
    receiver: Receiver,
) -> None:
    user = users.create(credits=100)
    url, hook = receiver.hook()
    secret = put_alerts(client, user.headers, threshold=JUST_BELOW_100, webhookUrl=url)["webhookSecret"]
    # A dispatcher that has not come round yet (it claims nothing): the alert is committed, not yet delivered.
    restart_billing(alerts_stack, {**FAULTS, "BILLING_ALERT_FAULT": "stall"})
    try:
        spend(client, user)
        [alert] = await alerts_of(db, user.id)
        pending = await deliveries(db, alert["id"])
        assert {c: (d["state"], d["attempts"]) for c, d in pending.items()} == {
            "email": ("pending", 0), "webhook": ("pending", 0)}
        alerts_stack.kill("billing")  # SIGKILL: no drain, nothing flushed
    finally:
        restart_billing(alerts_stack)
    [mail] = sink.wait(user.email, 1)
    assert mail["Message-ID"] == f"<alert_{alert['id']}@fsg.test>"
    [delivery] = wait_for("the webhook", hook.accepted)
    verify_signature(secret, delivery)
    done = {c: await wait_state(db, d["id"], "delivered") for c, d in pending.items()}
    assert {c: d["attempts"] for c, d in done.items()} == {"email": 1, "webhook": 1}


async def test_a_dispatcher_dying_mid_delivery_leaves_it_to_the_next_after_its_lease(
    alerts_stack: Stack, users: UserFactory, db: asyncpg.Connection, sink: MailSink
) -> None:
    async def nothing_pending() -> bool:
        return await db.fetchval("SELECT count(*) FROM credit_alert_deliveries WHERE state = 'pending'") == 0

    while not await nothing_pending():  # so that the crash below is this test's delivery's
        await asyncio.sleep(0.05)
    user = users.create(credits=60)
    restart_billing(alerts_stack, {**FAULTS, "BILLING_ALERT_FAULT": "crash_before_delivery"})
    try:
        # The crossing comes from an operator's adjustment (its own process, straight to the database), so
        # billing dying does not touch it.
        result = billing_cli(alerts_stack, "grant", "--type", "adjustment", "--", str(user.id), "-15")
        assert result.returncode == 0, result.stdout + result.stderr
        billing = alerts_stack.processes["billing"]
        wait_for("billing to crash", lambda: billing.poll() is not None)
        assert billing.returncode == 70
        [alert] = await alerts_of(db, user.id)
        claimed = (await deliveries(db, alert["id"]))["email"]
        # Claimed (one attempt counted, leased), never sent.
        assert (claimed["state"], claimed["attempts"]) == ("pending", 1)
        assert claimed["next_attempt_at"] > await db.fetchval("SELECT now()")
        assert sink.messages(user.email) == []
    finally:
        restart_billing(alerts_stack)
    [mail] = sink.wait(user.email, 1)
    assert "Your balance is 45 credits" in text(mail)
    assert (await wait_state(db, claimed["id"], "delivered"))["attempts"] == 2


async def test_a_webhook_failing_every_attempt_is_a_dead_letter_that_the_operator_replays(
    alerts_stack: Stack, client: httpx.Client, users: UserFactory, db: asyncpg.Connection, sink: MailSink,
    receiver: Receiver,
) -> None:
    user = users.create(credits=100)
    url, hook = receiver.hook(failures=None)  # 500 until healed
    secret = put_alerts(client, user.headers, threshold=JUST_BELOW_100, webhookUrl=url)["webhookSecret"]
    spend(client, user)
    [alert] = await alerts_of(db, user.id)
    by_channel = await deliveries(db, alert["id"])
    dead = await wait_state(db, by_channel["webhook"]["id"], "dead")
    assert dead["attempts"] == 3 and dead["last_error"] == "WebhookFailed: the receiver answered HTTP 500"
    assert [r.answered for r in hook.received] == [500, 500, 500]
    # The mail of the same event went its own way, once.
    assert (await wait_state(db, by_channel["email"]["id"], "delivered"))["attempts"] == 1
    assert len(sink.wait(user.email, 1)) == 1

    listed = billing_cli(alerts_stack, "alerts", "dead-letters")
    assert listed.returncode == 0, listed.stderr
    [line] = [row for row in listed.stdout.splitlines() if re.match(rf"\s*{dead['id']}\s", row)]
    assert line.split()[:7] == [str(dead["id"]), str(alert["id"]), str(user.id), "credit.low_balance", "webhook",
                                "3", line.split()[6]]
    assert line.endswith("WebhookFailed: the receiver answered HTTP 500")

    receiver.heal(hook)
    replayed = billing_cli(alerts_stack, "alerts", "replay", str(dead["id"]))
    assert replayed.returncode == 0, replayed.stderr
    assert replayed.stdout.strip() == f"replaying 1 dead letter(s): {dead['id']}"
    [delivery] = wait_for("the replayed webhook", hook.accepted)
    verify_signature(secret, delivery)
    assert delivery.event["id"] == f"alert_{alert['id']}"
    assert (await wait_state(db, dead["id"], "delivered"))["attempts"] == 1
    assert str(dead["id"]) not in billing_cli(alerts_stack, "alerts", "dead-letters").stdout.split()
    assert len(sink.messages(user.email)) == 1  # replaying the webhook sent no second mail


async def test_replay_all_and_what_replay_refuses(
    alerts_stack: Stack, client: httpx.Client, users: UserFactory, db: asyncpg.Connection, receiver: Receiver,
) -> None:
    hooks, dead = [], []
    for _ in range(2):
        user = users.create(credits=100)
        url, hook = receiver.hook(failures=None, fail_with=404)
        put_alerts(client, user.headers, threshold=JUST_BELOW_100, webhookUrl=url)
        spend(client, user)
        [alert] = await alerts_of(db, user.id)
        dead.append(await wait_state(db, (await deliveries(db, alert["id"]))["webhook"]["id"], "dead"))
        hooks.append(hook)
    assert billing_cli(alerts_stack, "alerts", "replay").returncode == 2  # neither ids nor --all
    unknown = billing_cli(alerts_stack, "alerts", "replay", "987654321")
    assert unknown.returncode == 1 and "987654321" in unknown.stderr
    for hook in hooks:
        receiver.heal(hook)
    everything = billing_cli(alerts_stack, "alerts", "replay", "--all")
    assert everything.returncode == 0, everything.stderr
    for letter, hook in zip(dead, hooks, strict=True):
        assert str(letter["id"]) in everything.stdout
        await wait_state(db, letter["id"], "delivered")
        assert len(hook.accepted()) == 1
    assert "no dead letters" in billing_cli(alerts_stack, "alerts", "dead-letters").stdout


async def test_two_billing_replicas_deliver_each_alert_once(
    alerts_stack: Stack, client: httpx.Client, users: UserFactory, db: asyncpg.Connection, sink: MailSink,
    receiver: Receiver,
) -> None:
    with alerts_stack.replica("billing2", "billing"):
        crowd = [users.create(credits=100) for _ in range(12)]
        hooks = {}
        for user in crowd:
            url, hooks[user.id] = receiver.hook()
            put_alerts(client, user.headers, threshold=JUST_BELOW_100, webhookUrl=url)
        with ThreadPoolExecutor(len(crowd)) as pool:  # all crossings at once: both dispatchers see them together
            list(pool.map(lambda u: spend(client, u), crowd))
        alert_ids = []
        for user in crowd:
            [alert] = await alerts_of(db, user.id)
            alert_ids.append(alert["id"])
            for delivery in (await deliveries(db, alert["id"])).values():
                assert (await wait_state(db, delivery["id"], "delivered"))["attempts"] == 1
        for user in crowd:
            assert len(sink.messages(user.email)) == 1
            assert len(hooks[user.id].received) == 1
        # Each delivery is logged as delivered by exactly one of the two dispatchers.
        logs = alerts_stack.log("billing") + alerts_stack.log("billing2")
        for alert_id in alert_ids:
            for channel in ("email", "webhook"):
                pattern = rf"alert delivered: alert_id={alert_id} \S+ \S+ channel={channel} "
                assert len(re.findall(pattern, logs)) == 1, (alert_id, channel)


async def test_racing_claims_never_hand_one_delivery_to_two_dispatchers(
    alerts_stack: Stack, users: UserFactory, db: asyncpg.Connection
) -> None:
    """The claim itself, raced hard: eight dispatchers' worth of connections (billing's own role) claim 200
    due deliveries at once, five at a time, until none is left. Each is handed to exactly one of them."""
    user = users.create(credits=10)
    restart_billing(alerts_stack, {**FAULTS, "BILLING_ALERT_FAULT": "stall"})  # the stack's own claims nothing
    pools = [await asyncpg.create_pool(alerts_stack.role_dsns["billing"], min_size=1, max_size=1) for _ in range(8)]
    due = [r["id"] for r in await db.fetch(
        """WITH events AS (INSERT INTO credit_alerts (user_id, kind, balance, available, threshold)
                           SELECT $1, 'low_balance', 1, 1, 2 FROM generate_series(1, 200) RETURNING id)
           INSERT INTO credit_alert_deliveries (alert_id, channel) SELECT id, 'webhook' FROM events RETURNING id""",
        user.id)]
    try:
        claimed: list[int] = []

        async def dispatcher(alerts: AlertRepository) -> None:
            while batch := await alerts.claim(5, 3600):
                claimed.extend(item.delivery_id for item in batch)

        await asyncio.gather(*(dispatcher(AlertRepository(pool)) for pool in pools))
        assert sorted(claimed) == sorted(due)
    finally:
        await db.execute("UPDATE credit_alert_deliveries SET state = 'skipped', last_error = 'test' "
                         "WHERE id = ANY($1::bigint[])", due)
        for pool in pools:
            await pool.close()
        restart_billing(alerts_stack)
