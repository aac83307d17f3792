"""End to end in real headless Chromium (Debian's, through playwright; never downloaded).

The dashboard runs in uvicorn on a free port in a thread of this process; an engine
with workers runs the workflows here too. Screenshots of the overview, a workflow and a
DAG graph are taken every run; with DURABLE_SCREENSHOTS=1 they replace the committed ones
in docs/ (shown in the README), so a plain test run leaves the work tree unchanged.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

pytest.importorskip("uvicorn", reason="the ui extra is not installed")
playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright not installed")

import uvicorn  # noqa: E402

import durable  # noqa: E402
from tests.conftest import wait_until  # noqa: E402
from tests.ui import flows  # noqa: E402
from tests.ui.conftest import TOKEN, make_app  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update"]
DOCS = Path(__file__).resolve().parents[2] / "docs"


def _shots(tmp_path: Path) -> Path:
    """Where screenshots go: docs/ when DURABLE_SCREENSHOTS=1, else the test's own folder."""
    return DOCS if os.environ.get("DURABLE_SCREENSHOTS") == "1" else tmp_path


TIMEOUT_MS = 15_000

# On a developer's machine without Chromium these tests skip; in CI (.ci/run installs it,
# and CI=true) a missing browser must fail them, never skip them silently.
pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM) and not os.environ.get("CI"),
                                reason=f"no browser at {CHROMIUM} (apt-get install chromium)")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def server(db: str) -> Iterator[tuple[str, durable.Engine]]:
    """``(base URL, the dashboard's client engine)`` of a dashboard serving ``db``."""
    port = _free_port()
    with durable.Engine(db, workers=0) as ui_engine:
        app = make_app(ui_engine, port=port, modules=("tests.ui.flows",))
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                               log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        wait_until(lambda: server.started, what="uvicorn to start")
        try:
            yield f"http://127.0.0.1:{port}", ui_engine
        finally:
            server.should_exit = True
            thread.join(10)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with playwright_api.sync_playwright() as play:
        chromium = play.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser: Any, server: tuple[str, durable.Engine]) -> Iterator[Any]:
    """A page that opened the token link, recording every URL it requests."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.requested = []
    page.on("request", lambda request: page.requested.append(request.url))
    page.problems = []
    page.on("console", lambda message: message.type == "error" and page.problems.append(
        message.text))
    page.on("pageerror", lambda error: page.problems.append(str(error)))
    page.goto(f"{server[0]}/?token={TOKEN}")
    yield page
    context.close()


def _dag(engine: durable.Engine) -> str:
    from durable.dag import Task, Workflow

    def fail() -> None:
        raise RuntimeError("audit found 3 bad rows")

    dag = Workflow(name="nightly-etl", engine=engine)
    dag.add_task(Task(name="extract", func=lambda: [1, 2, 3]))
    dag.add_task(Task(name="clean", dependencies=["extract"], func=lambda: 3))
    dag.add_task(Task(name="enrich", dependencies=["extract"], func=lambda: 3))
    dag.add_task(Task(name="load", dependencies=["clean", "enrich"], func=lambda: "ok"))
    dag.add_task(Task(name="audit", dependencies=["extract"], func=fail))
    dag.add_task(Task(name="publish", dependencies=["load", "audit"], func=lambda: "ok"))
    with pytest.raises(durable.errors.DagRunFailed):
        dag.run(run_id="etl-2026-12-03")
    _dag.keep = dag  # type: ignore[attr-defined]  # the graph page draws its edges
    return engine.list_workflows(name="durable.dag.run")[0].workflow_id


def test_every_page_loads_and_requests_nothing_outside_127_0_0_1(
        engine: durable.Engine, server: tuple[str, durable.Engine], page: Any,
        tmp_path: Path) -> None:
    base = server[0]
    shots = _shots(tmp_path)
    for i in range(4):
        engine.run(flows.leaf, i, workflow_id=f"order-{i}")
    engine.run(flows.retrying, "browser", workflow_id="payment-retry")
    with pytest.raises(durable.errors.WorkflowFailed):
        engine.run(flows.failing, "A-17", workflow_id="checkout-A-17")
    engine.run(flows.parent, 3, workflow_id="batch-7")
    waiting = engine.start(flows.fulfilment, "A-18", workflow_id="fulfilment-A-18")
    wait_until(lambda: waiting.status() == durable.Status.WAITING, what="the approval wait")
    run_id = _dag(engine)
    shots.mkdir(exist_ok=True)

    page.goto(f"{base}/")
    page.wait_for_selector("svg.chart rect.bar.started")
    assert "card declined for A-17" in page.inner_text("main")
    page.screenshot(path=str(shots / "ui-overview.png"), full_page=True)

    page.goto(f"{base}/workflows?status=FAILURE")
    assert page.locator("table.list a", has_text="checkout-A-17").count() == 1

    page.goto(f"{base}/w/fulfilment-A-18")
    page.wait_for_selector("svg.timeline g.call.sleep.ok")
    assert "signal 'approve'" in page.inner_text("p.waiting")
    page.screenshot(path=str(shots / "ui-workflow.png"), full_page=True)

    page.goto(f"{base}/w/{run_id}/graph")
    page.wait_for_selector('svg.graph g.task.failure[data-task="audit"]')
    assert page.locator("svg.graph g.task.success").count() == 4
    assert page.locator('svg.graph g.task.skipped[data-task="publish"]').count() == 1
    page.screenshot(path=str(shots / "ui-graph.png"), full_page=True)

    page.goto(f"{base}/w/batch-7/graph")
    assert page.locator("svg.tree circle").count() == 4
    page.goto(f"{base}/w/payment-retry/inspect")
    assert "Replays cleanly" in page.inner_text("#verdict")
    page.goto(f"{base}/bottlenecks?window=all")
    assert "tests.ui.flows.flaky" in page.inner_text("#retried")
    page.goto(f"{base}/w/checkout-A-17/events")
    assert "workflow.failed" in page.inner_text("table.events")

    assert page.problems == []  # no script error, no Content-Security-Policy violation
    hosts = {urlsplit(url).hostname for url in page.requested}
    assert hosts == {"127.0.0.1"}, page.requested
    assert any(url.endswith("/static/htmx.min.js") for url in page.requested)


def test_a_running_workflows_timeline_grows_without_reload(
        engine: durable.Engine, server: tuple[str, durable.Engine], page: Any) -> None:
    for i in range(3):
        flows.gates[i] = threading.Event()
    handle = engine.start(flows.stepper, 3, workflow_id="stepper-1")
    page.goto(f"{server[0]}/w/stepper-1")
    page.evaluate("window.notReloaded = true")
    assert page.locator("svg.timeline g.call.ok").count() == 0
    page.wait_for_selector("svg.timeline g.call.running")  # the step running now
    for done in (1, 2, 3):
        flows.gates[done - 1].set()
        playwright_api.expect(page.locator("svg.timeline g.call.ok")).to_have_count(
            done, timeout=TIMEOUT_MS)
    assert handle.result(timeout=10) == 3
    page.wait_for_selector('#live[data-status="SUCCESS"]')
    assert page.evaluate("window.notReloaded") is True  # the same document all along
    assert page.problems == []


def test_a_signal_sent_through_the_form_finishes_the_workflow(
        engine: durable.Engine, server: tuple[str, durable.Engine], page: Any) -> None:
    handle = engine.start(flows.approval, "B-1", workflow_id="approval-B-1")
    wait_until(lambda: handle.status() == durable.Status.WAITING, what="the approval wait")
    page.goto(f"{server[0]}/w/approval-B-1")
    form = page.locator("form.signal")
    assert form.locator('input[name="name"]').input_value() == "approve"
    form.locator('input[name="payload"]').fill('{"by": "ann"}')
    form.locator("button").click()
    page.wait_for_selector("p.flash.good")
    page.wait_for_selector('#live[data-status="SUCCESS"]')
    assert "shipped B-1" in page.inner_text("#result")
    assert handle.result(timeout=5) == "shipped B-1 ({'by': 'ann'})"


def test_an_action_without_the_token_is_refused(
        engine: durable.Engine, server: tuple[str, durable.Engine], page: Any) -> None:
    handle = engine.start(flows.approval, "C-1", workflow_id="approval-C-1")
    wait_until(lambda: handle.status() == durable.Status.WAITING, what="the approval wait")
    page.goto(f"{server[0]}/w/approval-C-1")
    page.context.clear_cookies()  # the form is on screen, the token is gone
    with page.expect_response(lambda r: "/do/cancel" in r.url) as answer:
        page.locator("button.cancel").click()
    assert answer.value.status == 403
    assert "needs its token" in page.inner_text("body")
    assert handle.status() == durable.Status.WAITING
    assert server[1].store.workflow("approval-C-1").control is None  # type: ignore[union-attr]
