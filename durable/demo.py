"""``durable demo``: a workflow's process is killed with SIGKILL mid-way; a new one resumes it.

An order workflow (reserve, charge, pack, a durable sleep, ship) runs in a child
process. Once the charge is recorded in the log, the parent kills that process with
``kill -9`` and starts a second one on the same SQLite file: opening the engine
finds the workflow's owner dead, recovers it at once, and replays the log, so the
card is not charged again. Then the timeline is read back from the event log.

``python -m durable.demo`` runs the demo; ``python -m durable.demo run --db PATH
--phase N`` is the child process.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import IO

from rich.console import Console
from rich.table import Table
from rich.text import Text

import durable
from durable.errors import DurableError

WORKFLOW_ID = "order-A-17"
#: The file where the steps note each time they really run (a stand-in for the world).
LEDGER_ENV = "DURABLE_DEMO_LEDGER"
_PREFIX = "demo."


class DemoFailed(Exception):
    """The demo could not run to its end."""


def _effect(step: str, message: str, seconds: float) -> str:
    """Do a step's 'work': note it in the ledger, say so, take a moment."""
    ledger = os.environ.get(LEDGER_ENV)
    if ledger:
        with open(ledger, "a") as file:
            file.write(json.dumps({"step": step, "pid": os.getpid(), "at": time.time()}) + "\n")
    print(f"{step}: {message}", flush=True)
    time.sleep(seconds)
    # Ids derived from the step's idempotency key are the same if the step runs again.
    return hashlib.blake2b(durable.step_key().encode(), digest_size=4).hexdigest()


@durable.step(name="demo.reserve_stock")
def reserve_stock(order_id: str, quantity: int) -> str:
    return "rsv-" + _effect("reserve_stock", f"reserving {quantity} mugs for order {order_id}",
                            0.3)


@durable.step(name="demo.charge_card")
def charge_card(order_id: str, cents: int) -> str:
    key = durable.step_key()
    return "ch_" + _effect("charge_card", f"charging ${cents / 100:.2f} "
                           f"(idempotency key {key})", 0.4)


@durable.step(name="demo.pack_box")
def pack_box(order_id: str) -> str:
    return "box-" + _effect("pack_box", f"packing order {order_id} (takes a second)", 0.8)


@durable.step(name="demo.ship")
def ship(parcel: str) -> str:
    return "1Z" + _effect("ship", f"handing {parcel} to the courier", 0.3).upper()


@durable.workflow(name="demo.order")
def order(order_id: str) -> dict[str, str]:
    """Reserve, charge, pack, wait for the courier's pickup slot, ship."""
    reservation = reserve_stock(order_id, 2)
    charge = charge_card(order_id, 4200)
    parcel = pack_box(order_id)
    durable.sleep(1.0)  # the pickup slot: a durable timer, no thread held while it runs
    tracking = ship(parcel)
    return {"order": order_id, "reservation": reservation, "charge": charge,
            "parcel": parcel, "tracking": tracking}


# -- the child process -----------------------------------------------------------


def run_child(db: str, phase: int) -> None:
    """Phase 1 starts the order; phase 2 opens the database, which recovers it."""
    with durable.Engine(db, workers=2, poll_interval=0.02) as engine:
        if phase == 1:
            handle = engine.start(order, "A-17", workflow_id=WORKFLOW_ID)
        else:
            handle = engine.handle(WORKFLOW_ID)
        handle.result(timeout=60)


# -- the parent ------------------------------------------------------------------


def run_demo(db: str = "durable-demo.db", console: Console | None = None) -> int:
    """Run the demo on a fresh database file ``db``.

    Returns:
        The exit code: 0 when it worked, 1 when a demo process failed, 2 when ``db``
        exists and is not an earlier demo's database (it is left untouched).
    """
    console = console or Console(highlight=False)
    try:
        _remove_old_demo(Path(db))
    except DemoFailed as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        with tempfile.TemporaryDirectory(prefix="durable-demo-") as folder:
            _Demo(db, Path(folder) / "ledger.jsonl", console).run()
    except (DemoFailed, DurableError) as error:
        print(f"error: the demo failed: {error}", file=sys.stderr)
        return 1
    return 0


def _remove_old_demo(path: Path) -> None:
    """Delete an earlier demo database at ``path``; refuse to touch anything else.

    Only a durable database (opened read-only, so nothing else is changed) that holds
    the demo's own workflow and no other is replaced; any other file, even an empty
    durable database, is left alone.
    """
    if not path.exists():
        return
    refusal = f"{path} exists and is not a demo database; pass --db NEW_PATH"
    try:
        engine = durable.Engine(path, workers=0, read_only=True)
    except DurableError as error:
        raise DemoFailed(f"{refusal} ({error})") from None
    try:
        names = {info.workflow_id: info.name for info in engine.list_workflows(limit=1000)}
    finally:
        engine.close()
    if any(not name.startswith(_PREFIX) for name in names.values()):
        raise DemoFailed(f"{path} holds workflows other than the demo's; pass --db NEW_PATH")
    if names.get(WORKFLOW_ID) != order.name:  # an empty durable database is not the demo's
        raise DemoFailed(refusal)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


class _Demo:
    def __init__(self, db: str, ledger: Path, console: Console) -> None:
        self.db, self.ledger, self.console = db, ledger, console
        self.env = {**os.environ, LEDGER_ENV: str(ledger), "PYTHONUNBUFFERED": "1"}

    def run(self) -> None:
        console, began = self.console, time.monotonic()
        console.rule("[bold]durable demo: a workflow that survives kill -9")
        console.print(
            "An order workflow runs in a child process:\n"
            "  reserve_stock → charge_card → pack_box → durable.sleep(1 s) → ship\n"
            "That process is killed with SIGKILL once the charge is recorded;\n"
            f"a new process resumes the workflow from the log in [bold]{self.db}[/]."
        )
        # Created here, before the children start, so they never race to create it.
        client = durable.Engine(self.db, workers=0)
        try:
            first = self._spawn(1, "starts workflow " + WORKFLOW_ID)
            killed_at = self._kill_after_charge(client, first)
            second = self._spawn(2, f"opens {self.db}")
            self._finish(second)
            self._timeline(client, first.pid, second.pid, killed_at)
            result = client.result(WORKFLOW_ID, timeout=10)
        finally:
            client.close()
        console.print(f"\n[bold]Result:[/] {json.dumps(result)}")
        self._effects(first.pid)
        console.print(f"\nFinished in {time.monotonic() - began:.1f} s. Look around: "
                      f"[bold]durable history {WORKFLOW_ID} --db {self.db}[/]")

    def _spawn(self, phase: int, what: str) -> _Child:
        process = subprocess.Popen(
            [sys.executable, "-m", "durable.demo", "run", "--db", self.db, "--phase", str(phase)],
            stdout=subprocess.PIPE, text=True, env=self.env,
        )
        self.console.print(f"\n[bold cyan]▶ process {phase}[/] (pid {process.pid}) {what}")
        if phase == 2:
            self.console.print("  its engine finds the owner of the workflow dead, recovers it "
                               "at once\n  and replays the log: recorded steps are not run again")
        return _Child(process, self.console)

    def _kill_after_charge(self, client: durable.Engine, first: _Child) -> float:
        """Wait until the charge is in the log and packing has begun, then SIGKILL process 1."""
        deadline = time.monotonic() + 30
        while not (self._ran("pack_box") and any(
                e.kind == "step.completed" and e.name == "demo.charge_card"
                for e in client.store.events(WORKFLOW_ID))):
            if first.process.poll() is not None:
                raise DemoFailed(f"process 1 exited with code {first.process.returncode} "
                                 "before charging the card")
            if time.monotonic() > deadline:
                first.process.kill()
                raise DemoFailed("process 1 did not charge the card within 30 s")
            time.sleep(0.005)
        killed_at = time.time()
        os.kill(first.pid, signal.SIGKILL)
        first.process.wait()
        first.join()
        row = client.store.workflow(WORKFLOW_ID)
        self.console.print(f"[bold red]✖ kill -9 {first.pid}[/] [red](SIGKILL) while pack_box "
                           "runs; charge_card is already in the log[/]")
        if row is not None:
            owner = f"owned by pid {first.pid}, which" if row.owner else "and nothing"
            self.console.print(f"  the database still says {row.status}, {owner} no longer "
                               "exists")
        return killed_at

    def _ran(self, step: str) -> bool:
        """True once the ledger shows ``step`` started (in any process)."""
        try:
            return f'"step": "{step}"' in self.ledger.read_text()
        except FileNotFoundError:
            return False

    def _finish(self, second: _Child) -> None:
        try:
            code = second.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            second.process.kill()
            raise DemoFailed("process 2 did not finish the workflow within 60 s") from None
        second.join()
        if code != 0:
            raise DemoFailed(f"process 2 exited with code {code}")
        self.console.print(f"  [green]✔ process 2 finished {WORKFLOW_ID}[/]")

    def _timeline(self, client: durable.Engine, first: int, second: int,
                  killed_at: float) -> None:
        events = client.history(WORKFLOW_ID)
        start = events[0].created.timestamp()
        self.console.print()
        table = Table(title=f"Timeline: the event log of {WORKFLOW_ID} in {self.db}",
                      title_justify="left", header_style="bold", box=None, pad_edge=False)
        for column in ("TIME", "PROCESS", "CALL", "EVENT", "NAME", "VALUE"):
            table.add_column(column, justify="right" if column in ("TIME", "CALL") else "left",
                             no_wrap=True, overflow="ellipsis",
                             max_width=34 if column == "VALUE" else None)
        kill_shown = False
        for event in events:
            at = event.created.timestamp()
            if at > killed_at and not kill_shown:
                kill_shown = True
                table.add_row(f"+{killed_at - start:.3f}s", Text("✖ kill -9", style="bold red"),
                              "", Text(f"SIGKILL pid {first}", style="bold red"), "", "")
            process = f"1 · pid {first}" if at < killed_at else f"2 · pid {second}"
            value = "" if event.kind.startswith(("workflow.started", "sleep.")) else \
                json.dumps(event.value)
            if event.kind.startswith("sleep."):
                value = f"due +{event.value['due'] - start:.3f}s"
            style = "dim" if at < killed_at else ""
            table.add_row(f"+{at - start:.3f}s", Text(process, style=style), str(event.call),
                          event.kind, event.name.removeprefix(_PREFIX), value)
        self.console.print(table)

    def _effects(self, first_pid: int) -> None:
        """What really ran, from the steps' ledger: the charge once, the in-flight step twice."""
        runs: dict[str, list[int]] = defaultdict(list)
        for line in self.ledger.read_text().splitlines():
            entry = json.loads(line)
            runs[entry["step"]].append(entry["pid"])
        charges = len(runs["charge_card"])
        self.console.print(
            f"[bold green]charge_card ran {'once' if charges == 1 else f'{charges} times'}"
            "[/]: it was recorded before the kill,\nso process 2 read the charge from the log "
            "instead of charging the card again."
        )
        for step, pids in runs.items():
            if len(pids) > 1:
                self.console.print(
                    f"[yellow]{step} ran {len(pids)} times[/] (pids {', '.join(map(str, pids))}): "
                    f"it was in flight when pid {first_pid} died.\nA step whose result is not "
                    "recorded yet runs again (at least once); durable.step_key() lets it "
                    "deduplicate."
                )


class _Child:
    """A demo child process whose output is shown, line by line, as it comes."""

    def __init__(self, process: subprocess.Popen[str], console: Console) -> None:
        self.process, self.pid, self.console = process, process.pid, console
        assert process.stdout is not None
        self._reader = threading.Thread(target=self._show, args=(process.stdout,), daemon=True)
        self._reader.start()

    def _show(self, stream: IO[str]) -> None:
        for line in stream:
            text = Text(f"  pid {self.pid} │ ", style="dim")
            text.append(line.rstrip("\n"))
            self.console.print(text)

    def join(self) -> None:
        self._reader.join(timeout=5)


def _main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m durable.demo")
    parser.add_argument("mode", nargs="?", choices=["demo", "run"], default="demo")
    parser.add_argument("--db", default="durable-demo.db")
    parser.add_argument("--phase", type=int, choices=[1, 2], default=1)
    options = parser.parse_args(argv)
    if options.mode == "run":
        run_child(options.db, options.phase)
        return 0
    return run_demo(options.db)


if __name__ == "__main__":
    # Run the definitions of the importable module, so names and code are the children's.
    from durable.demo import _main as main

    sys.exit(main(sys.argv[1:]))
