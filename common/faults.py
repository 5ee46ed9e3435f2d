"""Fault points: a process can be told to die or stall at one precise step of a metered call, so tests can
show what every failure point does to the money (tests/reliability/test_settlement_seam.py and others).

They travel in the edge's `X-Sim-Fault` header next to the simulator's own faults (simulator/faults.py)
and are honoured only by processes started with FSG_FAULT_INJECTION=1 (the test stacks); elsewhere they
are dropped. An item is a point's name, or `name:<ms>` for the stalls.
"""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass, field
from enum import StrEnum

log = logging.getLogger(__name__)

#: A process that crashes on purpose exits with this code (EX_SOFTWARE), never 0.
CRASH_EXIT_CODE = 70


class FaultPoint(StrEnum):
    CRASH_AFTER_SAVE = "crash_after_save"              # generation: exit right after staging a result
    STALL_AFTER_SAVE = "stall_after_save"              # generation: sleep after staging a result
    STALL_BEFORE_RESERVE = "stall_before_reserve"      # billing: sleep before placing a hold
    STALL_AFTER_RESERVE = "stall_after_reserve"        # billing: sleep after placing a hold, before answering
    STALL_AFTER_COMMIT = "stall_after_commit"          # billing: sleep after a Commit, before answering
    CRASH_BEFORE_COMMIT = "crash_before_commit"        # edge: exit once Execute answered, before the Commit
    CRASH_AFTER_CREATE_USERS = "crash_after_create_users"  # bulk import: exit once users exist, before their grants


@dataclass(frozen=True)
class Faults:
    """The service fault points asked for (point → stall in ms; 0 for a crash) and the simulator's spec."""

    points: dict[FaultPoint, int] = field(default_factory=dict)
    simulator: str = ""

    async def hit(self, point: FaultPoint) -> None:
        """Crash or stall here if asked to."""
        if point not in self.points:
            return
        if point.name.startswith("CRASH"):
            log.warning("fault injection: %s, exiting", point)
            os._exit(CRASH_EXIT_CODE)
        await asyncio.sleep(self.points[point] / 1000)

    def spec(self) -> str:
        """The service items as text again (to pass them on to the next process)."""
        return ",".join(f"{p}:{ms}" if ms else str(p) for p, ms in self.points.items())


NONE = Faults()
_NAMES = {point.value: point for point in FaultPoint}


def parse(spec: str, *, enabled: bool) -> Faults:
    """Split `spec` into our fault points (kept only when `enabled`) and the simulator's items."""
    if not spec:
        return NONE
    points: dict[FaultPoint, int] = {}
    simulator: list[str] = []
    for item in spec.split(","):
        name, _, value = item.strip().partition(":")
        point = _NAMES.get(name)
        if point is None:
            simulator.append(item.strip())
        elif enabled:
            points[point] = int(value) if value.isdigit() else 0
    return Faults(points, ",".join(i for i in simulator if i))
