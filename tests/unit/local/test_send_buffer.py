"""The local gateway's per-connection send buffer: oldest frame first, within its budgets."""
from __future__ import annotations

from ripple.local.connection import SendBuffer


def test_frames_come_out_in_the_order_they_went_in() -> None:
    buffer = SendBuffer(max_bytes=100, max_frames=10)
    for data in (b"a", b"bb", b"ccc"):
        assert buffer.offer(data)
    taken = []
    while buffer:
        taken.append(buffer.peek())
        buffer.pop()
    assert taken == [b"a", b"bb", b"ccc"]
    assert buffer.bytes == 0


def test_a_frame_past_the_byte_budget_is_refused_and_changes_nothing() -> None:
    buffer = SendBuffer(max_bytes=10, max_frames=10)
    assert buffer.offer(b"x" * 6)
    assert buffer.offer(b"x" * 4)  # exactly at the budget
    assert not buffer.offer(b"y")
    assert (len(buffer), buffer.bytes) == (2, 10)


def test_a_frame_past_the_frame_budget_is_refused() -> None:
    buffer = SendBuffer(max_bytes=1000, max_frames=2)
    assert buffer.offer(b"a") and buffer.offer(b"b")
    assert not buffer.offer(b"c")
    assert len(buffer) == 2


def test_a_frame_being_written_counts_until_it_is_popped() -> None:
    buffer = SendBuffer(max_bytes=10, max_frames=10)
    assert buffer.offer(b"x" * 10)
    assert buffer.peek() == b"x" * 10
    assert not buffer.offer(b"y")  # the frame in the writer's hands still holds its bytes
    buffer.pop()
    assert buffer.offer(b"y")
