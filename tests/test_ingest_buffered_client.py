"""Ingest's buffered paho client against the real broker: bursts of small messages, a
message larger than one socket read, and a reconnect in the middle, all delivered intact
and in order (ingest/buffered_client.py)."""

from __future__ import annotations

import threading
import time

import paho.mqtt.client as mqtt
import pytest

from urbanbrain.ingest.buffered_client import READ_CHUNK, BufferedClient


def _subscriber(stack, topic: str, got: list[bytes], ready: threading.Event,
                client_id: str) -> BufferedClient:
    c = BufferedClient(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                       clean_session=False, protocol=mqtt.MQTTv311)
    c.username_pw_set(*stack.mqtt_login("ingest"))
    lock = threading.Lock()

    def on_connect(client, userdata, flags, rc, props):  # noqa: ANN001
        client.subscribe(topic, qos=1)

    def on_subscribe(client, userdata, mid, rcs, props):  # noqa: ANN001
        ready.set()

    def on_message(client, userdata, msg):  # noqa: ANN001
        with lock:
            got.append(msg.payload)

    c.on_connect, c.on_subscribe, c.on_message = on_connect, on_subscribe, on_message
    c.connect("127.0.0.1", stack.mqtt.port)
    c.loop_start()
    return c


def _publish(stack, topic: str, payloads: list[bytes]) -> None:
    p = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    p.username_pw_set(*stack.mqtt_login("simulator"))
    p.max_inflight_messages_set(1000)
    p.connect("127.0.0.1", stack.mqtt.port)
    p.loop_start()
    infos = [p.publish(topic, body, qos=1) for body in payloads]
    for i in infos:
        i.wait_for_publish(30)
    p.disconnect()
    p.loop_stop()


def _wait(got: list[bytes], n: int, timeout: float = 30) -> None:
    end = time.monotonic() + timeout
    while len(got) < n and time.monotonic() < end:
        time.sleep(0.05)


@pytest.mark.servers
def test_bursts_and_a_message_larger_than_a_read_arrive_intact(stack, run_id: str) -> None:
    topic = f"city/t{run_id}/traffic/loop/buffered"
    big = bytes(range(256)) * ((3 * READ_CHUNK) // 256 + 7)  # spans four socket reads
    payloads = [f'{{"i":{i}}}'.encode() for i in range(3000)] + [big] + \
               [f'{{"j":{i}}}'.encode() for i in range(3000)]
    got: list[bytes] = []
    ready = threading.Event()
    sub = _subscriber(stack, topic, got, ready, f"buf-{run_id}")
    try:
        assert ready.wait(10)
        _publish(stack, topic, payloads)
        _wait(got, len(payloads))
        assert got == payloads
    finally:
        sub.disconnect()
        sub.loop_stop()


@pytest.mark.servers
def test_a_reconnect_mid_stream_parses_the_new_connection_from_its_first_byte(
        stack, run_id: str) -> None:
    """Buffered bytes of the old connection are dropped at its close: the persistent session
    redelivers what was not acknowledged, and nothing is parsed out of stale bytes."""
    topic = f"city/t{run_id}/traffic/loop/reconnect"
    payloads = [f'{{"k":{i},"pad":"{"x" * (i % 300)}"}}'.encode() for i in range(6000)]
    got: list[bytes] = []
    ready = threading.Event()
    sub = _subscriber(stack, topic, got, ready, f"bufr-{run_id}")
    try:
        assert ready.wait(10)
        pub = threading.Thread(target=_publish, args=(stack, topic, payloads))
        pub.start()
        _wait(got, 500)
        sub.reconnect()  # closes the socket (and the buffer) with messages in flight
        pub.join(60)
        _wait(got, len(payloads))
        time.sleep(0.5)  # redeliveries of the reconnect, if any, have arrived
        # QoS 1 is at least once: a message may come twice, but each is whole and all came
        assert set(got) == set(payloads)
        assert all(p in set(payloads) for p in got)
    finally:
        sub.disconnect()
        sub.loop_stop()


def _client_on(sock) -> BufferedClient:  # noqa: ANN001
    c = BufferedClient(mqtt.CallbackAPIVersion.VERSION2, client_id="unit")
    sock.setblocking(False)
    c._sock = sock  # the socket paho would have connected
    return c


def test_reads_serve_the_stream_in_paho_sized_pieces() -> None:
    """Over a real socket pair: whatever sizes paho asks for, the bytes come back in stream
    order, never more than asked, and an empty socket is paho's BlockingIOError."""
    import socket

    a, b = socket.socketpair()
    c = _client_on(a)
    stream = bytes(i % 251 for i in range(3 * READ_CHUNK + 1234))
    b.sendall(stream[:READ_CHUNK + 10])
    got = bytearray()
    sizes = [1, 1, 7, 300, 1, 2, 65_000, 5]
    for n in sizes * 3:
        try:
            piece = c._sock_recv(n)
        except BlockingIOError:
            break
        assert 0 < len(piece) <= n
        got += piece
    b.sendall(stream[READ_CHUNK + 10:])
    while len(got) < len(stream):
        try:
            got += c._sock_recv(4096)
        except BlockingIOError:
            time.sleep(0.01)
    assert bytes(got) == stream
    with pytest.raises(BlockingIOError):
        c._sock_recv(1)
    a.close()
    b.close()


def test_closing_drops_the_bytes_buffered_from_the_old_connection() -> None:
    import socket

    a, b = socket.socketpair()
    c = _client_on(a)
    b.sendall(b"old connection: half a packet")
    assert c._sock_recv(1) == b"o"  # one read of the socket buffered the rest
    c._sock_close()
    a2, b2 = socket.socketpair()
    c._sock = a2
    a2.setblocking(False)
    b2.sendall(b"\x20\x02\x00\x00")  # the new connection's CONNACK
    assert c._sock_recv(1) == b"\x20"
    assert c._sock_recv(3) == b"\x02\x00\x00"
    for s in (b, a2, b2):
        s.close()


def _manual(stack, topic: str, client_id: str, got: list, ready: threading.Event
            ) -> BufferedClient:
    c = BufferedClient(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                       clean_session=False, protocol=mqtt.MQTTv311, manual_ack=True)
    c.username_pw_set(*stack.mqtt_login("ingest"))
    c.on_connect = lambda cl, u, f, rc, p: cl.subscribe(topic, qos=1)
    c.on_subscribe = lambda cl, u, mid, rcs, p: ready.set()
    c.on_message = lambda cl, u, msg: got.append(msg)
    c.connect("127.0.0.1", stack.mqtt.port)
    c.loop_start()
    return c


@pytest.mark.servers
@pytest.mark.parametrize("acked", [True, False])
def test_one_write_of_pubacks_acknowledges_every_message(stack, run_id: str,
                                                         acked: bool) -> None:
    """Messages acknowledged with ``puback_many`` are not redelivered to the persistent
    session; unacknowledged ones are (the control: the test sees a missing ack)."""
    topic = f"city/t{run_id}/water/main/acks"
    cid = f"acks-{run_id}-{acked}"
    got: list = []
    ready = threading.Event()
    c = _manual(stack, topic, cid, got, ready)
    assert ready.wait(10)
    payloads = [f'{{"n":{i}}}'.encode() for i in range(500)]
    _publish(stack, topic, payloads)
    _wait(got, len(payloads))
    assert [m.payload for m in got] == payloads
    if acked:
        c.puback_many([m.mid for m in got])
    time.sleep(0.5)  # the acks on the wire
    c.disconnect()
    c.loop_stop()
    again: list = []
    ready2 = threading.Event()
    c2 = _manual(stack, topic, cid, again, ready2)
    try:
        assert ready2.wait(10)
        _wait(again, 10**9 if acked else len(payloads), timeout=3 if acked else 30)
        if acked:
            assert again == []
        else:
            assert {m.payload for m in again} == set(payloads)
    finally:
        c2.disconnect()
        c2.loop_stop()


def test_pubacks_fall_back_to_one_ack_each_without_the_paho_internal(monkeypatch) -> None:
    """Should a paho release rename ``_packet_queue``, acknowledgements still go out, one
    ``ack()`` each, instead of ingest failing at its first batch."""
    c = BufferedClient(mqtt.CallbackAPIVersion.VERSION2, client_id="unit", manual_ack=True)
    sent: list[tuple[int, int]] = []
    monkeypatch.setattr(c, "_packet_queue", None)
    monkeypatch.setattr(c, "ack", lambda mid, qos: sent.append((mid, qos)) or 0)
    assert c.puback_many([3, 1, 2]) == 0
    assert sent == [(3, 1), (1, 1), (2, 1)]


@pytest.mark.servers
def test_a_flood_leaves_the_loop_after_one_chunk_so_acks_and_pings_go_out(
        stack, run_id: str) -> None:
    """One ``loop_read`` takes at most one chunk of new bytes from the socket (plus the
    tail of the packet that straddles it), however much more the broker has sent. It
    once went on refilling while the socket had data: under a sustained flood paho never
    got back to writing PUBACKs and PINGREQs, and mosquitto dropped ingest for an
    exceeded keep-alive, redelivering everything unacknowledged."""
    topic = f"city/t{run_id}/power/substation/flood"
    size = 1000
    payloads = [(f"{i:06d}" + "x" * (size - 6)).encode() for i in range(400)]
    got: list[bytes] = []
    sub = BufferedClient(mqtt.CallbackAPIVersion.VERSION2, client_id=f"flood-{run_id}",
                         protocol=mqtt.MQTTv311)
    sub.username_pw_set(*stack.mqtt_login("ingest"))
    subscribed = threading.Event()
    sub.on_connect = lambda cl, u, f, rc, p: cl.subscribe(topic, qos=0)
    sub.on_subscribe = lambda cl, u, mid, rcs, p: subscribed.set()
    sub.on_message = lambda cl, u, msg: got.append(msg.payload)
    sub.connect("127.0.0.1", stack.mqtt.port)
    try:
        end = time.monotonic() + 10
        while not subscribed.is_set() and time.monotonic() < end:
            sub.loop(timeout=0.1)  # this test drives the network loop itself
        assert subscribed.is_set()
        _publish(stack, topic, payloads)
        time.sleep(0.5)  # the broker has pushed what the socket holds (> one chunk)
        sub.loop_read()
        per_chunk = READ_CHUNK // (size + len(topic) + 4) + 1
        assert 0 < len(got) <= per_chunk, (len(got), per_chunk)
        end = time.monotonic() + 20
        while len(got) < len(payloads) and time.monotonic() < end:
            sub.loop(timeout=0.1)
        assert got == payloads  # nothing lost or reordered by the shorter reads
    finally:
        sub.disconnect()
