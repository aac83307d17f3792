"""A travel booking saga: book a flight, a hotel and a car; when the car cannot be had,
the bookings already made are cancelled, newest first, each exactly once.

    python examples/travel_saga.py [DB]

Each booking registers its compensation with durable.compensate() right after it
succeeds. The compensations are recorded steps too: if the process dies half-way
through them, a restart finishes the rest without repeating the ones already done.
"""

from __future__ import annotations

import os
import sys
import tempfile

import durable


@durable.step(name="travel.book_flight")
def book_flight(trip: str) -> str:
    print(f"  booked flight for {trip}")
    return f"FL-{trip}"


@durable.step(name="travel.book_hotel")
def book_hotel(trip: str) -> str:
    print(f"  booked hotel for {trip}")
    return f"HO-{trip}"


@durable.step(name="travel.book_car",
              retry=durable.RetryPolicy(max_attempts=3, backoff="fixed", initial_delay=0.1))
def book_car(trip: str) -> str:
    print(f"  trying to book a car for {trip}...")
    raise RuntimeError("no cars left at the airport")


@durable.step(name="travel.cancel_flight")
def cancel_flight(booking: str) -> None:
    print(f"  cancelled flight {booking}")


@durable.step(name="travel.cancel_hotel")
def cancel_hotel(booking: str) -> None:
    print(f"  cancelled hotel {booking}")


@durable.step(name="travel.cancel_car")
def cancel_car(booking: str) -> None:
    print(f"  cancelled car {booking}")


@durable.workflow(name="travel.book_trip")
def book_trip(trip: str) -> dict[str, str]:
    flight = book_flight(trip)
    durable.compensate(cancel_flight, flight)
    hotel = book_hotel(trip)
    durable.compensate(cancel_hotel, hotel)
    car = book_car(trip)  # fails after its retries: the workflow fails, compensations run
    durable.compensate(cancel_car, car)
    return {"flight": flight, "hotel": hotel, "car": car}


def main(db: str) -> None:
    with durable.Engine(db) as engine:
        handle = engine.start(book_trip, "LIS-0412", workflow_id="trip-LIS-0412")
        try:
            print("booked:", handle.result(timeout=30))
        except durable.errors.WorkflowFailed as failed:
            print(f"trip failed: {failed.__cause__}")
        print("status:", handle.status().value)
        print("log:")
        for event in handle.history():
            if event.kind in ("step.completed", "step.failed", "workflow.compensating",
                              "workflow.failed"):
                print(f"  #{event.call:<2} {event.kind:<22} {event.name}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else
         os.path.join(tempfile.mkdtemp(prefix="durable-"), "travel.db"))
