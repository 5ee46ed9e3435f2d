"""Who is calling: the API key from the `X-API-Key` header or the `api_key` query parameter, checked
by the auth service. Routes depend on `current_user` or `require_admin`."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from common.logging import printable
from edge.deps import Clients, Keys
from edge.errors import AdminRequired, ApiKeyRequired, InvalidApiKey
from edge.metrics import AUTH_FAILURES
from protos import auth_pb2

log = logging.getLogger(__name__)


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
        raise ApiKeyRequired()
    caller = cache.get(key)
    if caller is None:
        generation = cache.generation
        reply = await clients.call("auth", clients.auth.ValidateKey, auth_pb2.ValidateKeyRequest(api_key=key))
        if not reply.valid:
            AUTH_FAILURES.labels("invalid").inc()
            # Enough of the key to recognise a client's mistake, never enough to use. Escaped and cut here as
            # well as by the logging filter, so this line is one line wherever the record goes.
            log.info("rejected API key %s… on %s", printable(key[:11]), printable(request.url.path))
            raise InvalidApiKey()
        caller = Caller(id=reply.user.id, username=reply.user.username, is_admin=reply.user.is_admin)
        cache.put(key, caller, generation)
    request.state.caller = caller
    return caller


User = Annotated[Caller, Depends(current_user)]


async def require_admin(caller: User) -> Caller:
    if not caller.is_admin:
        raise AdminRequired()
    return caller


Admin = Annotated[Caller, Depends(require_admin)]
