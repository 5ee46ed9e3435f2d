"""Who is calling: the API key from the `X-API-Key` header or the `api_key` query parameter, checked
by the auth service. Routes depend on `current_user` or `require_admin`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from common import request_id as context
from common.logging import get_logger, printable
from edge.deps import Clients, Keys
from edge.errors import AdminRequired, ApiKeyRequired, InvalidApiKey
from edge.metrics import AUTH_FAILURES
from protos import auth_pb2

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Caller:
    id: int
    username: str
    is_admin: bool


def api_key_from(request: Request) -> str | None:
    key = request.headers.get("x-api-key") or request.query_params.get("api_key")
    return key.strip() if key and key.strip() else None


async def current_user(request: Request, clients: Clients, cache: Keys) -> Caller:
    key = api_key_from(request)
    if key is None:
        AUTH_FAILURES.labels("missing").inc()
        log.info("auth.failed", message=f"no API key on {printable(request.url.path)}", reason="missing")
        raise ApiKeyRequired()
    caller = cache.get(key)
    if caller is None:
        generation = cache.generation
        reply = await clients.call("auth", clients.auth.ValidateKey, auth_pb2.ValidateKeyRequest(api_key=key))
        if not reply.valid:
            AUTH_FAILURES.labels("invalid").inc()
            # Enough of the key to recognise a client's mistake, never enough to use. Escaped and cut here as
            # well as by the logging filter, so this line is one line wherever the record goes.
            # The auth service logs why (malformed, unknown or disabled) under the same request id.
            log.warning("auth.failed", message=f"rejected API key {printable(key[:11])}… on "
                        f"{printable(request.url.path)}", reason="invalid", key_prefix=printable(key[:11]))
            raise InvalidApiKey()
        caller = Caller(id=reply.user.id, username=reply.user.username, is_admin=reply.user.is_admin)
        cache.put(key, caller, generation)
    request.state.caller = caller
    context.user_id.set(caller.id)  # every line logged for the rest of this request names the caller
    return caller


User = Annotated[Caller, Depends(current_user)]


async def require_admin(caller: User) -> Caller:
    if not caller.is_admin:
        raise AdminRequired()
    return caller


Admin = Annotated[Caller, Depends(require_admin)]
