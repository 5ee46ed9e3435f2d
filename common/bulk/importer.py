"""The import: for each chunk of a checked file, look its users up (auth FindUsers), create the new ones in one
statement (auth CreateUsers), then grant their initial credits in one statement (billing GrantBatch).

Idempotent: a row whose username and email both belong to one existing user is `exists`, and its initial
credits are granted with the key the create-user endpoint uses ("initial", scope `create-user:<id>`), so a user
gets initial credits at most once ever, whichever way it was created, and a run that died between creating a
user and granting its credits is finished by running the same file again. A username or email held by another
user rejects that row only.

A failed call stops the import: the rows it did not finish are `not_processed`, and users already created keep
their keys in the report. If CreateUsers' answer itself was lost, those users may exist without anyone having
seen their keys: the rerun reports them as `exists`, and `fsg-auth rotate-key` issues new keys.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import grpc

from common.bulk.csv_rows import ImportRow
from common.bulk.report import ImportReport, Outcome, RowReport
from common.errors import Refusal
from common.faults import NONE, FaultPoint, Faults
from common.money import for_json, to_wire
from protos import auth_pb2, auth_pb2_grpc, billing_pb2, billing_pb2_grpc

log = logging.getLogger(__name__)

#: Rows per round of calls: 10,000 rows are 10 rounds of three calls.
CHUNK_ROWS = 1000
#: As the admin create-user endpoint grants initial credits (edge/routes/admin.py): the same key and scope, so
#: the ledger grants a user's initial credits once, whichever of the two asks.
INITIAL_KEY = "initial"
INITIAL_NOTES = "initial credits"


def initial_scope(user_id: int) -> str:
    return f"create-user:{user_id}"


class _Stopped(Exception):
    """A call failed: the rows done so far, and the error."""

    def __init__(self, done: list[RowReport], service: str, error: grpc.aio.AioRpcError) -> None:
        self.done, self.service, self.error = done, service, error
        super().__init__(service)


@dataclass(slots=True)
class _Planned:
    """A row on its way through a chunk: the user it is about (once known) and the report so far."""

    row: ImportRow
    report: RowReport
    user_id: int = 0


class Importer:
    """Runs checked rows against auth and billing. `created_by` goes on the ledger rows (the admin's username
    over REST, "cli" from the operator CLI)."""

    def __init__(self, auth: auth_pb2_grpc.AuthStub, billing: billing_pb2_grpc.BillingStub, *, created_by: str,
                 timeout: float, faults: Faults = NONE, chunk_rows: int = CHUNK_ROWS) -> None:
        self._auth, self._billing = auth, billing
        self._created_by, self._timeout, self._faults, self._chunk = created_by, timeout, faults, chunk_rows

    async def run(self, rows: list[ImportRow], *, dry_run: bool) -> ImportReport:
        report = ImportReport(dry_run=dry_run)
        for start in range(0, len(rows), self._chunk):
            try:
                report.rows += await self._chunk_of(rows[start:start + self._chunk], dry_run)
            except _Stopped as stopped:
                report.rows += stopped.done
                done = {r.row for r in stopped.done}
                report.rows += [RowReport(r.row, r.username, Outcome.NOT_PROCESSED,
                                          f"not processed: {stopped.service} failed")
                                for r in rows[start:] if r.row not in done]
                report.error, report.failed_service = stopped.error, stopped.service
                break
        summary = report.summary()
        log.info("import%s: %s", " (dry run)" if dry_run else "", summary)
        return report

    async def _chunk_of(self, rows: list[ImportRow], dry_run: bool) -> list[RowReport]:
        planned = [_Planned(row, RowReport(row.row, row.username, Outcome.NOT_PROCESSED, "")) for row in rows]
        try:
            found = await self._find([p.row for p in planned])
        except grpc.aio.AioRpcError as exc:
            raise _stop(planned, "auth", exc) from exc
        new = [p for p in planned if _classify(p, found)]
        if dry_run:
            for p in new:
                p.report.outcome, p.report.reason = Outcome.CREATED, "would be created"
        elif new:
            await self._create(new, planned)
        await self._faults.hit(FaultPoint.CRASH_AFTER_CREATE_USERS)
        await self._grant([p for p in planned if p.row.initial_credits > 0 and p.report.outcome in (
            Outcome.CREATED, Outcome.EXISTS)], planned, dry_run)
        return [p.report for p in planned]

    async def _find(self, rows: list[ImportRow]) -> list[auth_pb2.User]:
        request = auth_pb2.FindUsersRequest(usernames=[r.username for r in rows], emails=[r.email for r in rows])
        reply = await self._auth.FindUsers(request, timeout=self._timeout)
        return list(reply.users)

    async def _create(self, new: list[_Planned], planned: list[_Planned]) -> None:
        request = auth_pb2.CreateUsersRequest(items=[
            auth_pb2.CreateUserRequest(username=p.row.username, email=p.row.email) for p in new])
        try:
            reply = await self._auth.CreateUsers(request, timeout=self._timeout)
        except grpc.aio.AioRpcError as exc:
            raise _stop(planned, "auth", exc) from exc
        raced = []
        for p, item in zip(new, reply.items, strict=True):
            if item.status.code == 0:
                p.user_id = item.response.user.id
                p.report.outcome, p.report.reason = Outcome.CREATED, "created"
                p.report.api_key = item.response.api_key
            elif item.status.refusal == Refusal.ALREADY_EXISTS:
                raced.append(p)  # created since the look-up (another import of the same file?): look again
            else:
                p.report.outcome, p.report.reason = Outcome.REJECTED, f"auth refused it: {item.status.message}"
        if raced:
            try:
                found = await self._find([p.row for p in raced])
            except grpc.aio.AioRpcError as exc:
                raise _stop(planned, "auth", exc) from exc
            for p in raced:
                if _classify(p, found):  # still nobody with its name or email: auth's refusal stands
                    p.report.outcome, p.report.reason = Outcome.REJECTED, "the username or email already exists"

    async def _grant(self, granting: list[_Planned], planned: list[_Planned], dry_run: bool) -> None:
        if not granting:
            return
        request = billing_pb2.GrantBatchRequest(dry_run=dry_run, items=[billing_pb2.GrantRequest(
            user_id=p.user_id, credits=to_wire(p.row.initial_credits), transaction_type="grant",
            notes=p.row.notes or INITIAL_NOTES, created_by=self._created_by, idempotency_key=INITIAL_KEY,
            idempotency_scope=initial_scope(p.user_id),
        ) for p in granting if p.user_id])
        to_grant = [p for p in granting if p.user_id]
        if dry_run and len(to_grant) < len(granting):  # would-be users have no id yet: nothing to look up
            for p in granting:
                if not p.user_id:
                    p.report.credits_granted = p.row.initial_credits
                    p.report.reason += f" with {for_json(p.row.initial_credits)} initial credits"
        if not to_grant:
            return
        try:
            reply = await self._billing.GrantBatch(request, timeout=self._timeout)
        except grpc.aio.AioRpcError as exc:
            raise _stop(planned, "billing", exc) from exc
        for p, item in zip(to_grant, reply.items, strict=True):
            _granted(p, item, dry_run)


def _classify(p: _Planned, found: list[auth_pb2.User]) -> bool:
    """Settle the row against the users that exist: exists, rejected, or (True) to be created."""
    username, email = p.row.username.lower(), p.row.email.lower()
    by_name = next((u for u in found if u.username.lower() == username), None)
    by_email = next((u for u in found if u.email.lower() == email), None)
    if by_name is None and by_email is None:
        return True
    if by_name is not None and by_email is not None and by_name.id == by_email.id:
        p.user_id = by_name.id
        p.report.outcome, p.report.reason = Outcome.EXISTS, "already exists (same username and email)"
    elif by_name is not None:
        p.report.outcome, p.report.reason = Outcome.REJECTED, "the username belongs to a user with another email"
    else:
        assert by_email is not None
        p.report.outcome = Outcome.REJECTED
        p.report.reason = f"the email belongs to another user ({by_email.username})"
    return False


def _granted(p: _Planned, item: billing_pb2.GrantOutcome, dry_run: bool) -> None:
    """Write what the grant did (or would do) into the row's report."""
    amount = p.row.initial_credits
    created = p.report.outcome is Outcome.CREATED
    if item.status.code != 0:
        if item.status.refusal == Refusal.IDEMPOTENCY_KEY_REUSED:
            p.report.reason += "; initial credits of another amount or notes were granted before: not granted again"
        else:
            p.report.reason += f"; initial credits not granted: {item.status.message}"
        return
    if item.response.replayed:
        p.report.reason += "; its initial credits were granted before"
        return
    p.report.credits_granted = amount
    if created:
        p.report.reason += f" with {for_json(amount)} initial credits"
    elif dry_run:
        p.report.reason += f"; its initial credits were never granted: {for_json(amount)} would be granted now"
    else:
        p.report.reason += (f"; its initial credits had not been granted (an earlier run stopped?): "
                            f"granted {for_json(amount)} now")


def _stop(planned: list[_Planned], service: str, error: grpc.aio.AioRpcError) -> _Stopped:
    """A call failed part-way through a chunk: each row as far as it got. A created user keeps its key (and is
    told its credits are missing); a row still waiting for its grant is not processed."""
    for p in planned:
        waiting = p.row.initial_credits > 0 and not p.report.credits_granted
        if p.report.outcome is Outcome.CREATED and waiting:
            p.report.reason += f"; its initial credits were NOT granted ({service} failed): run the same file again"
        elif p.report.outcome is Outcome.NOT_PROCESSED or (p.report.outcome is Outcome.EXISTS and waiting):
            p.report.outcome, p.report.reason = Outcome.NOT_PROCESSED, f"not processed: {service} failed"
    return _Stopped([p.report for p in planned], service, error)
