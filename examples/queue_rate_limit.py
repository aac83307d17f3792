"""A queue with a rate limit and a concurrency limit: call a rate-limited API politely.

    python examples/queue_rate_limit.py [DB]

Twelve emails are enqueued at once on a queue that allows at most 4 sends per second
(across every process on the database) and at most 2 at a time. A VIP email jumps the
queue with a lower priority number, and a duplicate (the same dedup_id while the first
is still queued) is refused.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import durable

emails = durable.Queue("emails", concurrency=2, rate_limit=(4, 1.0))
BEGAN = time.time()


@durable.step
def send(address: str) -> str:
    print(f"  t={time.time() - BEGAN:4.1f}s  sending to {address}", flush=True)
    time.sleep(0.05)  # the mail API call
    return f"sent:{address}"


@durable.workflow
def send_email(address: str) -> str:
    return send(address)


def main(db: str) -> None:
    # Everything is enqueued first, by a client (no workers), so that the VIP's priority
    # decides the order rather than which start a worker happened to see first.
    with durable.Engine(db, workers=0) as client:
        handles = client.start_many(send_email, [f"user{i}@example.com" for i in range(12)],
                                    queue=emails)
        vip = client.start(send_email, "vip@example.com", queue=emails, priority=-1,
                           dedup_id="vip")
        try:
            client.start(send_email, "vip@example.com", queue=emails, dedup_id="vip")
        except durable.errors.DuplicateWorkflow as error:
            print(f"refused: {error}")
    with durable.Engine(db, workers=8) as engine:
        results = [engine.handle(h.workflow_id).result(timeout=60) for h in [vip, *handles]]
        took = time.time() - BEGAN
        print(f"{len(results)} emails sent in {took:.1f} s (4 per second at most)")


if __name__ == "__main__":
    if len(sys.argv) > 1:
        main(sys.argv[1])
    else:
        with tempfile.TemporaryDirectory() as folder:
            main(str(Path(folder) / "emails.db"))
