"""What the multi-host test runs inside its hosts (`ip netns exec <host> python -m tests.multihost.hostside …`):
the test process itself lives in the root namespace, which has no address on the test's network, so
everything that talks to the database or the edges does it from a host.

    start-db DATA_DIR HOST PORT CLIENTS OUT   the embedded PostgreSQL on HOST:PORT, admitting CLIENTS (a
                                             network), bootstrapped; OUT (0600) gets its URLs and the admin key
    wait-ready DEADLINE TARGET…              until every edge (an http:// URL) answers 200 on /readyz and
                                             every gRPC service (host:port) SERVING to a health check
    open-holds                               the number of holds not yet resolved (DATABASE_URL)
    books OUT                                the database's own account of the run, as JSON (DATABASE_URL)
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import asyncpg
import grpc
import httpx
from grpc_health.v1 import health_pb2, health_pb2_grpc

from common.db_roles import role_passwords, service_dsn
from common.settings import REPO_ROOT
from devstack.bootstrap import bootstrap
from devstack.embedded_pg import EmbeddedPostgres


def _write_secret(path: Path, data: dict[str, Any]) -> None:
    path.touch(mode=0o600)
    path.write_text(json.dumps(data))


def start_db(data_dir: Path, host: str, port: int, clients: str, out: Path) -> None:
    server = EmbeddedPostgres(data_dir, port, host=host, clients=clients)
    dsn = server.start()
    passwords = role_passwords(data_dir, {})
    result = asyncio.run(bootstrap(dsn, REPO_ROOT / "migrations", "admin", "admin@example.test", passwords))
    roles = {service: service_dsn(dsn, service, secret) for service, secret in passwords.items()}
    _write_secret(out, {"dsn": dsn, "roles": roles, "admin_key": result.admin_key})


def _state(target: str) -> str:
    """"ready", or what the target answered instead."""
    if target.startswith("http"):
        try:
            answer = httpx.get(f"{target}/readyz", timeout=2)
        except httpx.HTTPError as exc:
            return repr(exc)
        return "ready" if answer.status_code == 200 else f"{answer.status_code} {answer.text[:300]}"
    with grpc.insecure_channel(target) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=2)
        except grpc.RpcError as exc:
            return repr(exc)
    return "ready" if reply.status == health_pb2.HealthCheckResponse.SERVING else str(reply.status)


def wait_ready(deadline_seconds: float, targets: list[str]) -> int:
    deadline = time.monotonic() + deadline_seconds
    while True:
        states = {target: _state(target) for target in targets}
        if all(state == "ready" for state in states.values()):
            return 0
        if time.monotonic() > deadline:
            print(json.dumps(states), file=sys.stderr)
            return 1
        time.sleep(0.3)


async def open_holds() -> int:
    conn = await asyncpg.connect(os.environ["DATABASE_URL"])
    try:
        return int(await conn.fetchval(
            "SELECT count(*) FROM credit_holds h WHERE NOT EXISTS "
            "(SELECT 1 FROM credit_hold_resolutions r WHERE r.hold_id = h.id)"))
    finally:
        await conn.close()


async def books(out: Path) -> None:
    """Per account: what was granted, what usage_logs charged, the ledger's usage rows and the balance; per
    hold: its user and Idempotency-Key, outcome and amount, when it was placed and resolved (the database's
    clock, which is the test's: one machine), and its successful usage rows."""
    conn = await asyncpg.connect(os.environ["DATABASE_URL"])
    try:
        accounts = await conn.fetch(
            """SELECT a.user_id, a.available::text, a.held::text,
                  (SELECT COALESCE(sum(credits_amount), 0) FROM credit_transactions t
                    WHERE t.user_id = a.user_id AND t.transaction_type = 'grant')::text AS granted,
                  (SELECT COALESCE(sum(-credits_amount), 0) FROM credit_transactions t
                    WHERE t.user_id = a.user_id AND t.transaction_type = 'usage')::text AS ledger_charged,
                  (SELECT COALESCE(sum(credits_cost), 0) FROM usage_logs u WHERE u.user_id = a.user_id)::text
                    AS usage_charged
               FROM credit_accounts a""")
        holds = await conn.fetch(
            """SELECT h.user_id, h.idempotency_key, h.request_id, h.amount::text, r.outcome, r.amount::text AS charged,
                  extract(epoch FROM h.created_at)::float8 AS reserved_at,
                  extract(epoch FROM r.created_at)::float8 AS resolved_at,
                  (SELECT count(*) FROM usage_logs u WHERE u.hold_id = h.id AND u.response_success) AS successes
               FROM credit_holds h LEFT JOIN credit_hold_resolutions r ON r.hold_id = h.id""")
    finally:
        await conn.close()
    _write_secret(out, {"accounts": [dict(r) for r in accounts], "holds": [dict(r) for r in holds]})


def main(argv: list[str]) -> int:
    command, args = argv[0], argv[1:]
    if command == "start-db":
        start_db(Path(args[0]), args[1], int(args[2]), args[3], Path(args[4]))
        return 0
    if command == "wait-ready":
        return wait_ready(float(args[0]), args[1:])
    if command == "open-holds":
        print(asyncio.run(open_holds()))
        return 0
    if command == "books":
        asyncio.run(books(Path(args[0])))
        return 0
    print(f"unknown command {command!r}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
