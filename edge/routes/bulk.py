"""Bulk import and export for admins: the same file checks, import and exports as `fsg-billing import|export`
(common/bulk), answered over REST. Admin key required, as on every /api/admin route.

The import takes the CSV file itself as the request body (`Content-Type: text/csv`; `curl --data-binary
@users.csv`), not a multipart form: one file is the whole request, so there is nothing to name or pick apart,
and its size is judged by the body limit like any body (EDGE_MAX_IMPORT_BYTES, 413 over it).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse

from common.bulk.csv_rows import ImportFileRefused, InvalidRows, MalformedFile, TooManyRows, parse_import
from common.bulk.export import ExportFailed, InvalidRange, day_range, usage_csv, users_csv
from common.bulk.importer import Importer
from edge import responses
from edge.deps import Clients, Settings
from edge.errors import ApiError, from_grpc
from edge.json import DecimalJSONResponse
from edge.request_json import JsonRoute
from edge.security import Admin

log = logging.getLogger(__name__)
router = APIRouter(prefix="/api/admin", tags=["admin"], route_class=JsonRoute)
IMPORT_PATH = "/api/admin/import"
CSV_MEDIA_TYPE = "text/csv"

#: Each kind of refused file → its status and short error (every refusal changes nothing).
_REFUSED: dict[type[ImportFileRefused], tuple[int, str]] = {
    MalformedFile: (400, "Malformed CSV"),
    InvalidRows: (422, "Invalid rows"),
    TooManyRows: (413, "Too many rows"),
}
_CSV_BODY: dict[str, Any] = {"requestBody": {"required": True, "content": {
    CSV_MEDIA_TYPE: {"schema": {"type": "string", "description": "username,email,initial_credits,notes"}}}}}
_REFUSALS: dict[int | str, dict[str, Any]] = {
    400: {"model": responses.ImportRefusedBody, "description": "Malformed CSV: bytes, quoting, header, columns"},
    413: {"model": responses.ErrorBody, "description": "Larger than EDGE_MAX_IMPORT_BYTES, or too many rows"},
    415: {"model": responses.ErrorBody, "description": "Not sent as Content-Type: text/csv"},
    422: {"model": responses.ImportRefusedBody, "description": "Rows that break the rules, or a bad dry_run"},
}
_CSV_ANSWER: dict[str, Any] = {"content": {CSV_MEDIA_TYPE: {"schema": {"type": "string"}}}}


@router.post(IMPORT_PATH.removeprefix("/api/admin"), response_model=responses.ImportReport,
             openapi_extra=_CSV_BODY, responses=_REFUSALS)
async def import_users(request: Request, clients: Clients, settings: Settings, admin: Admin,
                       dry_run: Annotated[bool, Query()] = False) -> DecimalJSONResponse:
    """Create users and grant their initial credits from a CSV file (`username,email,initial_credits,notes`):
    a report of every row (created, exists, rejected) with each new user's API key, shown only here. The same
    file again creates nothing twice and grants initial credits at most once. A file with any bad row is
    refused whole (400 malformed, 422 invalid rows, 413 too large) and changes nothing; `dry_run=true` checks
    and reports what would happen, changing nothing."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != CSV_MEDIA_TYPE:
        raise ApiError(415, "Unsupported media type",
                       "Send the CSV file itself as the body with Content-Type: text/csv "
                       "(curl --data-binary @users.csv -H 'Content-Type: text/csv')")
    try:
        rows = parse_import(await request.body())
    except ImportFileRefused as exc:
        status, error = _REFUSED[type(exc)]
        raise ApiError(status, error, f"Nothing was imported: {exc.message}",
                       problems=[{"row": p.row, "field": p.field, "message": p.message} for p in exc.problems]
                       ) from None
    importer = Importer(clients.auth, clients.billing, created_by=admin.username,
                        timeout=settings.bulk_rpc_timeout_seconds)
    report = await importer.run(rows, dry_run=dry_run)
    if report.error is not None:
        # Part of the file went in: answer the service's failure, with the report (its keys included).
        failed = from_grpc(report.error, report.failed_service)
        raise ApiError(failed.status, "Import incomplete", report.failure(), **report.as_dict())
    return DecimalJSONResponse(report.as_dict())


async def _csv_response(pages: AsyncIterator[str], filename: str) -> StreamingResponse:
    """Stream the pages as a CSV download. The header and the first page are read before answering, so a
    service that is down is a JSON 503 rather than a broken download; a failure after that cuts the download
    short (no final chunk), which clients see as an incomplete response."""
    first: list[str] = []
    try:
        async for text in pages:
            first.append(text)
            if len(first) == 2:
                break
    except ExportFailed as exc:
        raise from_grpc(exc.error, exc.service) from None

    async def body() -> AsyncIterator[bytes]:
        for text in first:
            yield text.encode()
        try:
            async for text in pages:
                yield text.encode()
        except ExportFailed as exc:
            log.warning("export %s cut short: %s", filename, exc)
            raise

    return StreamingResponse(body(), media_type=f"{CSV_MEDIA_TYPE}; charset=utf-8",
                             headers={"Content-Disposition": f'attachment; filename="{filename}"'})


@router.get("/export/users.csv", response_class=StreamingResponse, responses={200: _CSV_ANSWER})
async def export_users(clients: Clients, settings: Settings, admin: Admin) -> StreamingResponse:
    """Every user as CSV: username, email, is_admin, disabled, created_at, available (empty for an unlimited
    account), held, total_purchased, total_requests, total_tokens, total_cost. Credits are exact decimals."""
    return await _csv_response(users_csv(clients.auth, clients.billing, timeout=settings.bulk_rpc_timeout_seconds),
                               "users.csv")


def _day(name: str) -> Any:
    return Query(alias=name, pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$", description="YYYY-MM-DD (UTC), included")


@router.get("/export/usage.csv", response_class=StreamingResponse, responses={200: _CSV_ANSWER})
async def export_usage(clients: Clients, settings: Settings, admin: Admin,
                       start: Annotated[str, _day("from")], end: Annotated[str, _day("to")]
                       ) -> StreamingResponse:
    """The usage log (one row per metered call, with its username) from `from` to `to`, both days included."""
    try:
        since, until = day_range(start, end)
    except InvalidRange as exc:
        raise ApiError(422, "Invalid request", f"{exc.field}: {exc}",
                       fields=[{"field": exc.field, "message": str(exc)}]) from None
    pages = usage_csv(clients.auth, clients.billing, since, until, timeout=settings.bulk_rpc_timeout_seconds)
    return await _csv_response(pages, f"usage-{start}-to-{end}.csv")
