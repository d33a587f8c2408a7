"""The shop's handlers under test, with no Redis to install: `python -m pytest` in this folder.

Unit tests call a handler with ``make_job``; the ``cortexflow`` fixture runs queues.yaml's
workers against a private server (a fresh database per test) for end-to-end tests.
"""

from __future__ import annotations

import time

import pytest
from shop.jobs import charge_order, write_receipt

from cortexflow import UnrecoverableError
from cortexflow.testing import QueuesUnderTest, make_job, run_handler

ORDER = {"orderId": "A-1001", "amount": 42.5, "currency": "EUR", "email": "ana@example.com"}


def test_charge_order_queues_its_receipt_under_a_derived_id() -> None:
    job = make_job(ORDER, queue="orders")
    assert run_handler(charge_order, job) == {"chargeId": "ch-A-1001"}
    assert job.logs == ["charged 42.5 EUR"]
    [receipt] = job.added
    assert (receipt.queue, receipt.id) == ("receipts", "receipt-A-1001")


def test_an_order_that_cannot_be_charged_fails_at_once() -> None:
    with pytest.raises(UnrecoverableError):
        run_handler(charge_order, data={**ORDER, "amount": 0})


def test_write_receipt_is_plain_sync_code() -> None:
    receipt = run_handler(write_receipt, data={**ORDER, "chargeId": "ch-1"})
    assert receipt["to"] == "ana@example.com" and "42.50 EUR" in receipt["receipt"]


def test_an_order_gets_its_receipt_through_the_real_queues(cortexflow: QueuesUnderTest) -> None:
    order = cortexflow.run_job("orders", ORDER)
    assert order.state == "completed", order.error
    receipt = cortexflow.wait("receipts", "receipt-A-1001")
    assert receipt.result["to"] == "ana@example.com"


def test_a_bad_order_ends_in_failed_orders(cortexflow: QueuesUnderTest) -> None:
    order = cortexflow.run_job("orders", {**ORDER, "amount": 0})
    assert order.state == "failed" and "cannot charge" in (order.error or "")
    deadline = time.monotonic() + 10
    while not cortexflow.jobs("failed-orders", "completed"):
        assert time.monotonic() < deadline, "the dead letter was not handled within 10 s"
        time.sleep(0.05)
