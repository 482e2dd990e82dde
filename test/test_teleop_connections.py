"""The teleop server's connection budget (teleop/connections.py), ROS-free with a given clock."""

from __future__ import annotations

import socket

from picosam3_ros.teleop.connections import BUSY, STREAMING, ConnectionBook


def pair() -> tuple[socket.socket, socket.socket]:
    return socket.socketpair()


def test_a_new_connection_past_the_cap_closes_the_longest_waiting_one():
    book = ConnectionBook(max_connections=3, max_streams=2, control_reserve=1, evict_after_s=1.0)
    ends = [pair() for _ in range(5)]
    first, second, third = (book.open(ends[i][0], now=float(i) * 0.1) for i in range(3))
    assert book.admit(third, control=True, stream=False, now=0.3) and third.state == BUSY
    # Full, and nobody has waited a second yet: no room (the caller answers 503).
    assert book.open(ends[3][0], now=0.5) is None
    # Later the longest-waiting reader (the first) makes room; its socket is shut for reading.
    fourth = book.open(ends[3][0], now=2.0)
    assert fourth is not None and first.cut and not second.cut
    assert ends[0][0].recv(10) == b""  # its thread sees the end of the request at once
    assert book.counts()["open"] == 3 and book.evicted == 1
    # A busy connection (serving a request) is never closed for room.
    book.admit(second, control=True, stream=False, now=2.0)
    book.admit(fourth, control=True, stream=False, now=2.0)
    assert book.open(ends[4][0], now=9.0) is None


def test_streams_have_their_own_cap_and_the_one_longest_without_a_frame_goes():
    book = ConnectionBook(max_connections=10, max_streams=2, control_reserve=0)
    socks = [pair() for _ in range(3)]
    viewers = [book.open(socks[i][0], now=0.0) for i in range(3)]
    assert book.admit(viewers[0], control=False, stream=True, now=1.0)
    assert book.admit(viewers[1], control=False, stream=True, now=2.0)
    book.frame_sent(viewers[0], now=5.0)  # viewer 1 is the one that stalled
    assert book.admit(viewers[2], control=False, stream=True, now=6.0)
    assert viewers[1].cut and not viewers[0].cut and viewers[2].state == STREAMING
    assert book.counts()["streams"] == 2


def test_places_are_kept_for_prompt_edits():
    book = ConnectionBook(max_connections=4, max_streams=4, control_reserve=2)
    conns = [book.open(pair()[0], now=0.0) for _ in range(4)]
    assert book.admit(conns[0], control=False, stream=True, now=0.0)
    assert book.admit(conns[1], control=False, stream=False, now=0.0)
    # Two places serve pages and streams: a third page request is refused, a prompt edit is not.
    assert not book.admit(conns[2], control=False, stream=False, now=0.5)
    assert book.admit(conns[3], control=True, stream=False, now=0.5)
    book.close(conns[1])
    assert book.admit(conns[2], control=False, stream=False, now=0.6)


def test_the_request_deadline_is_for_the_whole_request():
    book = ConnectionBook(request_timeout_s=10.0)
    a, b = pair(), pair()
    slow = book.open(a[0], now=0.0)
    idle = book.open(b[0], now=0.0)
    book.admit(idle, control=True, stream=False, now=0.1)
    book.waiting(idle, now=3.0, new_request=True)  # keep-alive: waiting for its next request
    book.waiting(slow, now=8.0, new_request=False)  # a byte of body now and then changes nothing
    assert book.sweep(now=10.5) == 1 and slow.cut and not idle.cut
    assert book.sweep(now=13.5) == 1 and idle.cut
