"""rq: the no-op job function (``bench.peers.apps.rq_app.noop``)."""

from bench.peers.tally import Tally

TALLY = Tally.from_env()


def noop(i: int = 0) -> None:
    TALLY.done()
