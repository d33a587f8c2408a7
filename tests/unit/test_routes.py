"""The route planner alone (engine/routes.py plan): a pure function of the routes and the
result, with no Redis."""

from __future__ import annotations

import pytest

from cortexflow.config.model import Join, Route
from cortexflow.engine.routes import MISSING, RouteError, derived_id, holds, plan, resolve
from cortexflow.queues.common import job_id


def test_pointers_follow_rfc_6901() -> None:
    doc = {"a/b": {"m~n": [10, 20]}, "": 1, "list": [{"x": None}]}
    assert resolve(doc, "") is doc
    assert resolve(doc, "/a~1b/m~0n/1") == 20
    assert resolve(doc, "/") == 1
    assert resolve(doc, "/list/0/x") is None
    for missing in ("/nope", "/list/1", "/list/01", "/list/-", "/a~1b/m~0n/x", "/list/0/x/y"):
        assert resolve(doc, missing) is MISSING, missing


def test_when_is_equals_in_or_exists_with_json_equality() -> None:
    doc = {"type": "email", "n": 1, "flag": True, "none": None}
    assert holds({"path": "/type", "equals": "email"}, doc)
    assert not holds({"path": "/type", "equals": "sms"}, doc)
    assert holds({"path": "/n", "in": [2, 1]}, doc)
    assert not holds({"path": "/n", "equals": True}, doc)  # JSON: 1 is not true
    assert not holds({"path": "/flag", "equals": 1}, doc)
    assert holds({"path": "/none", "exists": True}, doc)
    assert holds({"path": "/gone", "exists": False}, doc)
    assert not holds({"path": "/gone", "equals": None}, doc)
    assert holds(None, doc)


def test_a_fan_out_makes_one_job_per_item_with_deterministic_ids() -> None:
    routes = [
        Route(to="m", name="msg", for_each="/messages", id=("/channelType", "/messageId")),
        Route(to="n", name="note", data="/note", id=("reply", "$id")),
        Route(to="x", name="plain"),
        Route(to="f", name="on-fail", on="failed"),
        Route(to="e", name="email", when={"path": "/type", "equals": "email"}),
    ]
    result = {
        "messages": [
            {"channelType": "whatsapp", "messageId": "wamid.A/1"},
            {"channelType": "telegram", "messageId": 7},
        ],
        "note": {"k": 1},
        "type": "in-app",
    }
    hs = plan(routes, result, "webhook-processing", "wh 1")
    assert [h.to for h in hs] == ["m", "n", "x"]
    assert [j.id for j in hs[0].jobs] == ["whatsapp-wamid.A_1", "telegram-7"]
    assert hs[0].jobs[1].data == result["messages"][1]
    assert [(j.id, j.data) for j in hs[1].jobs] == [("reply-wh_1", {"k": 1})]
    assert hs[2].jobs[0].id == "webhook-processing-wh_1-2" and hs[2].jobs[0].data == result
    # The same parts make the same id as the handlers' job_id() (a deploy adds no duplicate).
    assert derived_id("whatsapp", "wamid.A/1") == job_id("whatsapp", "wamid.A/1")
    assert derived_id("x" * 300) == job_id("x" * 300) and len(derived_id("x" * 300)) == 256


def test_default_item_ids_and_the_join() -> None:
    route = Route(to="c", name="item", for_each="/xs", join=Join(to="s", name="sum"))
    (h,) = plan([route], {"xs": [{}, {}]}, "p", "b1")
    assert [j.id for j in h.jobs] == ["p-b1-0-0", "p-b1-0-1"]
    assert h.join is not None and (h.join.id, h.join.to, h.join.fail_fast) == ("sum-b1", "s", False)
    (empty,) = plan([route], {"xs": []}, "p", "b1")
    assert empty.jobs == () and empty.join is not None


@pytest.mark.parametrize(
    ("route", "result", "message"),
    [
        (Route(to="c", name="n", for_each="/xs"), {"xs": {}}, "for_each '/xs' found a dict"),
        (Route(to="c", name="n", for_each="/xs"), {}, "for_each '/xs' found nothing"),
        (Route(to="c", name="n", data="/d"), {}, "data '/d' finds nothing"),
        (Route(to="c", name="n", id=("/k",)), {"k": [1]}, "id part '/k' found a list"),
        (Route(to="c", name="n", id=("/k",)), {"k": None}, "id part '/k' found a NoneType"),
    ],
)
def test_a_result_a_route_cannot_follow_is_a_route_error(
    route: Route, result: object, message: str
) -> None:
    with pytest.raises(RouteError, match=r"next\[0\] \(to c\)") as caught:
        plan([route], result, "p", "1")
    assert message in str(caught.value)
