"""Run the benchmark scenarios, each in its own subprocess and temp dir, and print a table.

python bench/run.py [--store sqlite|postgres] [--vs-dbos] [--synchronous full|normal]
                    [--only NAME,...] [--repeat N]

With ``--repeat N`` each scenario runs N alternating rounds (durable, DBOS, durable, ...)
and every figure is the median of its rounds. On SQLite the run also measures the floor
this machine gives (the smallest commit Python's sqlite3 makes, bench/sqlite_floor.py)
and prints each throughput goal as a ratio to it, measured in the same run.

With ``--store postgres`` both sides run on the PostgreSQL server of ``--pg`` (default
$DURABLE_BENCH_POSTGRES or postgresql://postgres@127.0.0.1:5432/postgres): durable in a
schema of its own per scenario, DBOS in a database of its own, each dropped afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DBOS_PYTHON = HERE / ".venv-dbos" / "bin" / "python"
SCENARIOS = ["seq10", "long1000", "concurrent200", "replay", "recovery100", "import_open",
             "workers1", "workers2", "workers4", "wakeup"]
PG_DEFAULT = os.environ.get("DURABLE_BENCH_POSTGRES",
                            "postgresql://postgres@127.0.0.1:5432/postgres")
DBOS_SCENARIOS = {"seq10", "long1000", "concurrent200", "recovery100", "import_open"}
TIMEOUT = 300.0


@dataclass(frozen=True)
class Row:
    scenario: str
    key: str
    label: str
    higher_is_better: bool
    target: float | None = None
    target_sync: str | None = None  # the synchronous mode the target is set for; None: any

    def target_text(self) -> str:
        if self.target is None:
            return ""
        value = f"{self.target:,.0f}" if float(self.target).is_integer() else fmt(self.target)
        text = f"{'≥' if self.higher_is_better else '≤'}{value}"
        return f"{text} @{self.target_sync}" if self.target_sync else text

    def met(self, value: float, sync: str) -> bool | None:
        if self.target is None or (self.target_sync and self.target_sync != sync):
            return None
        return value >= self.target if self.higher_is_better else value <= self.target


ROWS = [
    Row("seq10", "ms_per_wf", "ms per 10-step workflow", False, 2.5, "full"),
    Row("long1000", "us_per_step", "µs per step (1000 steps)", False, 40, "normal"),
    Row("concurrent200", "wf_per_s", "workflows/s (200 at once)", True, 1000, "full"),
    Row("replay", "events_per_s", "replayed events/s (median)", True, 200_000),
    Row("replay", "events_per_s_mean", "replayed events/s (mean)", True),
    Row("replay", "cold_events_per_s", "replayed events/s, cold", True),
    Row("recovery100", "seconds", "s to finish 100 after kill -9", False, 0.3),
    Row("import_open", "seconds", "s import + open", False, 0.15),
    Row("import_open", "rss_mb", "MB RSS after open", False),
    Row("workers1", "wf_per_s", "workflows/s, 1 worker process", True),
    Row("workers2", "wf_per_s", "workflows/s, 2 worker processes", True),
    Row("workers4", "wf_per_s", "workflows/s, 4 worker processes", True),
    # The 20 ms goal is PostgreSQL's (NOTIFY); SQLite has no cross-process wake-up and
    # polls (poll_interval 0.05 s), so its target is the old "about 100 ms".
    Row("wakeup", "p50_ms", "ms signal wake-up across processes, p50", False, 100),
    Row("wakeup", "p90_ms", "ms signal wake-up across processes, p90", False),
]


def fmt(v: float) -> str:
    if v >= 1000:
        return f"{v:,.0f}"
    if v >= 100:
        return f"{v:.0f}"
    if v >= 10:
        return f"{v:.1f}"
    return f"{v:.3g}"


def run_side(side: str, scenario: str, sync: str, pg: str = "") -> dict[str, Any] | str:
    """Run one scenario of one side in a fresh temp dir (and on PostgreSQL, a fresh schema
    or database); its metrics, or an error message."""
    if side == "durable":
        cmd = [sys.executable, str(HERE / "durable_side.py"), "--synchronous", sync]
    else:
        cmd = [str(DBOS_PYTHON), str(HERE / "dbos_side.py"), "--synchronous", sync]
    if pg:
        cmd += ["--pg", pg]
    print(f"  {side:8} {scenario:14}", end="", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix=f"bench-{side}-") as tmp:
        try:
            proc = subprocess.run(
                [*cmd, "--scenario", scenario, "--db", tmp],
                capture_output=True,
                text=True,
                timeout=TIMEOUT,
            )
        except subprocess.TimeoutExpired:
            print(" timeout", file=sys.stderr)
            return f"timeout after {TIMEOUT:.0f}s"
        finally:
            if pg:
                drop_pg(pg, side, Path(tmp))
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        print(f" FAILED\n{proc.stderr[-3000:]}", file=sys.stderr)
        return f"exit {proc.returncode}"
    print(f" {time.perf_counter() - t0:6.1f}s", file=sys.stderr)
    result: dict[str, Any] = json.loads(lines[-1])
    return {k: v for k, v in result.items() if k not in ("side", "scenario")}


def median(runs: list[dict[str, Any] | str]) -> dict[str, Any] | str:
    """The median of each metric over the rounds of a scenario; a failed round fails it."""
    failed = [r for r in runs if not isinstance(r, dict)]
    if failed:
        return failed[0]
    done = [r for r in runs if isinstance(r, dict)]
    return {key: statistics.median(float(r[key]) for r in done) for key in done[0]}


def drop_pg(pg: str, side: str, db_dir: Path) -> None:
    """Drop the schema (durable) or database (DBOS) of one run."""
    import psycopg

    sys.path.insert(0, str(HERE))
    from common import pg_name

    name = pg_name(db_dir)
    with psycopg.connect(pg, autocommit=True) as conn:
        if side == "durable":
            conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
        else:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def cell(result: dict[str, Any] | str | None, key: str) -> tuple[str, float | None]:
    if result is None:
        return "n/a", None
    if isinstance(result, str):
        return result, None
    value = float(result[key])
    return fmt(value), value


def table(results: dict[tuple[str, str], dict[str, Any] | str], sync: str, vs: bool,
          store: str = "sqlite") -> None:
    header = ["scenario", "metric", "durable", "target", "DBOS", "durable x faster"]
    body: list[list[str]] = []
    for row in ROWS:
        if ("durable", row.scenario) not in results:
            continue
        d_text, d_val = cell(results[("durable", row.scenario)], row.key)
        o_text, o_val = cell(results.get(("dbos", row.scenario)), row.key)
        met = row.met(d_val, sync) if d_val is not None else None
        target = row.target_text() + {True: " ✓", False: " ✗", None: ""}[met]
        ratio = ""
        if d_val and o_val:
            ratio = f"{(d_val / o_val) if row.higher_is_better else (o_val / d_val):.1f}x"
        cols = [row.scenario, row.label, d_text, target, o_text, ratio]
        body.append(cols if vs else cols[:4])
    if not vs:
        header = header[:4]
    title = f"durable on {store} (synchronous={sync})" + (" vs DBOS" if vs else "")
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
        print(f"\n{title}")
        for r in [header, [("-" * w) for w in widths], *body]:
            print(
                "  ".join(
                    v.ljust(w) if i < 2 else v.rjust(w)
                    for i, (v, w) in enumerate(zip(r, widths, strict=True))
                )
            )
        return
    t = Table(title=title)
    for i, h in enumerate(header):
        t.add_column(h, justify="left" if i < 2 else "right", no_wrap=True)
    for r in body:
        t.add_row(*r)
    console = Console()
    Console(width=max(console.width, 120)).print(t)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--vs-dbos", action="store_true", help="also run DBOS 3.4 on the same store")
    p.add_argument("--store", choices=("sqlite", "postgres"), default="sqlite")
    p.add_argument("--pg", default=PG_DEFAULT, help="the PostgreSQL server (--store postgres)")
    p.add_argument("--synchronous", choices=("full", "normal"), default="full")
    p.add_argument("--only", default="", help=f"comma-separated subset of {','.join(SCENARIOS)}")
    p.add_argument("--json", type=Path, help="also write the raw results to this file")
    p.add_argument("--repeat", type=int, default=1,
                   help="run each scenario N times, the sides alternating, and report the "
                        "median of each figure (the goals of bench/README.md ask for >= 3)")
    args = p.parse_args()
    chosen = [s.strip() for s in args.only.split(",") if s.strip()] or SCENARIOS
    unknown = set(chosen) - set(SCENARIOS)
    if unknown:
        p.error(f"unknown scenario(s): {', '.join(sorted(unknown))}")
    if args.vs_dbos and not DBOS_PYTHON.exists():
        subprocess.run(["bash", str(HERE / "setup_dbos.sh")], check=True)
    pg = args.pg if args.store == "postgres" else ""
    rounds: dict[tuple[str, str], list[dict[str, Any] | str]] = {}
    floors: list[float] = []
    for _ in range(args.repeat):
        if args.store == "sqlite":  # the floor alternates with the scenarios too
            floors.append(floor_us(args.synchronous))
        for scenario in chosen:
            sides = ["durable", "dbos"] if args.vs_dbos and scenario in DBOS_SCENARIOS else [
                "durable"]
            for side in sides:
                rounds.setdefault((side, scenario), []).append(
                    run_side(side, scenario, args.synchronous, pg))
    results = {key: median(runs) for key, runs in rounds.items()}
    table(results, args.synchronous, args.vs_dbos, args.store)
    if floors:
        ratios(results, statistics.median(floors), args.synchronous, args.vs_dbos)
    if args.json:
        raw = [{"side": s, "scenario": n, "result": r} for (s, n), r in results.items()]
        args.json.write_text(json.dumps(raw, indent=2) + "\n")


def floor_us(sync: str) -> float:
    """µs of the smallest commit Python's sqlite3 makes here (one event, WAL), now."""
    sys.path.insert(0, str(HERE))
    from sqlite_floor import COMMITS, commit_us

    with tempfile.TemporaryDirectory(prefix="bench-floor-") as tmp:
        commits = COMMITS if sync == "normal" else COMMITS // 4
        return commit_us(Path(tmp) / "floor.db", sync.upper(), commits)


def ratios(results: dict[tuple[str, str], dict[str, Any] | str], floor: float, sync: str,
           vs: bool) -> None:
    """Issue 16's goals, each a ratio measured in this run (see bench/README.md)."""
    def value(scenario: str, key: str, side: str = "durable") -> float | None:
        found = results.get((side, scenario))
        return float(found[key]) if isinstance(found, dict) else None

    step, seq = value("long1000", "us_per_step"), value("seq10", "ms_per_wf")
    conc = value("concurrent200", "wf_per_s")
    one, two = value("workers1", "wf_per_s"), value("workers2", "wf_per_s")
    lines: list[tuple[str, float | None, str, bool | None]] = [
        ("floor: µs per bare one-event commit", floor, "", None)]
    step_goal = 1.3 if sync == "normal" else 1.1
    if step is not None:
        lines.append(("per step / floor", step / floor, f"≤ {step_goal}",
                      step / floor <= step_goal))
    if seq is not None:
        ratio = seq * 1000 / (12 * floor)
        lines.append(("seq10 / 12 floor commits", ratio, "≤ 1.3", ratio <= 1.3))
    if conc is not None:
        goal = 1000 if sync == "normal" else 800
        lines.append(("200 at once: workflows/s", conc, f"≥ {goal}", conc >= goal))
        if seq is not None and sync == "normal":
            ratio = conc / (1000 / seq)
            lines.append(("200 at once / one after another", ratio, "≥ 2", ratio >= 2))
    if one and two:
        lines.append(("2 worker processes / 1", two / one, "≥ 1.6", two / one >= 1.6))
    for key, label, goal in (("events_per_s", "replay warm: events/s", 300_000),
                             ("cold_events_per_s", "replay cold: events/s", 200_000)):
        replayed = value("replay", key)
        if replayed is not None:
            lines.append((label, replayed, f"≥ {goal:,}", replayed >= goal))
    if vs:
        for row in ROWS:
            d, o = value(row.scenario, row.key), value(row.scenario, row.key, "dbos")
            if d and o and row.scenario in DBOS_SCENARIOS and row.key != "rss_mb":
                times = d / o if row.higher_is_better else o / d
                lines.append((f"{row.scenario} vs DBOS", times, "≥ 10", times >= 10))
    print(f"\nGoals as ratios, measured in this run (synchronous={sync}):")
    for label, number, goal, met in lines:
        shown = "n/a" if number is None else fmt(number)
        mark = {True: "✓", False: "✗", None: ""}[met]
        print(f"  {label:38} {shown:>12}  {goal:>10} {mark}")


if __name__ == "__main__":
    main()
