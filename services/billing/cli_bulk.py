"""`fsg-billing import` and `fsg-billing export users|usage`: the bulk commands, which talk to the running auth
and billing services over gRPC (common/bulk/client.py) rather than to the database, so billing never writes
auth's table. The file checks, the import and the exports are common/bulk's, shared with the edge's routes.

Exit codes of `import`: 0 every row was created or exists; 1 the file was refused and nothing changed (or the
services could not be reached); 3 some rows were rejected (the others were imported); 4 a service failed
part-way (run the same file again to finish).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import simplejson
import typer

from common import faults
from common.bulk.client import BulkClientSettings, service_stubs
from common.bulk.csv_rows import ImportFileRefused, parse_import
from common.bulk.export import ExportFailed, InvalidRange, day_range, usage_csv, users_csv
from common.bulk.importer import Importer
from common.bulk.report import ImportReport, Outcome
from common.service_auth import ServiceAuthConfigError
from common.tls import TlsConfigError
from protos import auth_pb2_grpc, billing_pb2_grpc

EXIT_REFUSED, EXIT_REJECTED_ROWS, EXIT_INCOMPLETE = 1, 3, 4

export_app = typer.Typer(help="Export users or the usage log as CSV (to stdout, or --output FILE).",
                         no_args_is_help=True)
OutputOption = typer.Option(None, "--output", "-o", help="write here instead of stdout (replaced only when complete)")


def _fail(message: str) -> typer.Exit:
    typer.echo(message, err=True)
    return typer.Exit(EXIT_REFUSED)


def import_users(
    file: Path = typer.Argument(..., help="CSV with the header username,email,initial_credits,notes"),
    dry_run: bool = typer.Option(False, "--dry-run", help="check and report only; change nothing"),
    as_json: bool = typer.Option(False, "--json", help="print the report as JSON (as the REST endpoint answers)"),
    fault: str = typer.Option("", "--fault", hidden=True, help="tests only (FSG_FAULT_INJECTION=1)"),
) -> None:
    """Create users and grant their initial credits from a CSV file, reporting every row (created, exists,
    rejected) and each new user's API key, shown only here. Running the same file again creates nothing twice
    and grants initial credits at most once. A file with any bad row is refused whole."""
    try:
        rows = parse_import(file.read_bytes())
    except OSError as exc:
        raise _fail(f"cannot read {file}: {exc.strerror}") from None
    except ImportFileRefused as exc:
        typer.echo(f"import refused, nothing changed: {exc.message}", err=True)
        for p in exc.problems:
            typer.echo(f"  row {p.row}{' ' + p.field if p.field else ''}: {p.message}", err=True)
        raise typer.Exit(EXIT_REFUSED) from None
    settings = BulkClientSettings()
    injected = faults.parse(fault, enabled=settings.fault_injection)
    report = _run(settings, lambda auth, billing: Importer(
        auth, billing, created_by="cli", timeout=settings.rpc_timeout_seconds, faults=injected,
    ).run(rows, dry_run=dry_run))
    _print(report, as_json)
    if not report.complete:
        typer.echo(report.failure(), err=True)
        raise typer.Exit(EXIT_INCOMPLETE)
    if any(r.outcome is Outcome.REJECTED for r in report.rows):
        raise typer.Exit(EXIT_REJECTED_ROWS)


def _print(report: ImportReport, as_json: bool) -> None:
    if as_json:
        typer.echo(simplejson.dumps(report.as_dict(), use_decimal=True, indent=2, ensure_ascii=False))
    else:
        for line in report.text_lines():
            typer.echo(line)


def _run(settings: BulkClientSettings, action: Callable[
    [auth_pb2_grpc.AuthStub, billing_pb2_grpc.BillingStub], Awaitable[ImportReport]
]) -> ImportReport:
    async def go() -> ImportReport:
        async with service_stubs(settings) as (auth, billing):
            return await action(auth, billing)

    try:
        return asyncio.run(go())
    except (ServiceAuthConfigError, TlsConfigError) as exc:
        raise _fail(str(exc)) from None


@export_app.command("users")
def export_users(output: Path | None = OutputOption) -> None:
    """Every user with is_admin, disabled, created_at, available (empty for an unlimited account), held, total
    purchased and usage totals (requests, tokens, cost). Credits are exact decimals."""
    settings = BulkClientSettings()
    _export(settings, output, lambda auth, billing: users_csv(auth, billing, timeout=settings.rpc_timeout_seconds))


@export_app.command("usage")
def export_usage(
    start: str = typer.Option(..., "--from", help="first day, YYYY-MM-DD (UTC), included"),
    end: str = typer.Option(..., "--to", help="last day, YYYY-MM-DD (UTC), included"),
    output: Path | None = OutputOption,
) -> None:
    """The usage log (one row per metered call) from --from to --to, both days included, with usernames."""
    try:
        since, until = day_range(start, end)
    except InvalidRange as exc:
        raise typer.BadParameter(str(exc), param_hint=f"--{exc.field}") from None
    settings = BulkClientSettings()
    _export(settings, output, lambda auth, billing: usage_csv(
        auth, billing, since, until, timeout=settings.rpc_timeout_seconds))


def _export(settings: BulkClientSettings, output: Path | None, pages: Callable[
    [auth_pb2_grpc.AuthStub, billing_pb2_grpc.BillingStub], AsyncIterator[str]
]) -> None:
    """Write the pages to stdout, or to `output` through a temporary file that replaces it only when the export
    is complete (a failed export never leaves a truncated file behind)."""
    partial = output.with_name(output.name + ".partial") if output is not None else None

    async def go() -> None:
        async with service_stubs(settings) as (auth, billing):
            with (partial.open("w", encoding="utf-8", newline="") if partial is not None
                  else contextlib.nullcontext(sys.stdout)) as sink:
                async for text in pages(auth, billing):
                    sink.write(text)

    try:
        asyncio.run(go())
    except (ExportFailed, ServiceAuthConfigError, TlsConfigError, OSError) as exc:
        if partial is not None:
            partial.unlink(missing_ok=True)
        written = "nothing was written" if partial is not None else "the CSV printed above is incomplete"
        raise _fail(f"export failed, {written}: {exc}") from None
    if partial is not None and output is not None:
        os.replace(partial, output)


def register(app: typer.Typer) -> None:
    """Add the bulk commands to `fsg-billing`."""
    app.command("import")(import_users)
    app.add_typer(export_app, name="export")
