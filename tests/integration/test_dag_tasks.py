"""The task factory: shell commands, HTTP requests and file operations, for real."""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

import durable
from durable.dag import Task, Workflow, tasks
from durable.errors import CommandFailed, DagRunFailed, HttpRequestFailed, InvalidArgument

# -- shell ---------------------------------------------------------------------------


def test_a_shell_task_returns_its_captured_output(engine: durable.Engine) -> None:
    workflow = Workflow("shell", engine=engine)
    script = "import sys; print('out'); print('err', file=sys.stderr)"
    workflow.add_task(tasks.shell("hello", [sys.executable, "-c", script]))
    result = workflow.run()["hello"]
    assert result == {"returncode": 0, "stdout": "out\n", "stderr": "err\n"}


def test_a_non_zero_exit_fails_the_task_with_the_output_in_the_message() -> None:
    with pytest.raises(CommandFailed) as caught:
        tasks.run_shell([sys.executable, "-c",
                         "import sys; print('partial'); sys.exit('bad input')"])
    assert caught.value.returncode == 1
    message = str(caught.value)
    assert "exited with status 1" in message
    assert "stderr: bad input" in message and "stdout: partial" in message


def test_a_shell_timeout_kills_the_command() -> None:
    with pytest.raises(CommandFailed, match="ran past its timeout of 0.2 s and was killed"):
        tasks.run_shell([sys.executable, "-c", "import time; time.sleep(30)"], timeout=0.2)


def test_a_shell_command_can_be_built_from_upstream_results(
    engine: durable.Engine, tmp_path: Path
) -> None:
    data = tmp_path / "data.txt"
    data.write_text("a\nb\nc\n")
    workflow = Workflow("shell-upstream", engine=engine)
    workflow.add_task(Task(name="path", func=lambda: str(data)))
    workflow.add_task(tasks.shell("count", lambda upstream: ["wc", "-l", upstream["path"]],
                                  dependencies=["path"]))
    assert workflow.run()["count"]["stdout"].split()[0] == "3"


def test_a_shell_command_must_be_an_argument_list() -> None:
    with pytest.raises(InvalidArgument, match="argument list"):
        tasks.shell("bad", "ls -l")  # type: ignore[arg-type]


def test_a_failing_shell_task_fails_the_run(engine: durable.Engine) -> None:
    workflow = Workflow("shell-fails", engine=engine)
    workflow.add_task(tasks.shell("false", [sys.executable, "-c", "raise SystemExit(3)"]))
    with pytest.raises(DagRunFailed, match="exited with status 3"):
        workflow.run()


# -- http ----------------------------------------------------------------------------


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        return None

    def _reply(self, status: int, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path == "/missing":
            self._reply(404, {"error": "no such thing"})
        else:
            self._reply(200, {"path": self.path})

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        self._reply(201, {"received": json.loads(self.rfile.read(length))})


@pytest.fixture
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_an_http_task_returns_status_headers_and_parsed_json(
    engine: durable.Engine, server: str
) -> None:
    workflow = Workflow("http", engine=engine)
    workflow.add_task(tasks.http("get", f"{server}/rates"))
    workflow.add_task(tasks.http("post", f"{server}/orders", method="POST",
                                 json=lambda upstream: {"from": upstream["get"]["json"]},
                                 dependencies=["get"]))
    results = workflow.run()
    assert results["get"]["status"] == 200
    assert results["get"]["json"] == {"path": "/rates"}
    assert results["post"]["status"] == 201
    assert results["post"]["json"] == {"received": {"from": {"path": "/rates"}}}


def test_an_http_error_status_is_a_failure(server: str) -> None:
    with pytest.raises(HttpRequestFailed) as caught:
        tasks.http_request(f"{server}/missing")
    assert caught.value.status == 404
    assert "status 404" in str(caught.value) and "no such thing" in str(caught.value)


def test_an_unreachable_server_is_a_failure() -> None:
    with pytest.raises(HttpRequestFailed, match="no response"):
        tasks.http_request("http://127.0.0.1:9/", timeout=2)


# -- files ---------------------------------------------------------------------------


def test_file_tasks_write_read_copy_move_and_delete(
    engine: durable.Engine, tmp_path: Path
) -> None:
    source, copy, moved = tmp_path / "in" / "a.txt", tmp_path / "b.txt", tmp_path / "c.txt"
    workflow = Workflow("files", engine=engine)
    workflow.add_task(Task(name="produce", func=lambda: "hello"))
    workflow.add_task(tasks.write_file("write", source, lambda upstream: upstream["produce"],
                                       dependencies=["produce"]))
    workflow.add_task(tasks.read_file("read", source, dependencies=["write"]))
    workflow.add_task(tasks.copy_file("copy", source, copy, dependencies=["read"]))
    workflow.add_task(tasks.move_file("move", copy, moved, dependencies=["copy"]))
    workflow.add_task(tasks.delete_file("delete", source, dependencies=["move"]))
    results = workflow.run()
    assert results["read"] == "hello"
    assert results["move"] == str(moved) and moved.read_text() == "hello"
    assert results["delete"] is True
    assert not source.exists() and not copy.exists()
    assert list(tmp_path.rglob(".*")) == []  # no temporary file left behind


def test_a_write_of_data_that_is_not_text_is_written_as_json(tmp_path: Path) -> None:
    task = tasks.write_file("w", tmp_path / "out.json", {"rows": 3})
    task.func()
    assert json.loads((tmp_path / "out.json").read_text()) == {"rows": 3}


def test_an_atomic_write_leaves_no_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "data.bin"
    target.write_bytes(b"old")
    tasks.atomic_write(target, b"new")
    assert target.read_bytes() == b"new"
    assert [p.name for p in tmp_path.iterdir()] == ["data.bin"]


def test_a_move_done_before_a_crash_is_not_an_error_when_run_again(tmp_path: Path) -> None:
    source, target = tmp_path / "a", tmp_path / "b"
    source.write_text("x")
    move = tasks.move_file("m", source, target)
    assert move.func() == str(target)
    assert move.func() == str(target)  # the re-run after a crash finds it done
    assert target.read_text() == "x"


def test_deleting_a_missing_file_is_fine_unless_asked_otherwise(tmp_path: Path) -> None:
    assert tasks.delete_file("d", tmp_path / "nothing").func() is False
    with pytest.raises(FileNotFoundError):
        tasks.delete_file("d", tmp_path / "nothing", missing_ok=False).func()
