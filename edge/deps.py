"""What a route needs, as typed dependencies declared in its signature: the service clients, the settings,
the key cache (all built once by the app's lifespan) and the shared request headers. Routes name these
instead of reaching into `request.app.state`. They are `async def` on purpose: FastAPI runs a plain `def`
dependency in a worker thread, a thread hand-off on every request."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request

from common.idempotency_key import MAX_LENGTH, PATTERN
from edge.clients import ServiceClients
from edge.key_cache import KeyCache
from edge.settings import EdgeSettings


async def _clients(request: Request) -> ServiceClients:
    clients: ServiceClients = request.app.state.clients
    return clients


async def _settings(request: Request) -> EdgeSettings:
    settings: EdgeSettings = request.app.state.settings
    return settings


async def _key_cache(request: Request) -> KeyCache:
    cache: KeyCache = request.app.state.key_cache
    return cache


Clients = Annotated[ServiceClients, Depends(_clients)]
Settings = Annotated[EdgeSettings, Depends(_settings)]
Keys = Annotated[KeyCache, Depends(_key_cache)]
#: The one Idempotency-Key rule (common/idempotency_key.py), for every route that takes the header.
IdempotencyKeyHeader = Annotated[str | None, Header(alias="Idempotency-Key", min_length=1, max_length=MAX_LENGTH,
                                                    pattern=PATTERN)]
#: Faults to inject (simulator/faults.py, common/faults.py); honoured only against the simulator or with
#: FSG_FAULT_INJECTION. Tests only.
#: The longest X-Sim-Fault header taken (a simulator fault name; tests only).
MAX_FAULT_LENGTH = 64
SimFault = Annotated[str | None, Header(alias="X-Sim-Fault", max_length=MAX_FAULT_LENGTH)]
