"""Rendering: the Jinja2 templates, the REST routes' JSON answers read back as data, and errors as pages."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

from fastapi import Request, Response
from fastapi.templating import Jinja2Templates
from starlette.responses import HTMLResponse

from common.money import for_json
from edge.errors import ApiError
from edge.web.session import WebCaller

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")


def credits(value: Any) -> str:
    """Credits as people read them: 12.5, 0, "unlimited" for None."""
    if value is None:
        return "unlimited"
    return str(for_json(Decimal(str(value))))


templates.env.filters["credits"] = credits


#: Scripts, styles and requests from this site only (htmx and Chart.js are vendored; no inline script runs);
#: forms post here, or to Stripe's hosted checkout when a real Stripe key is set; no site may frame a page.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
                               "frame-ancestors 'none'; form-action 'self' https://checkout.stripe.com",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


def data(response: Response) -> Any:
    """A REST route's JSON answer as data (credits stay exact Decimals)."""
    return json.loads(bytes(response.body), parse_float=Decimal)


def render(request: Request, name: str, who: WebCaller | None, status: int = 200, **context: Any) -> HTMLResponse:
    context.setdefault("notice", None)
    context.setdefault("problem", None)
    response = templates.TemplateResponse(
        request, name, {"who": who, "user": who.caller if who else None, "csrf": who.csrf if who else "", **context},
        status_code=status,
    )
    # Pages show balances and, once, keys: no cache keeps them, and no other site frames them.
    response.headers["Cache-Control"] = "no-store"
    response.headers.update(SECURITY_HEADERS)
    return response


def problem(error: ApiError) -> dict[str, Any]:
    """An API error as a page shows it: the API's own words, plus what to do next for the common ones."""
    body = dict(error.body)
    retry = (error.headers or {}).get("Retry-After") or body.get("retry_after")
    return {
        "status": error.status,
        "error": body.get("error", "Error"),
        "message": body.get("message"),
        "balance": body.get("remaining"),
        "required": body.get("required"),
        "retry_after": retry,
        "request_id": body.get("requestId") or (error.headers or {}).get("X-Request-ID"),
        "not_charged": "No credits were charged" in str(body.get("message", "")) or body.get("error") == "Not charged",
        "fields": body.get("fields") or [],
    }


def day_chart(report: dict[str, Any]) -> str:
    """A usage report's days as the page's chart reads them (JSON in a script element, never run)."""
    days = report["perDay"]
    return json.dumps({"labels": [d["name"] for d in days], "credits": [float(d["credits"]) for d in days],
                       "requests": [d["requests"] for d in days], "failed": [d["failed"] for d in days]})
