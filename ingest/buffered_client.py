"""A paho MQTT client that reads the socket in 64-KiB chunks instead of per packet field,
and acknowledges a batch of QoS 1 messages in one write.

Why: paho 2.x reads every packet with at least three ``recv`` calls (the command byte,
each byte of the remaining length, the body), and returns to ``select`` after each
packet. A device sending one JSON reading per message makes that four system calls and a
trip through paho's loop per reading: a py-spy profile of ingest on that load put paho's
socket loop (``_loop``, ``_sock_recv``, ``select``) at ~45 % of the process.

Here ``_sock_recv`` serves packets out of one buffer filled by a single large ``recv``,
and ``loop_read`` keeps parsing while that buffer holds bytes, so a burst of messages costs
one ``select`` and one ``recv``. Everything else (packet parsing, acks, reconnects, TLS,
websockets) stays paho's: the buffer is emptied whenever paho closes its socket.

Acknowledgements: paho's ``ack()`` queues one 4-byte PUBACK, wakes its network thread
through a socket pair and sends it with a system call of its own: three system calls per
message. :meth:`BufferedClient.puback_many` queues the PUBACKs of a batch as one packet.

Checked against paho-mqtt 2.2 (``Client._sock_recv``, ``loop_read``, ``_sock_close``,
``_packet_queue``);
``tests/test_ingest_buffered_client.py`` drives it through a real broker.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any

import paho.mqtt.client as mqtt

#: bytes asked of the socket per read: a few hundred small publishes
READ_CHUNK = 64 * 1024
_PUBACK = struct.Struct("!BBH")
_PUBACK_BYTE = mqtt.PUBACK  # 0x40


class BufferedClient(mqtt.Client):
    """:class:`paho.mqtt.client.Client` with buffered socket reads (see the module)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._rbuf = b""
        self._rpos = 0
        self._draining = False  # finishing the bytes of one chunk: no new chunk

    def _sock_recv(self, bufsize: int) -> bytes:
        avail = len(self._rbuf) - self._rpos
        if avail <= 0 and self._draining:
            # the tail of a packet that straddles the chunk: exactly what paho asks for, so
            # the drain ends with this packet and paho's loop gets its turn (see loop_read)
            return super()._sock_recv(bufsize)
        if avail <= 0:
            # paho's own read: its SSL and missing-socket handling, BlockingIOError when
            # nothing is there (paho then keeps the partial packet for the next call)
            data = super()._sock_recv(max(bufsize, READ_CHUNK))
            if len(data) <= bufsize:
                self._rbuf, self._rpos = b"", 0
                return data  # includes b"": the connection is closed
            self._rbuf, self._rpos = data, 0
            avail = len(data)
        n = min(bufsize, avail)
        out = self._rbuf[self._rpos:self._rpos + n]
        self._rpos += n
        if self._rpos >= len(self._rbuf):
            self._rbuf, self._rpos = b"", 0
        return out

    def loop_read(self, max_packets: int = 1) -> mqtt.MQTTErrorCode:
        """paho's ``loop_read``, repeated while buffered bytes remain: ``select`` does not
        see them (they are no longer in the socket).

        About one chunk of new bytes per call: once the first packet is complete, a
        packet that straddles the buffer's end is finished with reads of exactly its
        size, not with a new chunk. Refilling instead kept this
        loop reading for as long as the broker had more to send, and under a sustained
        flood paho's loop never got back to writing: no PUBACK and no PINGREQ left for
        45 s, mosquitto dropped ingest for an exceeded keep-alive and redelivered every
        unacknowledged message (a live full-speed replay: 908,000 duplicate readings)."""
        rc = super().loop_read(max_packets)
        self._draining = True
        try:
            while rc == mqtt.MQTT_ERR_SUCCESS and self._rpos < len(self._rbuf) \
                    and self._sock is not None:
                rc = super().loop_read(max_packets)
        finally:
            self._draining = False
        return rc

    def puback_many(self, mids: Sequence[int]) -> mqtt.MQTTErrorCode:
        """Acknowledge these QoS 1 messages (manual acks), in this order, in one write.
        The bytes are exactly those of one ``ack(mid, 1)`` per message: a PUBACK is the
        same 4 bytes in MQTT 3.1.1 and, with the success reason left out, in MQTT 5."""
        if not mids:
            return mqtt.MQTT_ERR_SUCCESS
        queue = getattr(self, "_packet_queue", None)
        if queue is None:  # a paho without the internal this relies on: its own acks
            rc = mqtt.MQTT_ERR_SUCCESS
            for mid in mids:
                rc = self.ack(mid, 1) or rc
            return rc
        packet = b"".join([_PUBACK.pack(_PUBACK_BYTE, 2, mid) for mid in mids])
        return queue(_PUBACK_BYTE, packet, 0, 1)

    def _sock_close(self) -> None:
        # bytes of a dead connection must never be parsed as the start of the next one
        self._rbuf, self._rpos = b"", 0
        super()._sock_close()
