"""The asker's email is looked up before the ack: a rate-limited directory must not hold the ack, nor ask twice."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tests.slack_support import RigFactory, SlackRig


async def _emailing(make_rig: RigFactory) -> SlackRig:
    rig = await make_rig(admins=("U9",), uppzy_send_email=True)
    rig.fake.add_user("U1", name="ada", email="ada@example.com")
    return rig


async def test_rate_limited_email_lookup_is_not_waited_out_before_the_ack(make_rig: RigFactory) -> None:
    """A 429 from users.info: the question is acked and sent without the email at once (the retry is Slack's
    5 s away), and the next question asks again instead of remembering 'no email' for minutes."""
    rig = await _emailing(make_rig)
    rig.fake.fail_next("users.info", status=429, retry_after=5)
    first = await rig.mention("first")
    envelope = max(rig.fake.event_sent_at, key=rig.fake.event_sent_at.__getitem__)
    await rig.wait_answer(first["ts"])
    await rig.fake.wait_for_ack(envelope)
    assert rig.fake.acks[envelope]["at"] - rig.fake.event_sent_at[envelope] < 0.5  # the core bound is 1 s
    assert "email" not in rig.questions()[0]
    assert len(rig.fake.calls_to("users.info")) == 1
    second = await rig.mention("second", channel="C7")
    await rig.wait_answer(second["ts"])
    assert rig.questions()[1]["email"] == "ada@example.com"


async def test_a_burst_from_one_person_asks_the_directory_once(make_rig: RigFactory) -> None:
    """Five questions from one person at once share one users.info call, and each carries the email."""
    rig = await _emailing(make_rig)
    events = [rig.fake.app_mention_event("U1", f"C{i}", f"question {i}") for i in range(5)]
    for event in events:
        await rig.fake.send_event(event)
    for event in events:
        await rig.wait_answer(event["ts"])
    assert [q.get("email") for q in rig.questions()] == ["ada@example.com"] * 5
    assert len(rig.fake.calls_to("users.info")) == 1
