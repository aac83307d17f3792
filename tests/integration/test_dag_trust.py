"""What the task factory promises about trust (issue 10), against a real local HTTP server,
real processes and real files: http/https only, credentials dropped on a cross-origin
redirect, a total deadline and a size cap, secrets out of the log; shell timeouts kill the
process group and output is capped; file writes keep modes, fsync the directory and do
not follow links."""

from __future__ import annotations

import json
import logging
import os
import signal
import stat
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

import durable
from durable.dag import Task, Workflow, tasks
from durable.errors import CommandFailed, DagRunFailed, HttpRequestFailed, InvalidArgument
from tests.conftest import wait_until

# -- a real server ---------------------------------------------------------------------


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        return None

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None,
              length: bool = True) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if length:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        if parts.path == "/echo":  # the headers this server received
            body = json.dumps({k.lower(): v for k, v in self.headers.items()}).encode()
            self._send(200, body, {"Content-Type": "application/json",
                                   "Set-Cookie": "session=server-secret-cookie"})
        elif parts.path == "/redirect":
            self._send(302, b"", {"Location": query["to"]})
        elif parts.path == "/trickle":  # one byte every 0.25 s: no single read times out
            self.send_response(200)
            self.send_header("Content-Length", "20")
            self.end_headers()
            for _ in range(20):
                self.wfile.write(b"x")
                self.wfile.flush()
                time.sleep(0.25)
        elif parts.path == "/big":
            size = int(query["n"])
            if query.get("length") == "no":  # no Content-Length: the body ends at close
                self.close_connection = True
            self._send(200, b"y" * size, length=query.get("length") != "no")
        else:
            self._send(404, b"no such thing")


def _serve() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def server() -> Iterator[str]:
    yield from _serve()


@pytest.fixture
def other() -> Iterator[str]:
    """A second server: another port is another origin."""
    yield from _serve()


# -- http: schemes -----------------------------------------------------------------------


def test_an_http_task_refuses_a_file_url_when_it_is_defined() -> None:
    with pytest.raises(InvalidArgument, match=r"scheme 'file'.*only http:// and https://"):
        tasks.http("local", "file:///etc/hostname")


def test_an_http_task_refuses_a_file_url_built_at_run_time(engine: durable.Engine) -> None:
    workflow = Workflow("file-url", engine=engine)
    workflow.add_task(tasks.http("local", lambda upstream: "file:///etc/hostname"))
    with pytest.raises(DagRunFailed, match="only http:// and https://"):
        workflow.run()
    assert isinstance(workflow["local"].error, InvalidArgument)


def test_an_http_task_does_not_follow_a_redirect_to_another_scheme(server: str) -> None:
    with pytest.raises(InvalidArgument, match="scheme 'ftp'"):
        tasks.http_request(f"{server}/redirect?to=ftp://127.0.0.1/secret.txt")


# -- http: credentials and redirects -------------------------------------------------------

SECRET_HEADERS = {"Authorization": "Bearer header-secret-1", "Cookie": "sid=cookie-secret-2"}


def test_credentials_are_dropped_on_a_redirect_to_another_origin(
    server: str, other: str
) -> None:
    url = f"{server}/redirect?to={other}/echo"
    received = tasks.http_request(url, headers=SECRET_HEADERS)["json"]
    assert "authorization" not in received and "cookie" not in received
    assert received["host"] == other.removeprefix("http://")


def test_credentials_are_kept_on_a_redirect_within_the_origin(server: str) -> None:
    received = tasks.http_request(f"{server}/redirect?to=/echo", headers=SECRET_HEADERS)["json"]
    assert received["authorization"] == "Bearer header-secret-1"
    assert received["cookie"] == "sid=cookie-secret-2"


def test_url_credentials_go_as_basic_auth_and_not_to_another_origin(
    server: str, other: str
) -> None:
    with_user = server.replace("http://", "http://alice:url-secret-3@")
    direct = tasks.http_request(f"{with_user}/echo")["json"]
    assert direct["authorization"] == "Basic YWxpY2U6dXJsLXNlY3JldC0z"  # alice:url-secret-3
    moved = tasks.http_request(f"{with_user}/redirect?to={other}/echo")["json"]
    assert "authorization" not in moved


# -- http: deadline and size -----------------------------------------------------------


def test_the_timeout_bounds_the_whole_request(server: str) -> None:
    started = time.monotonic()
    with pytest.raises(HttpRequestFailed, match="past the total timeout of 1 s"):
        tasks.http_request(f"{server}/trickle", timeout=1)
    assert time.monotonic() - started < 2.0  # each read alone was well within 1 s


def test_the_deadline_also_spans_redirects(server: str) -> None:
    hop = f"{server}/trickle"
    for _ in range(3):
        hop = f"{server}/redirect?to={hop}"
    started = time.monotonic()
    with pytest.raises(HttpRequestFailed, match="total timeout"):
        tasks.http_request(hop, timeout=0.5)
    assert time.monotonic() - started < 1.5


@pytest.mark.parametrize("length", ["yes", "no"])
def test_a_body_over_max_bytes_fails_the_task(server: str, length: str) -> None:
    url = f"{server}/big?n=5000&length={length}"
    assert len(tasks.http_request(url, max_bytes=5000)["text"]) == 5000
    with pytest.raises(HttpRequestFailed, match="over max_bytes=4999; raise max_bytes="):
        tasks.http_request(url, max_bytes=4999)


def test_the_default_size_cap_is_ten_mebibytes_and_must_be_positive() -> None:
    assert tasks.MAX_RESPONSE_BYTES == 10 * 1024 * 1024
    with pytest.raises(InvalidArgument, match="max_bytes must be an int >= 1"):
        tasks.http("h", "http://127.0.0.1/", max_bytes=0)


# -- http: secrets stay out of the log ---------------------------------------------------


def test_secrets_stay_out_of_the_recorded_run_errors_and_logs(
    engine: durable.Engine, db: str, server: str, caplog: pytest.LogCaptureFixture
) -> None:
    secrets = ["header-secret-1", "cookie-secret-2", "url-secret-3", "query-secret-4",
               "sig-secret-5"]
    with_user = server.replace("http://", "http://alice:url-secret-3@")
    url = f"{with_user}/missing?page=2&api_key=query-secret-4&X-Amz-Signature=sig-secret-5"
    workflow = Workflow("secrets", engine=engine)
    workflow.add_task(tasks.http("call", url, headers=SECRET_HEADERS))
    with caplog.at_level(logging.DEBUG, logger="durable"), pytest.raises(DagRunFailed) as caught:
        workflow.run(run_id="secrets-1")
    error = workflow["call"].error
    assert isinstance(error, HttpRequestFailed) and error.status == 404
    shown = f"{caught.value} {error} {error.url}"
    assert "page=2" in shown and "api_key=***" in shown and "***@127.0.0.1" in shown
    recorded = " ".join(repr(event) for event in engine.history("secrets-1"))
    stored = b"".join(Path(path).read_bytes() for path in (db, f"{db}-wal")
                      if Path(path).exists())
    logged = caplog.text
    assert "GET" in logged  # the request was logged, redacted
    for secret in secrets:
        for where, text in (("error", shown), ("history", recorded), ("log", logged)):
            assert secret not in text, f"{secret} in the {where}"
        assert secret.encode() not in stored, f"{secret} in the database file"


def test_a_recorded_response_shows_set_cookie_masked(server: str) -> None:
    headers = tasks.http_request(f"{server}/echo")["headers"]
    assert headers["Set-Cookie"] == "***"


# -- shell ---------------------------------------------------------------------------


def _dead(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as status:
            return status.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_a_shell_timeout_kills_grandchildren_too(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    started = time.monotonic()
    with pytest.raises(CommandFailed, match="ran past its timeout of 0.5 s"):
        tasks.run_shell(["sh", "-c", f"sleep 30 & echo $! > {pidfile}; wait"], timeout=0.5)
    assert time.monotonic() - started < 2.0
    grandchild = int(pidfile.read_text())
    wait_until(lambda: _dead(grandchild), timeout=5, what="the grandchild to be killed")


def test_a_process_that_left_the_group_does_not_stretch_the_timeout(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    # The escaped process holds stdout open for 4 s: reading until EOF would wait for it.
    script = f"setsid sh -c 'echo $$ > {pidfile}; exec sleep 4' & wait"
    started = time.monotonic()
    try:
        with pytest.raises(CommandFailed, match="timeout"):
            tasks.run_shell(["sh", "-c", script], timeout=0.5)
        assert time.monotonic() - started < 2.5
    finally:
        wait_until(pidfile.exists, timeout=5, what="the escaped process's pid")
        pid = int(pidfile.read_text())
        if not _dead(pid):
            os.kill(pid, signal.SIGKILL)


def test_shell_output_is_capped_keeping_the_tail() -> None:
    script = "import sys; sys.stdout.write('a' * 300000 + 'THE END'); sys.stderr.write('e' * 5000)"
    result = tasks.run_shell([sys.executable, "-c", script], max_output=1000)
    stdout, stderr = result["stdout"], result["stderr"]
    assert stdout.startswith("[durable: 299007 earlier bytes cut, output over max_output=1000]")
    assert stdout.endswith("THE END") and len(stdout) < 1100
    assert stderr.endswith("e" * 1000) and "4000 earlier bytes cut" in stderr


def test_a_failed_command_records_only_the_capped_output_and_argv(
    engine: durable.Engine
) -> None:
    script = "import sys; sys.stderr.write('x' * 200000 + 'why'); sys.exit(2)"
    workflow = Workflow("shell-cap", engine=engine)
    workflow.add_task(tasks.shell("big", [sys.executable, "-c", script, "z" * 10000],
                                  max_output=500))
    with pytest.raises(DagRunFailed, match="exited with status 2"):
        workflow.run(run_id="cap-1")
    error = workflow["big"].error
    assert isinstance(error, CommandFailed)
    assert len(error.stderr) < 600 and error.stderr.endswith("why")
    assert "chars cut" in str(error) and len(str(error)) < 5000
    recorded = " ".join(repr(event) for event in engine.history("cap-1"))
    assert "x" * 1000 not in recorded and "z" * 1000 not in recorded


def test_the_default_output_cap_is_one_mebibyte() -> None:
    assert tasks.MAX_OUTPUT_BYTES == 1024 * 1024


def test_a_shell_task_feeds_its_input() -> None:
    script = "import sys; data = sys.stdin.read(); print(len(data))"
    result = tasks.run_shell([sys.executable, "-c", script], input="q" * 300000)
    assert result["stdout"].strip() == "300000"


def test_a_command_function_must_return_an_argument_list() -> None:
    task = tasks.shell("built", lambda upstream: "ls -l")
    with pytest.raises(InvalidArgument, match=r"returned 'ls -l'; it must return a non-empty "
                                              r"argument list"):
        task.func()


def test_a_command_function_returning_a_list_runs_it(engine: durable.Engine) -> None:
    workflow = Workflow("built-list", engine=engine)
    workflow.add_task(Task(name="word", func=lambda: "hi"))
    workflow.add_task(tasks.shell("echo", lambda upstream: ["echo", upstream["word"]],
                                  dependencies=["word"]))
    assert workflow.run()["echo"]["stdout"] == "hi\n"


# -- files ---------------------------------------------------------------------------


def test_an_atomic_write_keeps_the_existing_files_mode(tmp_path: Path) -> None:
    target = tmp_path / "shared.txt"
    target.write_text("old")
    target.chmod(0o644)
    tasks.write_file("w", target, "new").func()
    assert target.read_text() == "new"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644


def test_an_atomic_write_fsyncs_the_directory_after_the_rename(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    steps: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        steps.append("fsync-dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "fsync-file")
        real_fsync(fd)

    def replace(src: str, dst: str) -> None:
        steps.append("rename")
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    tasks.atomic_write(tmp_path / "a.txt", "data")
    assert steps == ["fsync-file", "rename", "fsync-dir"]


def test_a_non_atomic_write_refuses_to_follow_a_symlink(tmp_path: Path) -> None:
    real = tmp_path / "real.txt"
    real.write_text("keep me")
    link = tmp_path / "link.txt"
    link.symlink_to(real)
    with pytest.raises(InvalidArgument, match="is a symbolic link; a non-atomic write"):
        tasks.write_file("w", link, "overwritten", atomic=False).func()
    assert real.read_text() == "keep me"


def test_a_non_atomic_write_writes_a_plain_file(tmp_path: Path) -> None:
    target = tmp_path / "plain.txt"
    write: Callable[..., str] = tasks.write_file("w", target, "héllo", atomic=False).func
    assert write() == str(target)
    assert target.read_text(encoding="utf-8") == "héllo"
