"""The dashboard's routes through Starlette's TestClient: pages, security, actions."""

from __future__ import annotations

import re

import pytest

pytest.importorskip("starlette", reason="the ui extra is not installed")

from starlette.testclient import TestClient

import durable
from tests.conftest import wait_until
from tests.ui import flows
from tests.ui.conftest import BASE, TOKEN, make_app, make_client


def _csrf(page: str) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', page)
    assert found, "the page carries no CSRF token"
    return found.group(1)


def _waiting(engine: durable.Engine, workflow_id: str = "ap") -> durable.WorkflowHandle:
    handle = engine.start(flows.approval, "A-17", workflow_id=workflow_id)
    wait_until(lambda: handle.status() == durable.Status.WAITING, what="the approval wait")
    return handle


# -- security -------------------------------------------------------------------------


def test_every_page_needs_the_token(client_engine: durable.Engine) -> None:
    anonymous = TestClient(make_app(client_engine), base_url=BASE)
    for path in ("/", "/workflows", "/w/x", "/metrics", "/bottlenecks"):
        response = anonymous.get(path)
        assert response.status_code == 403, path
        assert "token" in response.text
    assert anonymous.get("/static/htmx.min.js").status_code == 200
    assert anonymous.get("/?token=wrong").status_code == 403


def test_the_token_link_sets_a_strict_httponly_cookie(client_engine: durable.Engine) -> None:
    browser = TestClient(make_app(client_engine), base_url=BASE, follow_redirects=False)
    response = browser.get(f"/workflows?status=FAILURE&token={TOKEN}")
    assert response.status_code == 303
    assert response.headers["location"] == "/workflows?status=FAILURE"  # token left out
    cookie = response.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert cookie.startswith("durable_ui_token_8765=")  # one per port: dashboards coexist
    assert browser.get("/workflows").status_code == 200
    bearer = TestClient(make_app(client_engine), base_url=BASE)
    assert bearer.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200


def test_responses_forbid_frames_and_foreign_scripts(client: TestClient) -> None:
    for path in ("/", "/static/htmx.min.js", "/nope"):
        headers = client.get(path).headers
        assert "frame-ancestors 'none'" in headers["content-security-policy"]
        assert "script-src 'self'" in headers["content-security-policy"]
        assert headers["x-frame-options"] == "DENY"


def test_a_foreign_host_header_is_refused(client: TestClient) -> None:
    """DNS rebinding: evil.example resolving to 127.0.0.1 still sends its own name."""
    response = client.get("/", headers={"host": "evil.example:8765"})
    assert response.status_code == 400 and "DNS rebinding" in response.text
    assert client.get("/", headers={"host": "localhost:8765"}).status_code == 200


def test_actions_need_post_csrf_and_same_origin(engine: durable.Engine,
                                                 client: TestClient) -> None:
    _waiting(engine)
    page = client.get("/w/ap").text
    csrf = _csrf(page)
    assert client.get("/w/ap/do/pause").status_code in (404, 405)  # GET never acts
    assert client.post("/w/ap/do/pause", data={}).status_code == 403
    assert client.post("/w/ap/do/pause", data={"csrf": "0" * 32}).status_code == 403
    refused = client.post("/w/ap/do/pause", data={"csrf": csrf},
                          headers={"origin": "http://evil.example"})
    assert refused.status_code == 403
    assert engine.store.workflow("ap").control is None  # type: ignore[union-attr]
    stranger = TestClient(make_app(engine), base_url=BASE)  # no token cookie
    assert stranger.post("/w/ap/do/cancel", data={"csrf": csrf}).status_code == 403
    assert engine.handle("ap").status() == durable.Status.WAITING


def test_read_only_shows_no_action_and_refuses_them(engine: durable.Engine) -> None:
    _waiting(engine)
    client = make_client(engine, read_only=True)
    page = client.get("/w/ap").text
    assert "read-only" in page and "/do/" not in page
    response = client.post("/w/ap/do/cancel", data={"csrf": "x"})
    assert response.status_code == 403 and "read-only" in response.text
    assert engine.handle("ap").status() == durable.Status.WAITING


# -- actions --------------------------------------------------------------------------


def test_signal_with_a_json_payload_finishes_the_workflow(engine: durable.Engine,
                                                          client: TestClient) -> None:
    handle = _waiting(engine)
    csrf = _csrf(client.get("/w/ap").text)
    response = client.post("/w/ap/do/signal",
                           data={"csrf": csrf, "name": "approve", "payload": '{"by": "ann"}'})
    assert response.status_code == 200 and "signal &#39;approve&#39; sent" in response.text
    assert handle.result(timeout=10) == "shipped A-17 ({'by': 'ann'})"
    bad = client.post("/w/ap/do/signal", data={"csrf": csrf, "name": "x", "payload": "{nope"})
    assert "not JSON" in bad.text


def test_pause_resume_cancel_and_fork(engine: durable.Engine, client: TestClient) -> None:
    _waiting(engine)
    csrf = _csrf(client.get("/w/ap").text)
    client.post("/w/ap/do/pause", data={"csrf": csrf})
    wait_until(lambda: engine.handle("ap").status() == durable.Status.PAUSED, what="paused")
    client.post("/w/ap/do/resume", data={"csrf": csrf})
    wait_until(lambda: engine.handle("ap").status() == durable.Status.WAITING, what="resumed")
    page = client.get("/w/ap").text
    assert 'href="/w/ap?fork_at=1#fork"' in page  # call #2 on the timeline: keep 1..1
    assert 'name="at" type="number" min="0" required size="5" value="1"' in client.get(
        "/w/ap", params={"fork_at": "1"}).text
    forked = client.post("/w/ap/do/fork", data={"csrf": csrf, "at": "1", "new_id": "ap-2"})
    assert forked.url.path == "/w/ap-2" and "forked from ap at call #1" in forked.text
    client.post("/w/ap/do/cancel", data={"csrf": csrf})
    wait_until(lambda: engine.handle("ap").status() == durable.Status.CANCELLED, what="cancel")
    finished = client.get("/w/ap").text
    assert "/do/cancel" not in finished  # no control of a finished workflow


def test_terminate_from_the_page_ends_the_workflow(
        engine: durable.Engine, client: TestClient) -> None:
    _waiting(engine)
    page = client.get("/w/ap").text
    assert "/do/terminate" in page
    client.post("/w/ap/do/terminate", data={"csrf": _csrf(page)})
    assert engine.handle("ap").status() is durable.Status.FAILURE
    with pytest.raises(durable.errors.WorkflowFailed) as failed:
        engine.handle("ap").result(timeout=5)
    assert isinstance(failed.value.__cause__, durable.errors.WorkflowTerminated)


def test_retry_appears_only_when_the_engine_has_it(
        engine: durable.Engine, client_engine: durable.Engine, client: TestClient,
        monkeypatch: pytest.MonkeyPatch) -> None:
    _waiting(engine)
    page = client.get("/w/ap").text
    assert "/do/retry" in page  # the engine has retry (issue 13)
    called: list[str] = []
    monkeypatch.setattr(client_engine, "retry", called.append, raising=False)
    page = client.get("/w/ap").text
    assert "/do/retry" in page
    client.post("/w/ap/do/retry", data={"csrf": _csrf(page)})
    assert called == ["ap"]


# -- pages ----------------------------------------------------------------------------


def test_overview_list_and_bottlenecks(engine: durable.Engine, client: TestClient) -> None:
    assert engine.run(flows.retrying, "k-routes") == "ok"
    with pytest.raises(durable.errors.WorkflowFailed):
        engine.run(flows.failing, "B-2", workflow_id="bad")
    overview = client.get("/").text
    assert "card declined for B-2" in overview and "<svg" in overview
    assert 'class="bar started"' in overview
    assert "All queues are empty." in overview  # the schema has queues (issue 13)
    listing = client.get("/workflows?status=FAILURE").text
    assert "bad" in listing and "k-routes" not in listing
    assert "next page" not in listing
    bottlenecks = client.get("/bottlenecks?window=all").text
    assert "tests.ui.flows.flaky" in bottlenecks


def test_workflow_page_shows_args_state_events_waits_and_no_pickle(
        engine: durable.Engine, client: TestClient) -> None:
    _waiting(engine)
    page = client.get("/w/ap").text
    assert "A-17" in page  # arguments
    assert "signal &#39;approve&#39;" in page  # what it waits for
    assert "charged A-17" in page  # the published event
    assert "order" in page  # durable state
    assert 'class="call step ok"' in page  # the timeline
    assert "signal.waiting" in page  # the event log
    assert engine.run(flows.pickled, 7, workflow_id="pk") == 7
    pickled = client.get("/w/pk").text
    assert re.search(r"&lt;pickle: \d+ bytes&gt;", pickled)


def test_failed_workflow_shows_error_and_traceback(engine: durable.Engine,
                                                   client: TestClient) -> None:
    with pytest.raises(durable.errors.WorkflowFailed):
        engine.run(flows.failing, "C-3", workflow_id="bad")
    page = client.get("/w/bad").text
    assert "ValueError: card declined for C-3" in page
    assert "Traceback (most recent call last)" in page
    assert 'data-status="FAILURE"' in page and "hx-trigger" not in page.split('id="live"')[1][:200]


def test_children_tree_and_graph(engine: durable.Engine, client: TestClient) -> None:
    engine.run(flows.parent, 2, workflow_id="fam")
    page = client.get("/w/fam").text
    assert "fam/call-1" in page
    graph = client.get("/w/fam/graph").text
    assert graph.count("<circle") == 3
    child = client.get("/w/fam%2Fcall-2").text
    assert 'href="/w/fam"' in child  # its parent


def test_dag_run_graph_with_and_without_its_definition(
        engine: durable.Engine, client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    from durable.dag import Task, Workflow

    dag = Workflow(name="ui-etl", engine=engine)
    dag.add_task(Task(name="extract", func=lambda: 1))
    dag.add_task(Task(name="load", dependencies=["extract"], func=lambda: 2))
    dag.run(run_id="etl-1")
    run = engine.list_workflows(name="durable.dag.run")[0]
    graph = client.get(f"/w/{run.workflow_id}/graph").text
    assert 'data-task="extract"' in graph and 'data-task="load"' in graph
    assert 'class="task success"' in graph and 'class="edge"' in graph
    from durable.dag.catalog import CATALOG

    # A dashboard whose process does not define the DAG: tasks from the log, no edges.
    monkeypatch.setattr(CATALOG, "find", lambda *args: None)
    graph = client.get(f"/w/{run.workflow_id}/graph").text
    assert 'data-task="load"' in graph and 'class="edge"' not in graph
    assert "-m MODULE" in graph


def test_inspector_without_and_with_modules(engine: durable.Engine,
                                            client_engine: durable.Engine) -> None:
    engine.run(flows.leaf, 3, workflow_id="lf")
    plain = make_client(client_engine).get("/w/lf/inspect").text
    assert "-m tests.ui.flows" in plain
    inspecting = make_client(client_engine, modules=("tests.ui.flows",))
    assert "Replays cleanly" in inspecting.get("/w/lf/inspect").text


def test_inspector_shows_a_divergence_side_by_side(engine: durable.Engine,
                                                   client_engine: durable.Engine,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    engine.run(flows.leaf, 4, workflow_id="lf")

    @durable.step
    def other(n: str) -> str:
        return n

    monkeypatch.setattr(flows.leaf, "fn", lambda n: other(str(n)) and n)
    page = make_client(client_engine, modules=("tests.ui.flows",)).get("/w/lf/inspect").text
    assert "Diverged at call #1" in page
    assert "tests.ui.flows.charge" in page  # recorded
    assert "other" in page and "test_routes.py" in page  # called now, with file:line


def test_missing_workflow_is_404(client: TestClient) -> None:
    response = client.get("/w/nobody")
    assert response.status_code == 404 and "nobody" in response.text


def test_metrics(engine: durable.Engine, client: TestClient) -> None:
    assert engine.run(flows.retrying, "k-metrics") == "ok"
    _waiting(engine)
    text = client.get("/metrics").text
    assert 'durable_workflows{name="tests.ui.flows.retrying",status="SUCCESS"} 1.0' in text
    assert 'durable_step_duration_seconds_count{step="tests.ui.flows.flaky"} 2.0' in text
    assert 'durable_step_duration_seconds_bucket{le="+Inf",step="tests.ui.flows.flaky"} 2.0' \
        in text
    assert 'durable_step_retries_total{step="tests.ui.flows.flaky"} 1.0' in text
    assert "durable_oldest_waiting_seconds " in text
    assert "# TYPE durable_queue_depth gauge" in text  # no queue holds work: no sample
    assert "durable_queue_depth{" not in text


def test_no_page_unpickles(engine: durable.Engine, client: TestClient,
                           monkeypatch: pytest.MonkeyPatch) -> None:
    import pickle

    import cloudpickle

    assert engine.run(flows.pickled, 5, workflow_id="pk") == 5

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the dashboard unpickled a value")

    monkeypatch.setattr(cloudpickle, "loads", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    for path in ("/", "/workflows", "/w/pk", "/w/pk/live", "/w/pk/events", "/w/pk/graph",
                 "/bottlenecks", "/metrics"):
        response = client.get(path)
        assert response.status_code == 200, path
    assert "&lt;pickle:" in client.get("/w/pk").text


def test_live_fragments_poll_until_the_workflow_ends(engine: durable.Engine,
                                                     client: TestClient) -> None:
    handle = _waiting(engine)
    live = client.get("/w/ap/live").text
    assert live.startswith('<div id="live" hx-get="/w/ap/live" hx-trigger="every 1s"')
    assert "<html" not in live  # a fragment, swapped into the page
    handle.signal("approve", "yes")
    handle.result(timeout=10)
    ended = client.get("/w/ap/live").text
    assert ended.startswith('<div id="live" data-status="SUCCESS"')  # no trigger: polling stops
    overview = client.get("/overview/live").text
    assert 'hx-trigger="every 2s"' in overview and "<html" not in overview


def test_list_pages_follow_the_cursor(engine: durable.Engine, client: TestClient) -> None:
    for i in range(55):
        engine.start(flows.sleeper, 3600, workflow_id=f"s-{i:02d}")
    first = client.get("/workflows").text
    assert first.count('href="/w/s-') == 50
    cursor = re.search(r'name="after" value="([^"]+)"', first)
    assert cursor
    second = client.get("/workflows", params={"after": cursor.group(1)}).text
    assert second.count('href="/w/s-') == 5 and "next page" not in second
    assert 'href="/w/s-00"' in second and 'href="/w/s-00"' not in first  # oldest last


def test_a_timer_wait_shows_the_time_left(engine: durable.Engine, client: TestClient) -> None:
    handle = engine.start(flows.sleeper, 600, workflow_id="nap")
    wait_until(lambda: handle.status() == durable.Status.WAITING, what="the timer")
    page = client.get("/w/nap").text
    assert re.search(r"wakes in (9|10) min \d\d s", page), page
    assert 'class="call sleep open"' in page  # the open wait on the timeline
    graph = client.get("/w/nap/graph").text
    assert 'hx-select="#graph-live" hx-trigger="every 2s"' in graph  # refreshes while it runs
