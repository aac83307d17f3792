"""kill -9 of a process running a DAG, then resume in a new process: finished tasks (and
finished map items) do not run again."""

from __future__ import annotations

import collections
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import durable
from tests.conftest import wait_until

APP = textwrap.dedent('''
    import sys
    import time
    from pathlib import Path

    import durable
    from durable.dag import Task, Workflow, map_task, reduce_task

    db, effects, gate = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])


    def effect(text):
        with effects.open("a") as file:
            file.write(text + "\\n")


    def work(name):
        def run():
            effect(name)
            return name
        return run


    def numbers(a, b):
        effect("numbers")
        return [1, 2, 3]


    def square(n):
        effect(f"item {n}")
        if n == 3:
            while not gate.exists():  # in flight when the process is killed
                time.sleep(0.01)
        return n * n


    def total(squares):
        effect("total")
        return sum(squares)


    workflow = Workflow("crashy", engine=durable.Engine(db, workers=2))
    workflow.add_task(Task(name="a", func=work("a")))
    workflow.add_task(Task(name="b", func=work("b")))
    workflow.add_task(Task(name="numbers", func=numbers, dependencies=["a", "b"]))
    workflow.add_task(map_task("squares", square, over="numbers"))
    workflow.add_task(reduce_task("total", total, over="squares"))
    print("total", workflow.run(run_id="crashy-1", max_workers=4)["total"], flush=True)
    print(workflow.report(), flush=True)
''')


def completed(db: str) -> set[str]:
    with durable.Engine(db, workers=0) as engine:
        try:
            history = engine.history("crashy-1")
        except durable.errors.WorkflowNotFound:
            return set()
    return {f"{e.name}{e.args}" for e in history if e.kind == "step.completed"}


def test_a_dag_killed_mid_run_resumes_without_running_finished_tasks_again(
    tmp_path: Path,
) -> None:
    app, db = tmp_path / "app.py", str(tmp_path / "dag.db")
    effects, gate = tmp_path / "effects", tmp_path / "gate"
    app.write_text(APP)
    command = [sys.executable, str(app), db, str(effects), str(gate)]

    first = subprocess.Popen(command, text=True, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
    finished = {"dag:crashy/a()", "dag:crashy/b()", "dag:crashy/numbers()",
                "dag:crashy/squares(0,)", "dag:crashy/squares(1,)"}
    wait_until(lambda: finished <= completed(db), timeout=30, what="the first tasks recorded")
    wait_until(lambda: effects.exists() and "item 3" in effects.read_text(), timeout=30)
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert first.returncode == -signal.SIGKILL

    gate.touch()
    second = subprocess.run(command, text=True, capture_output=True, timeout=60)
    assert second.returncode == 0, second.stderr
    assert "total 14" in second.stdout
    counts = collections.Counter(effects.read_text().splitlines())
    assert counts == {"a": 1, "b": 1, "numbers": 1, "item 1": 1, "item 2": 1,
                      "item 3": 2, "total": 1}  # only the item in flight ran twice
    assert "not run here: result from the log" in second.stdout

    third = subprocess.run(command, text=True, capture_output=True, timeout=60)
    assert "total 14" in third.stdout
    assert collections.Counter(effects.read_text().splitlines()) == counts
