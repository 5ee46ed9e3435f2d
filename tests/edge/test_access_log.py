"""The edge's access log: one line per request with method, path, status, duration, request id and caller,
never the query string; and every response carries the request id the line names."""

from __future__ import annotations

import logging
import re
from types import SimpleNamespace

import httpx
import pytest
from fastapi import FastAPI, Request

from edge.access_log import AccessLogMiddleware
from edge.errors import ApiError, install_error_handlers


def app() -> FastAPI:
    application = FastAPI()
    install_error_handlers(application)
    application.add_middleware(AccessLogMiddleware)

    @application.get("/me")
    async def me(request: Request) -> dict[str, str]:
        request.state.caller = SimpleNamespace(id=42)
        return {"ok": "yes"}

    @application.post("/metered")
    async def metered() -> None:
        # As edge.pipeline.run_metered answers: the error names its request id in the body and the header.
        error = ApiError(402, "Insufficient credits", requestId="req_" + "ab" * 16)
        error.headers = {"X-Request-ID": "req_" + "ab" * 16}
        raise error

    return application


@pytest.fixture
async def client() -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app())
    return httpx.AsyncClient(transport=transport, base_url="http://edge")


async def test_one_line_per_request_without_the_query(client: httpx.AsyncClient,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="edge.access"):
        response = await client.get("/me", params={"api_key": "user_" + "c" * 64})
        missing = await client.get("/nope%0AFAKE 200")
    lines = [r.getMessage() for r in caplog.records if r.name == "edge.access"]
    assert len(lines) == 2
    assert re.fullmatch(r"GET /me 200 \d+\.\dms req=(req_[0-9a-f]{32}) user=42", lines[0])
    assert lines[0].endswith(f"req={response.headers['X-Request-ID']} user=42")
    assert "api_key" not in lines[0] and "c" * 13 not in lines[0]
    assert lines[1].startswith("GET /nope\\nFAKE 200 404 ") and "\n" not in lines[1]
    assert lines[1].endswith(f"req={missing.headers['X-Request-ID']} user=-")


async def test_a_metered_error_keeps_its_own_request_id(client: httpx.AsyncClient,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="edge.access"):
        response = await client.post("/metered")
    assert response.status_code == 402
    assert response.headers["X-Request-ID"] == response.json()["requestId"] == "req_" + "ab" * 16
    assert [r.getMessage().split(" req=")[1] for r in caplog.records if r.name == "edge.access"] == [
        "req_" + "ab" * 16 + " user=-"]
