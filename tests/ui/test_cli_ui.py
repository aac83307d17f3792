"""``durable ui`` as a user starts it: a real process that prints its link."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("uvicorn", reason="the ui extra is not installed")
httpx = pytest.importorskip("httpx")

import durable  # noqa: E402
from durable.ui.bottlenecks import bottleneck_table, most_retried  # noqa: E402
from tests.ui import flows  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_durable_ui_prints_a_token_link_and_serves(engine: durable.Engine, db: str) -> None:
    engine.run(flows.leaf, 1, workflow_id="cli-leaf")
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "durable", "ui", "--db", db, "--port", str(port), "--read-only"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        found = re.search(rf"http://127\.0\.0\.1:{port}/\?token=([\w-]+)", line)
        assert found, line
        deadline = time.monotonic() + 15
        client = httpx.Client(follow_redirects=True)
        while True:
            try:
                assert client.get(f"http://127.0.0.1:{port}/").status_code == 403
                break
            except httpx.ConnectError:
                assert time.monotonic() < deadline, "durable ui did not start listening"
                time.sleep(0.05)
        page = client.get(found.group(0))  # sets the cookie, then redirects to /
        assert page.status_code == 200 and "read-only" in page.text
        listing = client.get(f"http://127.0.0.1:{port}/workflows")
        assert listing.status_code == 200 and "cli-leaf" in listing.text
        client.close()
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(10)


def test_durable_ui_without_a_database_says_so(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "durable", "ui", "--db", str(tmp_path / "none.db")],
        capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 2
    assert "no database at" in result.stderr and not (tmp_path / "none.db").exists()


def test_bottleneck_tables(engine: durable.Engine) -> None:
    from rich.console import Console

    engine.run(flows.retrying, "k-table")
    stats = engine.store.step_stats(0.0, ())
    console = Console(width=160, record=True)
    console.print(bottleneck_table(stats))
    console.print(most_retried(stats))
    text = console.export_text()
    assert "tests.ui.flows.flaky" in text and "most retried steps" in text
