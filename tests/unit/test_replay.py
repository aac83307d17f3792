"""Replay matching and divergence descriptions: pure, no database."""

from __future__ import annotations

from durable.replay import CallSite, History, Recorded, describe_change, matches


def recorded(call: int, name: str, digest: str = "d", kind: str = "step.completed") -> Recorded:
    return Recorded(call, call, kind, name, digest, "", "json", "null", 0.0)


def site(call: int, name: str, digest: str = "d", family: str = "step") -> CallSite:
    return CallSite(call, family, name, digest, "")


def test_a_call_matches_its_record_by_family_name_and_digest() -> None:
    assert matches(site(1, "charge"), recorded(1, "charge"))
    assert not matches(site(1, "charge", digest="other"), recorded(1, "charge"))
    assert not matches(site(1, "charge", family="value"), recorded(1, "charge"))


def test_retry_events_belong_to_the_step_family() -> None:
    assert matches(site(1, "charge"), recorded(1, "charge", kind="step.retry"))


def test_other_arguments_are_named_as_such() -> None:
    change = describe_change(site(1, "charge", "x"), recorded(1, "charge"), [])
    assert change == "the same call with other arguments"


def test_a_removed_call_is_recognised_when_the_next_record_matches() -> None:
    later = [recorded(2, "ship")]
    change = describe_change(site(1, "ship"), recorded(1, "charge"), later)
    assert "step charge() was removed" in change


def test_an_inserted_call_is_recognised_when_nothing_later_matches() -> None:
    change = describe_change(site(1, "audit"), recorded(1, "charge"), [recorded(2, "ship")])
    assert change.startswith("a call was inserted")


def test_reordered_calls_are_recognised() -> None:
    later = [recorded(2, "ship"), recorded(3, "notify")]
    assert describe_change(site(1, "notify"), recorded(1, "charge"), later) == (
        "calls were reordered"
    )


def test_history_groups_events_by_call_and_skips_the_workflow_itself() -> None:
    events = [
        Recorded(0, 0, "workflow.started", "wf", "", "", "json", "null", 0.0),
        Recorded(1, 1, "step.retry", "a", "d", "", "json", "{}", 0.0),
        Recorded(2, 1, "step.completed", "a", "d", "", "json", "1", 0.0),
        Recorded(3, 2, "value", "now", "d", "", "json", "1.0", 0.0),
    ]
    history = History(events)
    assert [e.kind for e in history.of(1) or []] == ["step.retry", "step.completed"]
    assert history.of(3) is None
    assert [e.call for e in history.first_calls_after(0)] == [1, 2]
    assert (len(history), history.next_position) == (4, 4)


def test_a_float_argument_that_differs_suggests_durable_time_and_random_first() -> None:
    from durable.replay import CallSite, Recorded, describe_change

    recorded = Recorded(3, 1, "step.completed", "charge", "d1", "('A-1', 1733212345.25)",
                        "json", "null", 0.0)
    site = CallSite(1, "step", "charge", "d2", "('A-1', 1733212399.5)")
    change = describe_change(site, recorded, [])
    assert "a float argument differs (1733212345.25 then, 1733212399.5 now)" in change
    assert "durable.time() or durable.random()" in change


def test_a_uuid_argument_that_differs_suggests_durable_uuid4() -> None:
    from durable.replay import CallSite, Recorded, describe_change

    recorded = Recorded(3, 1, "step.completed", "tag", "d1",
                        "[['1b4e28ba-2fa1-11d2-883f-0016d3cca427'], {}]", "json", "null", 0.0)
    site = CallSite(1, "step", "tag", "d2", "[['6fa459ea-ee8a-3ca4-894e-db77e160355e'], {}]")
    assert "durable.uuid4()" in describe_change(site, recorded, [])


def test_other_arguments_that_differ_get_no_such_hint() -> None:
    from durable.replay import CallSite, Recorded, describe_change

    recorded = Recorded(3, 1, "step.completed", "charge", "d1", "('A-1', 2.5)", "json", "n", 0.0)
    site = CallSite(1, "step", "charge", "d2", "('A-2', 2.5)")
    assert describe_change(site, recorded, []) == "the same call with other arguments"


def test_the_error_message_puts_the_recorded_value_advice_before_patched() -> None:
    from durable.errors import NonDeterminismError
    from durable.replay import CallSite, Recorded, describe_change

    recorded = Recorded(3, 1, "step.completed", "charge", "d1", "(0.25,)", "json", "n", 0.0)
    change = describe_change(CallSite(1, "step", "charge", "d2", "(0.75,)"), recorded, [])
    text = str(NonDeterminismError("wf", 1, "step charge(0.25)", "step charge(0.75)", "x:1",
                                   change))
    assert text.index("durable.time()") < text.index("durable.patched()")
