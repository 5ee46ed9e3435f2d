"""`fsg-billing import` as an operator runs it: a separate process that reaches auth and billing over gRPC
(its DATABASE_URL points nowhere). Every effect is read back from the database with SQL."""

from __future__ import annotations

import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import asyncpg
import httpx
import pytest

from common.faults import CRASH_EXIT_CODE
from common.settings import REPO_ROOT
from tests.bulk.support import (
    HEADER,
    Person,
    accounts,
    cli,
    csv_file,
    grants,
    people,
    report_json,
    whole_books,
)
from tests.helpers import UserFactory, key_leaks
from tests.reliability.support import assert_reconciled
from tests.stack import Stack, free_port


def write(tmp_path: Path, data: bytes, name: str = "users.csv") -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


async def test_import_dry_run_then_import_then_again_creates_and_grants_once(
    stack: Stack, client: httpx.Client, db: asyncpg.Connection, tmp_path: Path
) -> None:
    crowd = [*people(2, credits="100"), *people(1, credits="12.3456"), *people(1, credits="0")]
    crowd[0] = Person(crowd[0].username, crowd[0].email, "100", "Beta tester, cohort 3")
    names = [p.username for p in crowd]
    path = write(tmp_path, csv_file(crowd))
    before = await whole_books(db)

    dry = cli(stack, "import", path, "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    preview = report_json(dry)
    assert preview["dry_run"] and preview["complete"]
    assert [(r["row"], r["username"], r["outcome"]) for r in preview["rows"]] == [
        (i + 2, p.username, "created") for i, p in enumerate(crowd)]
    assert all("api_key" not in r for r in preview["rows"])
    assert preview["summary"]["credits_granted"] == Decimal("212.3456")
    assert await whole_books(db) == before and await accounts(db, names) == {}

    first = cli(stack, "import", path, "--json")
    assert first.returncode == 0, first.stderr
    report = report_json(first)
    assert report["complete"] and not report["dry_run"]
    assert [(r["username"], r["outcome"], r["credits_granted"]) for r in report["rows"]] == [
        (p.username, "created", Decimal(p.credits)) for p in crowd]
    stored = await accounts(db, names)
    assert sorted(stored) == sorted(n.lower() for n in names)
    for row, person in zip(report["rows"], crowd, strict=True):
        assert row["api_key"].startswith("user_")
        stats = client.get("/api/my-stats", headers={"X-API-Key": row["api_key"]})
        assert stats.status_code == 200 and stats.json()["user"]["username"] == person.username
        assert Decimal(str(stats.json()["user"]["credits_remaining"])) == Decimal(person.credits)
        assert stored[person.username.lower()]["email"] == person.email
    ledger = await grants(db, names)
    assert ledger == [(p.username, Decimal(p.credits), "grant",
                       f"create-user:{stored[p.username.lower()]['id']}:initial") for p in crowd if p.credits != "0"]
    notes = await db.fetchval("SELECT notes FROM credit_transactions WHERE idempotency_key = $1",
                              f"create-user:{stored[names[0].lower()]['id']}:initial")
    assert notes == "Beta tester, cohort 3"

    again = cli(stack, "import", path, "--json")
    assert again.returncode == 0, again.stderr
    rerun = report_json(again)
    assert [(r["outcome"], r["credits_granted"]) for r in rerun["rows"]] == [("exists", 0)] * len(crowd)
    assert all("api_key" not in r for r in rerun["rows"])
    assert all("granted before" in r["reason"] for r in rerun["rows"][:3]), rerun["rows"]
    assert await grants(db, names) == ledger  # no second grant
    assert await accounts(db, names) == stored  # no new user, no key changed
    # The keys were printed once, in the first report, and are nowhere else: not in any process's log.
    for row in report["rows"]:
        for process in ("auth", "billing", "edge"):
            assert key_leaks(row["api_key"], stack.log(process)) == [], process
        assert key_leaks(row["api_key"], first.stderr + again.stdout + again.stderr) == []
    assert_reconciled(stack)


async def test_the_text_report_shows_every_row_and_each_key_once(stack: Stack, tmp_path: Path) -> None:
    crowd = people(2, credits="5")
    result = cli(stack, "import", write(tmp_path, csv_file(crowd)))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split("\t") == ["row", "username", "outcome", "credits", "reason"]
    for number, (line, person) in enumerate(zip(lines[1:3], crowd, strict=True), start=2):
        row, username, outcome, credits, reason = line.split("\t")
        assert (row, username, outcome, credits) == (str(number), person.username, "created", "5")
        assert reason.count("API key (shown once): user_") == 1
    assert lines[3] == "2 rows: 2 created, 0 exist, 0 rejected, 0 not processed; 10 credits granted"


async def test_a_user_created_over_the_api_gets_its_initial_credits_once(
    stack: Stack, users: UserFactory, db: asyncpg.Connection, tmp_path: Path
) -> None:
    """create-user and the import grant initial credits under the same key: whichever comes first, once."""
    made = users.create(credits=100, prefix="api")
    zero = users.create(credits=0, prefix="api0")
    crowd = [Person(made.username, made.email.upper(), "100"), Person(zero.username.upper(), zero.email, "30")]
    result = cli(stack, "import", write(tmp_path, csv_file(crowd)), "--json")
    assert result.returncode == 0, result.stderr
    rows = report_json(result)["rows"]
    assert [(r["outcome"], r["credits_granted"]) for r in rows] == [("exists", 0), ("exists", Decimal(30))]
    assert "granted before" in rows[0]["reason"] and "granted 30 now" in rows[1]["reason"]
    assert [g[1] for g in await grants(db, [made.username])] == [Decimal(100)]
    assert [g[1] for g in await grants(db, [zero.username])] == [Decimal(30)]
    again = report_json(cli(stack, "import", write(tmp_path, csv_file(crowd)), "--json"))["rows"]
    assert [(r["outcome"], r["credits_granted"]) for r in again] == [("exists", 0), ("exists", 0)]
    assert [g[1] for g in await grants(db, [zero.username])] == [Decimal(30)]


async def test_rows_that_clash_with_other_users_are_rejected_alone(
    stack: Stack, users: UserFactory, db: asyncpg.Connection, tmp_path: Path
) -> None:
    holder = users.create(credits=0, prefix="holder")
    fresh = people(3, credits="7")
    crowd = [
        Person(holder.username, fresh[0].email, "7"),      # the username is another user's
        Person(fresh[1].username, holder.email, "7"),      # the email is another user's
        fresh[2],
    ]
    result = cli(stack, "import", write(tmp_path, csv_file(crowd)), "--json")
    assert result.returncode == 3, result.stdout + result.stderr
    rows = report_json(result)["rows"]
    assert [(r["row"], r["outcome"]) for r in rows] == [(2, "rejected"), (3, "rejected"), (4, "created")]
    assert "username belongs to a user with another email" in rows[0]["reason"]
    assert f"email belongs to another user ({holder.username})" in rows[1]["reason"]
    assert set(await accounts(db, [p.username for p in crowd])) == {holder.username.lower(),
                                                                     fresh[2].username.lower()}
    assert await grants(db, [holder.username, fresh[1].username]) == []
    assert [g[1] for g in await grants(db, [fresh[2].username])] == [Decimal(7)]


async def test_a_crash_between_creating_and_granting_is_finished_by_running_the_file_again(
    stack: Stack, db: asyncpg.Connection, tmp_path: Path
) -> None:
    crowd = people(3, credits="40")
    names = [p.username for p in crowd]
    path = write(tmp_path, csv_file(crowd))
    crashed = cli(stack, "import", path, "--fault", "crash_after_create_users", env={"FSG_FAULT_INJECTION": "1"})
    assert crashed.returncode == CRASH_EXIT_CODE, crashed.stdout + crashed.stderr
    assert len(await accounts(db, names)) == 3 and await grants(db, names) == []  # created, never granted

    rerun = cli(stack, "import", path, "--json")
    assert rerun.returncode == 0, rerun.stderr
    rows = report_json(rerun)["rows"]
    assert [(r["outcome"], r["credits_granted"]) for r in rows] == [("exists", Decimal(40))] * 3
    assert all("had not been granted" in r["reason"] for r in rows)
    stored = await accounts(db, names)
    expected = [(n, Decimal(40), "grant", f"create-user:{stored[n.lower()]['id']}:initial") for n in names]
    assert await grants(db, names) == expected

    third = report_json(cli(stack, "import", path, "--json"))["rows"]
    assert [(r["outcome"], r["credits_granted"]) for r in third] == [("exists", 0)] * 3
    assert await grants(db, names) == expected
    assert_reconciled(stack)


async def test_billing_unreachable_after_the_users_were_created_reports_their_keys_and_the_rerun_grants(
    stack: Stack, client: httpx.Client, db: asyncpg.Connection, tmp_path: Path
) -> None:
    crowd = people(2, credits="15")
    names = [p.username for p in crowd]
    path = write(tmp_path, csv_file(crowd))
    nowhere = {"BILLING_ADDR": f"127.0.0.1:{free_port()}", "BULK_RPC_TIMEOUT_SECONDS": "5"}
    cut = cli(stack, "import", path, "--json", env=nowhere)
    assert cut.returncode == 4, cut.stdout + cut.stderr
    assert "the billing service failed (UNAVAILABLE)" in cut.stderr
    report = report_json(cut)
    assert not report["complete"] and report["summary"]["created"] == 2
    for row in report["rows"]:
        assert row["outcome"] == "created" and "NOT granted" in row["reason"] and row["credits_granted"] == 0
        assert client.get("/api/my-stats", headers={"X-API-Key": row["api_key"]}).status_code == 200
    assert await grants(db, names) == []

    rerun = report_json(cli(stack, "import", path, "--json"))
    assert [(r["outcome"], r["credits_granted"]) for r in rerun["rows"]] == [("exists", Decimal(15))] * 2
    assert [g[1] for g in await grants(db, names)] == [Decimal(15)] * 2


BAD_FILES: dict[str, tuple[bytes, str]] = {
    "wrong header": (b"user,mail,credits,notes\r\nann_x1,ann@example.test,1,\r\n", "first row must be the header"),
    "no header": (b"", "the file is empty"),
    "missing column": (f"{HEADER}\r\nann_x2,ann@example.test,1\r\n".encode(), "row 3: has 3 columns, not 4"),
    "extra column": (f"{HEADER}\r\nann_x3,ann@example.test,1,,x\r\n".encode(), "row 3: has 5 columns, not 4"),
    "not utf-8": (f"{HEADER}\r\n".encode() + b"ann_\xff,ann@example.test,1,\r\n", "not UTF-8"),
    "unclosed quote": (f'{HEADER}\r\n"ann_x4,ann@example.test,1,\r\n'.encode(), "not valid CSV"),
    "NUL": (f"{HEADER}\r\nann_x5,ann@example.test,1,\x00\r\n".encode(), "NUL"),
    "duplicate username": (f"{HEADER}\r\nann_x6,a1@example.test,1,\r\nANN_x6,a2@example.test,1,\r\n".encode(),
                           "row 4 username: duplicate of row 3"),
    "duplicate email": (f"{HEADER}\r\nann_x7,a@example.test,1,\r\nbob_x7,A@example.test,1,\r\n".encode(),
                        "row 4 email: duplicate of row 3"),
    "negative credits": (f"{HEADER}\r\nann_x8,a8@example.test,-5,\r\n".encode(), "must not be negative"),
    "credits not a number": (f"{HEADER}\r\nann_x9,a9@example.test,ten,\r\n".encode(), "plain number"),
    "credits in exponent form": (f"{HEADER}\r\nann_y1,y1@example.test,1e3,\r\n".encode(), "plain number"),
    "five decimal places": (f"{HEADER}\r\nann_y2,y2@example.test,1.00001,\r\n".encode(), "4 decimal places"),
    "credits missing": (f"{HEADER}\r\nann_y3,y3@example.test,,\r\n".encode(), "required (0 for none)"),
    "invalid username": (f"{HEADER}\r\nann y4,y4@example.test,1,\r\n".encode(), "row 3 username"),
    "invalid email": (f"{HEADER}\r\nann_y5,not-an-email,1,\r\n".encode(), "row 3 email"),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
async def test_a_bad_file_is_refused_whole_with_a_message_and_changes_nothing(
    case: str, stack: Stack, db: asyncpg.Connection, tmp_path: Path
) -> None:
    """Every bad row refuses the whole file, even when the other rows are good (here a good row comes first, so
    the bad one is row 3)."""
    good = people(1, credits="3")[0]
    data, says = BAD_FILES[case]
    if data.startswith(HEADER.encode()):
        data = data.replace(b"\r\n", f"\r\n{good.username},{good.email},3,\r\n".encode(), 1)
    before = await whole_books(db)
    for dry_run in ((), ("--dry-run",)):
        result = cli(stack, "import", write(tmp_path, data), *dry_run)
        assert result.returncode == 1, (case, result.stdout, result.stderr)
        assert result.stderr.startswith("import refused, nothing changed: "), result.stderr
        assert says in result.stderr, result.stderr
        assert result.stdout == ""
    assert await whole_books(db) == before
    assert await accounts(db, [good.username]) == {}


async def test_the_cli_says_clearly_when_it_cannot_read_the_file(stack: Stack, tmp_path: Path) -> None:
    result = cli(stack, "import", str(tmp_path / "missing.csv"))
    assert result.returncode == 1 and "cannot read" in result.stderr and "missing.csv" in result.stderr


async def test_the_same_file_imported_twice_at_once_creates_and_grants_each_user_once(
    stack: Stack, db: asyncpg.Connection, tmp_path: Path
) -> None:
    crowd = people(300, prefix="twice", credits="2")
    names = [p.username for p in crowd]
    path = write(tmp_path, csv_file(crowd))
    command = [sys.executable, "-m", "services.billing.cli", "import", path, "--json"]
    env = {**stack.env, "DATABASE_URL": "postgresql://nobody:none@127.0.0.1:1/none"}
    racing = [subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True) for _ in range(2)]
    outputs = [proc.communicate(timeout=300) for proc in racing]
    assert [proc.returncode for proc in racing] == [0, 0], outputs
    reports = [json.loads(out, parse_float=Decimal)["rows"] for out, _ in outputs]
    for first, second in zip(*reports, strict=True):
        assert sorted((first["outcome"], second["outcome"])) == ["created", "exists"], (first, second)
        assert first["credits_granted"] + second["credits_granted"] == 2
    assert len(await accounts(db, names)) == 300
    assert sorted(g[0] for g in await grants(db, names)) == sorted(names)  # one grant each
    assert_reconciled(stack)
