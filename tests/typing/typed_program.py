"""A user program for the type checkers (tests/unit/test_typing.py): the lines marked
``# error:`` must be reported, every other line must pass ``mypy --strict``."""

from __future__ import annotations

import durable


@durable.step
def reserve_stock(sku: str, quantity: int) -> str:
    return f"{sku}:{quantity}"


@durable.step(retry=durable.RetryPolicy(max_attempts=3))
async def fetch_price(sku: str) -> float:
    return 1.5


@durable.workflow
def checkout(order_id: str, cents: int = 100) -> dict[str, str]:
    receipt: str = reserve_stock(order_id, 2)
    future: durable.DurableFuture[str] = durable.submit(reserve_stock, order_id, 3)
    price_later: durable.DurableFuture[float] = durable.submit(fetch_price, order_id)
    return {"receipt": receipt, "more": future.result(), "price": str(price_later.result())}


@durable.workflow(name="typed.async_checkout")
async def async_checkout(sku: str) -> float:
    price: float = await fetch_price(sku)
    return price


def main(engine: durable.Engine) -> None:
    handle: durable.WorkflowHandle[dict[str, str]] = engine.start(checkout, "A-17")
    result: dict[str, str] = handle.result()
    named = engine.start(checkout.options(workflow_id="order-A-17"), "A-17", cents=5)
    also: dict[str, str] = named.result()
    legacy = engine.start(checkout, "A-17", workflow_id="order-A-18")
    still: dict[str, str] = legacy.result()
    price: float = engine.run(async_checkout, "sku-1")
    print(result, also, still, price)

    reserve_stock(1, 2, 3)  # error: too many arguments, wrong type
    reserve_stock("sku", "two")  # error: wrong type
    engine.start(checkout, 17)  # error: wrong type
    engine.start(checkout.options(workflow_id="x"), order=1)  # error: unknown keyword
    wrong: int = engine.start(checkout, "A-17").result()  # error: dict is not int
    bad_price: str = engine.run(async_checkout, "sku-1")  # error: float is not str
    print(wrong, bad_price)
