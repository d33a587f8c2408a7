"""The shop's handlers: ``f(data)`` or ``f(data, job)``, async or sync."""

from __future__ import annotations

import logging
from typing import Any

from cortexflow import UnrecoverableError
from cortexflow.worker.context import JobContext

log = logging.getLogger("shop")


async def charge_order(data: dict[str, Any], job: JobContext) -> dict[str, Any]:
    """Charge the order (a stand-in for a payment provider), then queue its receipt."""
    if data["amount"] <= 0:
        # Retrying cannot fix this: fail at once; the job goes to failed-orders.
        raise UnrecoverableError(f"cannot charge {data['amount']} {data['currency']}")
    await job.log(f"charged {data['amount']} {data['currency']}")
    charge_id = f"ch-{data['orderId']}"
    # A derived job id: if this run is retried, the receipt is still queued only once.
    await job.add_job("receipts", "receipt", {**data, "chargeId": charge_id},
                      job_id=f"receipt-{data['orderId']}")  # fmt: skip
    return {"chargeId": charge_id}


def write_receipt(data: dict[str, Any]) -> dict[str, Any]:
    """Render the receipt (sync code is fine: it runs in a thread pool)."""
    text = f"Order {data['orderId']}: {data['amount']:.2f} {data['currency']} ({data['chargeId']})"
    return {"to": data["email"], "receipt": text}


def alert_staff(envelope: dict[str, Any]) -> dict[str, Any]:
    """A dead letter: ``{queue, id, name, data, error, stacktrace, attemptsMade}``."""
    log.warning("order %s failed for good: %s", envelope["data"].get("orderId"), envelope["error"])
    return {"orderId": envelope["data"].get("orderId"), "error": envelope["error"]}
