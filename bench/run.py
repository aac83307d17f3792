"""Run the benchmark scenarios, each in its own subprocess and temp dir, and print a table.

python bench/run.py [--store sqlite|postgres] [--vs-dbos] [--synchronous full|normal]
                    [--only NAME,...]

With ``--store postgres`` both sides run on the PostgreSQL server of ``--pg`` (default
$DURABLE_BENCH_POSTGRES or postgresql://postgres@127.0.0.1:5432/postgres): durable in a
schema of its own per scenario, DBOS in a database of its own, each dropped afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
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
    Row("wakeup", "p50_ms", "ms signal wake-up across processes, p50", False, 20),
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


def best(scenario: str, old: dict[str, Any] | str | None,
         new: dict[str, Any] | str) -> dict[str, Any] | str:
    """The better of two runs of a scenario, by its first metric; a failure loses."""
    if not isinstance(old, dict):
        return new if isinstance(new, dict) or old is None else old
    if not isinstance(new, dict):
        return old
    row = next(r for r in ROWS if r.scenario == scenario)
    better = new[row.key] > old[row.key] if row.higher_is_better else new[row.key] < old[row.key]
    return new if better else old


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
                   help="run each side N times, alternating, and keep its best run: on a "
                        "shared machine, other load only ever slows a run down")
    args = p.parse_args()
    chosen = [s.strip() for s in args.only.split(",") if s.strip()] or SCENARIOS
    unknown = set(chosen) - set(SCENARIOS)
    if unknown:
        p.error(f"unknown scenario(s): {', '.join(sorted(unknown))}")
    if args.vs_dbos and not DBOS_PYTHON.exists():
        subprocess.run(["bash", str(HERE / "setup_dbos.sh")], check=True)
    pg = args.pg if args.store == "postgres" else ""
    results: dict[tuple[str, str], dict[str, Any] | str] = {}
    for scenario in chosen:
        sides = ["durable", "dbos"] if args.vs_dbos and scenario in DBOS_SCENARIOS else [
            "durable"]
        for _ in range(args.repeat):
            for side in sides:
                result = run_side(side, scenario, args.synchronous, pg)
                results[(side, scenario)] = best(scenario, results.get((side, scenario)),
                                                 result)
    table(results, args.synchronous, args.vs_dbos, args.store)
    if args.json:
        raw = [{"side": s, "scenario": n, "result": r} for (s, n), r in results.items()]
        args.json.write_text(json.dumps(raw, indent=2) + "\n")


if __name__ == "__main__":
    main()
