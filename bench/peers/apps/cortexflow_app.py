"""cortexflow's handler (``bench.peers.apps.cortexflow_app:handle`` in the bench's queues.yaml)."""

from typing import Any

from bench.peers.tally import Tally

TALLY = Tally.from_env()


async def handle(data: Any) -> None:
    TALLY.done()
