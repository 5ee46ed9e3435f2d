"""One call to Claude through the official SDK, retried under our policy (retry.py), with its failures
sorted into named outcomes.

Token counts always come from the response's `usage`. When Claude (or the simulator) errors, no tokens
were billed by the provider; when it answers with output that fails validation, they were, and the
caller records that provider cost for the operator.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import anthropic
import httpx2

from services.generation.retry import RetryPolicy, call_with_retries

log = logging.getLogger(__name__)

#: Statuses worth another try: rate limit, server errors, overload. Other 4xx mean the request is wrong.
RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504, 529})
#: The SDK's own attempt counter header; with SDK retries off we number our attempts in it (0 = first), so the
#: provider sees the same telemetry and the simulator's `<fault>*K` can fail just the first K attempts.
ATTEMPT_HEADER = "x-stainless-retry-count"
#: Retry-After for the user after a 429/529 when the provider gave none.
DEFAULT_RETRY_AFTER_SECONDS = 5


@dataclass(slots=True)
class ClaudeReply:
    ok: bool
    input_tokens: int = 0
    output_tokens: int = 0
    request_id: str = ""
    tool_input: Any = None
    text: str = ""
    stop_reason: str = ""
    error_type: str = ""
    error_message: str = ""
    #: For the caller's Retry-After (whole seconds, 0 = none).
    retry_after_seconds: int = 0
    #: Whether another attempt might succeed, and the provider's wait hint in seconds (None = not given).
    retryable: bool = False
    retry_after: float | None = None
    attempts: int = 1
    extra: dict[str, Any] = field(default_factory=dict)


class ClaudeClient:
    def __init__(
        self, *, api_key: str, base_url: str | None, policy: RetryPolicy, max_connections: int = 200
    ) -> None:
        self._policy = policy
        timeout = policy.attempt_timeout_seconds
        # The SDK's aiohttp transport: at 64 calls in flight it costs about 1.4 ms of CPU per call against
        # 3.5 ms for the default httpx2 transport (measured here; see bench/README.md).
        http_client = anthropic.DefaultAioHttpClient(
            limits=httpx2.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
            timeout=timeout,
        )
        # No OpenTelemetry spans: nothing here collects them, and making one costs about 0.25 ms per call.
        self._client = anthropic.AsyncAnthropic(
            api_key=api_key, base_url=base_url, timeout=timeout, max_retries=0, http_client=http_client,
            open_telemetry=False,
        )

    async def close(self) -> None:
        await self._client.close()

    async def call(
        self,
        *,
        model: str,
        max_tokens: int,
        system: str,
        prompt: str,
        tool: dict[str, Any] | None,
        extra_headers: dict[str, str] | None = None,
    ) -> ClaudeReply:
        kwargs: dict[str, Any] = {
            "model": model,
            "max_tokens": max_tokens,
            "system": system,
            "messages": [{"role": "user", "content": prompt}],
        }
        if tool is not None:
            kwargs["tools"] = [tool]
            kwargs["tool_choice"] = {"type": "tool", "name": tool["name"]}

        async def attempt(number: int, timeout: float) -> ClaudeReply:
            headers = {**(extra_headers or {}), ATTEMPT_HEADER: str(number)}
            return await self._attempt(kwargs, headers, timeout, tool)

        reply, attempts = await call_with_retries(self._policy, attempt)
        reply.attempts = attempts
        if not reply.ok:
            reply.error_message += f" after {attempts} attempt{'s' if attempts != 1 else ''}"
        return reply

    async def _attempt(
        self, kwargs: dict[str, Any], headers: dict[str, str], timeout: float, tool: dict[str, Any] | None
    ) -> ClaudeReply:
        """One try, bounded by `timeout` end to end (the SDK's timeouts are per read)."""
        try:
            async with asyncio.timeout(timeout):
                raw = await self._client.messages.with_raw_response.create(
                    **kwargs, extra_headers=headers, timeout=timeout)
                content = await raw.read()
        except anthropic.RateLimitError as exc:
            hint = _retry_after(exc)
            return ClaudeReply(False, error_type="rate_limited", error_message="Claude rate limit reached (429)",
                               retry_after_seconds=_whole_seconds(hint), retryable=True, retry_after=hint,
                               request_id=exc.request_id or "")
        except (anthropic.APITimeoutError, TimeoutError):
            return ClaudeReply(False, error_type="timeout", error_message="Claude did not answer in time",
                               retryable=True)
        except anthropic.APIConnectionError:
            return ClaudeReply(False, error_type="upstream_error", error_message="Could not reach Claude",
                               retryable=True)
        except anthropic.APIStatusError as exc:
            retryable = exc.status_code in RETRYABLE_STATUS
            hint = _retry_after(exc) if retryable else None
            if exc.status_code == 529:
                return ClaudeReply(False, error_type="overloaded", error_message="Claude is overloaded (529)",
                                   retry_after_seconds=_whole_seconds(hint), retryable=True, retry_after=hint,
                                   request_id=exc.request_id or "")
            return ClaudeReply(False, error_type="upstream_error",
                               error_message=f"Claude API error ({exc.status_code})", retryable=retryable,
                               retry_after=hint, request_id=exc.request_id or "")
        try:
            return read_message(json.loads(content), raw.request_id, tool)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            log.warning("malformed Messages API response: %s", exc)
            return ClaudeReply(False, error_type="upstream_error", error_message="Claude sent a malformed response",
                               request_id=raw.request_id or "")


def read_message(body: Any, request_id: str | None, tool: dict[str, Any] | None) -> ClaudeReply:
    """The parts of a Messages API response we use, read from its JSON; raises (KeyError, TypeError,
    ValueError, AttributeError) when the body is not a message.

    The SDK's `with_raw_response` gives the same HTTP exchange, errors and retries off as `create`, without
    building the pydantic `Message` (about 0.4 ms per call that we would only read four fields of).
    """
    if body.get("type") != "message":
        raise ValueError(f"type is {str(body.get('type'))[:40]!r}, not 'message'")
    usage = body["usage"]
    input_tokens, output_tokens = usage["input_tokens"], usage["output_tokens"]
    if not (type(input_tokens) is int and type(output_tokens) is int and input_tokens >= 0 and output_tokens >= 0):
        raise ValueError("usage token counts are not non-negative integers")
    reply = ClaudeReply(True, input_tokens=input_tokens, output_tokens=output_tokens,
                        request_id=request_id or str(body.get("id", "")), stop_reason=body.get("stop_reason") or "")
    for block in body["content"]:
        if block["type"] == "tool_use" and tool is not None and block["name"] == tool["name"]:
            reply.tool_input = block["input"]
        elif block["type"] == "text":
            reply.text += block["text"]
    return reply


def _retry_after(exc: anthropic.APIStatusError) -> float | None:
    return retry_after_hint(exc.response.headers)


def retry_after_hint(headers: Mapping[str, str]) -> float | None:
    """The provider's wait hint in seconds: `retry-after-ms`, else `retry-after` (seconds or an HTTP date)."""
    try:
        return max(0.0, float(headers["retry-after-ms"]) / 1000)
    except (KeyError, ValueError):
        pass
    value = headers.get("retry-after", "")
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def _whole_seconds(hint: float | None) -> int:
    """A Retry-After for the user: the provider's hint rounded up (at least 1), or our default."""
    return max(1, math.ceil(hint)) if hint is not None else DEFAULT_RETRY_AFTER_SECONDS
