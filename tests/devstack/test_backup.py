"""`fsg backup` and `fsg restore` (issue 14, part 4).

The round trip is run as an operator would: a `make run` stack with users, keys, grants, a paid call (usage,
a project), a purchase through its local Stripe, alert settings and a hold still pending is backed up while
it runs, then restored into a brand-new DATA_DIR (a new PostgreSQL cluster, where the services' roles do not
exist yet) with only localstripe's state copied over, as the README says; a `make run` on it serves the old
keys, settles the old hold and reconciles clean. The rest: a database with data is refused (and kept), a bad
file is a one-line error before anything is touched, and --keep prunes.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from decimal import Decimal
from pathlib import Path

import asyncpg
import grpc
import httpx

from common.db_roles import service_dsn
from common.service_auth import authenticated_channel, parse_tokens
from common.settings import REPO_ROOT, CommonSettings
from common.tls import load_tls
from devstack.bootstrap import bootstrap
from devstack.embedded_pg import EmbeddedPostgres
from protos import billing_pb2, billing_pb2_grpc
from tests.devstack.test_run import PORT_VARIABLES, Run
from tests.stack import Stack, free_port

#: The tables whose every row must come back (the whole table, all columns), and the migrations' record.
TABLES = ("user_accounts", "credit_accounts", "credit_transactions", "credit_holds", "credit_hold_resolutions",
          "pending_holds", "idempotent_results", "usage_logs", "projects", "project_parts", "purchases",
          "stripe_events", "purchase_disputes", "credit_alert_settings", "credit_alert_defaults", "credit_alerts",
          "schema_migrations", "schema_functions")


def fsg(data_dir: Path | None, *args: str, database_url: str | None = None) -> subprocess.CompletedProcess[str]:
    """`fsg …` as an operator types it: DATA_DIR (or DATABASE_URL) and nothing else of a stack's."""
    env = {k: v for k, v in os.environ.items()
           if k not in {"DATABASE_URL", "DATA_DIR", *PORT_VARIABLES.values()} and not k.startswith("FSG_")}
    if data_dir is not None:
        env["DATA_DIR"] = str(data_dir)
    if database_url is not None:
        env["DATABASE_URL"] = database_url
    return subprocess.run([sys.executable, "-m", "devstack.cli", *args], env=env, capture_output=True, text=True,
                          timeout=120)


async def table_digests(dsn: str) -> dict[str, tuple[int, str]]:
    conn = await asyncpg.connect(dsn)
    try:
        return {table: tuple(await conn.fetchrow(  # type: ignore[misc]
            f"SELECT count(*), md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) FROM {table} t"))
            for table in TABLES}
    finally:
        await conn.close()


def _admin_key(run: Run) -> str:
    match = re.search(r"Admin user created with API key: (admin_[0-9a-f]{64})", "\n".join(run.lines))
    assert match, "\n".join(run.lines)
    return match.group(1)


def _wait(predicate: object, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


async def _billing(data_dir: Path) -> tuple[grpc.aio.Channel, billing_pb2_grpc.BillingStub]:
    port = json.loads((data_dir / "ports.json").read_text())["BILLING_PORT"]
    tokens = parse_tokens((data_dir / "service-token").read_text(), "the stack's token file")
    # `make run` speaks mutual TLS inside (FSG_TLS=on): present the operator certificate it made in DATA_DIR/tls
    tls = load_tls(CommonSettings(FSG_TLS_DIR=str(data_dir / "tls")), "operator")  # type: ignore[call-arg]
    channel = authenticated_channel(f"127.0.0.1:{port}", tokens, [], tls=tls)
    return channel, billing_pb2_grpc.BillingStub(channel)


async def test_a_backup_restores_into_a_new_database_with_everything_in_it(data_root: Path) -> None:
    source, target, folder = data_root / "source", data_root / "target", data_root / "backups"
    scheduled = data_root / "scheduled"
    first = Run(source, {"edge": free_port()}, extra={"FSG_BACKUP_INTERVAL_HOURS": "0.001",  # 3.6 s
                                                      "FSG_BACKUP_KEEP": "2", "FSG_BACKUP_DIR": str(scheduled)})
    try:
        first.wait_ready()
        admin = {"X-API-Key": _admin_key(first)}
        with httpx.Client(base_url=first.url, timeout=30) as api:
            created = api.post("/api/admin/create-user", headers=admin,
                               json={"username": "writer", "email": "writer@example.com", "initialCredits": 300})
            assert created.status_code == 201, created.text
            user_id, key = created.json()["user"]["id"], created.json()["user"]["api_key"]
            writer = {"X-API-Key": key}
            assert api.post("/api/admin/grant-credits", headers={**admin, "Idempotency-Key": "bonus-1"},
                            json={"username": "writer", "credits": 50, "notes": "beta"}).status_code == 200
            alerts = api.put("/api/my-alerts", headers=writer,
                             json={"threshold": 120, "webhookUrl": "https://example.com/fsg-alerts"})
            assert alerts.status_code == 200, alerts.text
            structure = api.post("/api/generate-structure", headers=writer,
                                 json={"storyInput": {"title": "Night Train"}, "template": "hero-journey"})
            assert structure.status_code == 200, structure.text
            project = structure.json()["projectPath"]
            bought = api.post("/api/purchases", headers={**writer, "Idempotency-Key": "buy-1"},
                              json={"pack": "starter", "testCard": "4242 4242 4242 4242"})
            assert bought.status_code == 201, bought.text
            _wait(lambda: api.get("/api/my-purchases", headers=writer).json()["purchases"][0]["state"] == "succeeded",
                  "the purchase was never credited")
            # A hold still pending when the backup is taken (the edge's are all settled by now).
            hold = str(uuid.uuid4())
            channel, billing = await _billing(source)
            async with channel:
                reserved = await billing.Reserve(billing_pb2.ReserveRequest(
                    hold_id=hold, user_id=user_id, amount="25", ttl_seconds=3600, endpoint="/api/generate-scene"))
            assert reserved.ok
            seen = {path: api.get(path, headers=writer).json()
                    for path in ("/api/my-stats", "/api/my-alerts", "/api/my-purchases", f"/api/projects/{project}")}

            owner_dsn = fsg(source, "db-url").stdout.strip()
            before = await table_digests(owner_dsn)
            made = fsg(source, "backup", "--dir", str(folder))
            assert made.returncode == 0, made.stderr
            assert await table_digests(owner_dsn) == before  # nothing moved while it ran: the backup holds `before`
            backup_file = Path(made.stdout.strip())
            assert backup_file.parent == folder and re.fullmatch(r"fsg-\d{8}T\d{6}\.\d{6}Z\.dump", backup_file.name)
            assert backup_file.stat().st_mode & 0o777 == 0o600
            assert before["credit_holds"][0] == 2 and before["pending_holds"][0] == 1 and before["purchases"][0] == 1
            assert before["credit_alert_settings"][0] == 1 and before["usage_logs"][0] == 1

            # make run's schedule: a backup at once, another every interval, the newest FSG_BACKUP_KEEP kept.
            names: set[str] = set()
            current: list[str] = []

            def third_backup_and_pruned() -> bool:
                current[:] = sorted(path.name for path in scheduled.glob("fsg-*.dump"))
                names.update(current)
                return len(names) >= 3 and len(current) == 2
            _wait(third_backup_and_pruned, f"no third scheduled backup, or not pruned: {names}", timeout=60)
            assert min(names) not in current
    finally:
        first.stop(signal.SIGTERM)
    # A stopped stack's database is backed up too: started for the dump and stopped again.
    cold = fsg(source, "backup", "--dir", str(folder))
    assert cold.returncode == 0 and Path(cold.stdout.strip()) != backup_file, cold.stderr
    assert len(list(folder.glob("fsg-*.dump"))) == 2
    assert not EmbeddedPostgres(source, 1).is_running()

    # Into a new DATA_DIR: `fsg restore` makes its PostgreSQL, restores, and stops it again.
    restored = fsg(target, "restore", str(backup_file))
    assert restored.returncode == 0, restored.stdout + restored.stderr
    assert "fsg bootstrap" in restored.stdout
    assert not EmbeddedPostgres(target, 1).is_running()
    # Read before any service touches it (generation's cleanup, for one, marks paid projects settled at start).
    restored_pg = EmbeddedPostgres(target, json.loads((target / "ports.json").read_text())["PG_PORT"])
    try:
        assert await table_digests(restored_pg.start()) == before
        conn = await asyncpg.connect(restored_pg.dsn())
        try:  # the cluster is new: restore made the services' roles (NOLOGIN until the bootstrap) for the GRANTs
            roles = await conn.fetch("SELECT rolname, rolcanlogin FROM pg_roles WHERE rolname LIKE 'fsg\\_%'")
        finally:
            await conn.close()
        assert {(row["rolname"], row["rolcanlogin"]) for row in roles} == {
            ("fsg_auth", False), ("fsg_billing", False), ("fsg_generation", False)}
    finally:
        restored_pg.stop()
    # What is not in the database comes along by hand (README, Backups): localstripe's state. The service token
    # and the roles' passwords are made anew for the new DATA_DIR.
    shutil.copytree(source / "localstripe", target / "localstripe")

    second = Run(target, {"edge": free_port()})
    try:
        second.wait_ready()
        assert "Admin user 'admin' exists" in "\n".join(second.lines)
        with httpx.Client(base_url=second.url, timeout=30) as api:
            for path, answer in seen.items():  # the old key validates; everything reads as it did
                now = api.get(path, headers=writer)
                assert now.status_code == 200 and now.json() == answer, (path, now.text)
            assert api.get("/api/admin/users", headers=admin).status_code == 200
            # The pending hold settles on the new stack (billing connects as its role, given LOGIN by the bootstrap).
            channel, billing = await _billing(target)
            async with channel:
                settled = await billing.Commit(billing_pb2.CommitRequest(
                    hold_id=hold, user_id=user_id, amount="12.5",
                    usage=billing_pb2.Usage(endpoint="/api/generate-scene", input_tokens=1, output_tokens=1,
                                            model="m")))
            assert settled.outcome == billing_pb2.POSTED and settled.charged == "12.5000"
            stats = api.get("/api/my-stats", headers=writer).json()["user"]
            assert Decimal(str(stats["credits_remaining"])) == (
                Decimal(str(seen["/api/my-stats"]["user"]["credits_remaining"])) + 25 - Decimal("12.5"))
            # Sequences came back too: a new user gets a new id.
            another = api.post("/api/admin/create-user", headers=admin,
                               json={"username": "another", "email": "another@example.com", "initialCredits": 1})
            assert another.status_code == 201 and another.json()["user"]["id"] > user_id, another.text
        reconcile = subprocess.run([sys.executable, "-m", "services.billing.cli", "reconcile"], timeout=120,
                                   env={**{k: v for k, v in os.environ.items() if k != "DATABASE_URL"},
                                        "DATA_DIR": str(target)}, capture_output=True, text=True)
        assert reconcile.returncode == 0, reconcile.stdout + reconcile.stderr
        assert "every purchase what Stripe says" in reconcile.stdout
    finally:
        second.stop(signal.SIGTERM)


def test_a_database_with_data_is_refused_and_kept(stack: Stack, tmp_path: Path) -> None:
    made = fsg(None, "backup", "--dir", str(tmp_path), database_url=stack.dsn)
    assert made.returncode == 0, made.stderr
    refused = fsg(None, "restore", made.stdout.strip(), database_url=stack.dsn)
    assert refused.returncode == 1
    assert refused.stderr.strip().startswith("fsg restore: the database is not empty ("), refused.stderr
    assert "--force" in refused.stderr and "Traceback" not in refused.stderr
    # Forced, it still refuses while the services are connected to it (they are: the session stack runs).
    forced = fsg(None, "restore", "--force", made.stdout.strip(), database_url=stack.dsn)
    assert forced.returncode == 1 and "services are connected" in forced.stderr and "fsg_billing" in forced.stderr
    assert httpx.get(f"{stack.edge_url}/readyz").status_code == 200


def test_force_replaces_a_database_in_one_transaction(data_root: Path) -> None:
    """--force on a database nothing is connected to: the tables come back as backed up (a change made after
    the backup is gone). A restore that fails part-way leaves the database as it was."""
    server = EmbeddedPostgres(data_root / "pg", free_port())
    dsn = server.start()
    try:
        asyncio.run(bootstrap(dsn, REPO_ROOT / "migrations", "admin", "admin@example.test",
                              {"auth": "a" * 32, "billing": "b" * 32, "generation": "g" * 32}))
        made = fsg(None, "backup", "--dir", str(data_root / "b"), database_url=dsn)
        assert made.returncode == 0, made.stderr
        before = asyncio.run(table_digests(dsn))

        async def change() -> None:
            conn = await asyncpg.connect(dsn)
            try:
                await conn.execute("UPDATE user_accounts SET email = 'changed@example.com'")
                await conn.execute("CREATE TABLE not_in_the_backup (x int)")
            finally:
                await conn.close()
        asyncio.run(change())
        assert asyncio.run(table_digests(dsn)) != before
        forced = fsg(None, "restore", "--force", made.stdout.strip(), database_url=dsn)
        assert forced.returncode == 0, forced.stderr
        assert asyncio.run(table_digests(dsn)) == before

        async def grants() -> tuple[int, bool, str]:
            """What the roles may do now: billing reads its accounts, generation may not; the extra table is gone."""
            conn = await asyncpg.connect(dsn)
            billing = await asyncpg.connect(service_dsn(dsn, "billing", "b" * 32))
            generation = await asyncpg.connect(service_dsn(dsn, "generation", "g" * 32))
            try:
                accounts = await billing.fetchval("SELECT count(*) FROM credit_accounts")
                extra = await conn.fetchval("SELECT to_regclass('public.not_in_the_backup') IS NOT NULL")
                try:
                    await generation.fetchval("SELECT count(*) FROM credit_accounts")
                    refused = ""
                except asyncpg.InsufficientPrivilegeError as exc:
                    refused = str(exc)
                return accounts, extra, refused
            finally:
                for c in (conn, billing, generation):
                    await c.close()
        accounts, extra, refused = asyncio.run(grants())
        assert accounts == 1 and not extra and "permission denied" in refused
        after = fsg(None, "restore", made.stdout.strip(), database_url=dsn)  # not empty again: refused
        assert after.returncode == 1 and "not empty" in after.stderr

        # A restore that fails late (creating the indexes, after every table was made and filled) changes nothing.
        other = server.dsn("other")

        async def fail_on_create_index(on: bool) -> int:
            conn = await asyncpg.connect(dsn)
            try:
                if on:
                    await conn.execute("CREATE DATABASE other")
            finally:
                await conn.close()
            conn = await asyncpg.connect(other)
            try:
                if on:
                    await conn.execute("""
                        CREATE FUNCTION refuse() RETURNS event_trigger LANGUAGE plpgsql AS
                        $$ BEGIN RAISE EXCEPTION 'no index today'; END $$;
                        CREATE EVENT TRIGGER refuse ON ddl_command_end WHEN TAG IN ('CREATE INDEX')
                            EXECUTE FUNCTION refuse()""")
                else:
                    await conn.execute("DROP EVENT TRIGGER refuse; DROP FUNCTION refuse()")
                return int(await conn.fetchval("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"))
            finally:
                await conn.close()
        assert asyncio.run(fail_on_create_index(True)) == 0
        failed = fsg(None, "restore", made.stdout.strip(), database_url=other)
        assert failed.returncode == 1, failed.stdout + failed.stderr
        assert "the restore failed and changed nothing" in failed.stderr and "no index today" in failed.stderr
        assert asyncio.run(fail_on_create_index(False)) == 0  # not one of the tables it had made and filled
        assert fsg(None, "restore", made.stdout.strip(), database_url=other).returncode == 0
        assert asyncio.run(table_digests(other)) == before
    finally:
        server.stop()


def test_a_bad_file_is_one_clear_line_and_touches_nothing(tmp_path: Path) -> None:
    garbage = tmp_path / "not-a-backup.dump"
    garbage.write_bytes(b"PGDMP? no: just some bytes\n" * 10)
    target = tmp_path / "target"
    refused = fsg(target, "restore", str(garbage))
    assert refused.returncode == 1
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"fsg restore: {garbage} is not a backup made by `fsg backup`")
    assert "Traceback" not in refused.stdout + refused.stderr
    assert not (target / "postgres").exists()  # refused before any server was made
    missing = fsg(target, "restore", str(tmp_path / "nowhere.dump"))
    assert missing.returncode == 1 and "no such file" in missing.stderr


def test_keep_prunes_to_the_newest(stack: Stack, tmp_path: Path) -> None:
    made = []
    for _ in range(4):
        done = fsg(None, "backup", "--dir", str(tmp_path), "--keep", "2", database_url=stack.dsn)
        assert done.returncode == 0, done.stderr
        made.append(Path(done.stdout.strip()))
    assert sorted(tmp_path.glob("fsg-*")) == made[-2:]
    (tmp_path / "notes.txt").write_text("not ours")  # only files named like a backup are ever pruned
    assert fsg(None, "backup", "--dir", str(tmp_path), "--keep", "1", database_url=stack.dsn).returncode == 0
    assert len(list(tmp_path.glob("fsg-*.dump"))) == 1 and (tmp_path / "notes.txt").exists()
    nothing = fsg(tmp_path / "no-stack", "backup")
    assert nothing.returncode == 1 and "holds no embedded database" in nothing.stderr
    # A folder that cannot be made: one line.
    (tmp_path / "a-file").write_text("")
    nowhere_dir = tmp_path / "a-file" / "backups"
    unwritable = fsg(None, "backup", "--dir", str(nowhere_dir), database_url=stack.dsn)
    assert unwritable.returncode == 1, unwritable.stderr
    assert unwritable.stderr.strip() == f"fsg backup: cannot write backups to {nowhere_dir}: Not a directory"
    # A database that does not answer: one line each, and never its password.
    port = free_port()
    nowhere = f"postgresql://fsg:Pa55word-{uuid.uuid4().hex}@127.0.0.1:{port}/filmscript"
    for args in (("backup", "--dir", str(tmp_path)), ("restore", str(sorted(tmp_path.glob("fsg-*.dump"))[-1]))):
        failed = fsg(None, *args, database_url=nowhere)
        assert failed.returncode == 1 and len(failed.stderr.strip().splitlines()) == 1, failed.stderr
        assert "Pa55word" not in failed.stdout + failed.stderr and str(port) in failed.stderr, failed.stderr


def test_keep_must_be_positive(tmp_path: Path) -> None:
    refused = fsg(tmp_path, "backup", "--keep", "0")
    assert refused.returncode == 2 and "--keep" in refused.stderr


def test_a_failing_scheduled_backup_leaves_make_run_serving(data_root: Path) -> None:
    """honcho stops every process when one ends, so the schedule reports a failed backup and carries on."""
    (data_root / "a-file").write_text("")
    run = Run(data_root / "data", {"edge": free_port()},
              extra={"FSG_BACKUP_INTERVAL_HOURS": "0.001", "FSG_BACKUP_DIR": str(data_root / "a-file" / "backups")})
    try:
        run.wait_ready()
        _wait(lambda: sum("fsg backup: cannot write backups to" in line for line in run.lines) >= 2,
              "the schedule did not try (and report) twice:\n" + "\n".join(run.lines), timeout=150)
        assert run.proc.poll() is None and httpx.get(f"{run.url}/readyz").status_code == 200
    finally:
        run.stop(signal.SIGTERM)
