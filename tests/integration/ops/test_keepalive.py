#!/usr/bin/python3
"""Keepalive: entd pings idle connections and drops the peers that stop answering (ops suite).

A sidecar's peer can vanish without a FIN (a frozen container, a cut network): the keepalive
settings make entd find out. The peer here is a raw HTTP/2 connection over a plain socket, so
the test sees the frames themselves and decides whether PINGs are answered:

- a peer that never answers is pinged after keepalive_time_ms and the connection is closed
  (GOAWAY, then EOF) once keepalive_timeout_ms has passed without the ACK;
- a peer that answers is pinged again and again and stays connected;
- without keepalive_permit_without_calls, a connection with no call is not pinged at all.

Only presence and order are asserted; the waits are generous bounds, never measurements.
"""
import socket
import struct
import time
import unittest

import ops  # first: it sets up grpcio's environment before the import

CONFIG = """
db:
  path: {{db}}
threads: 1
listeners:
  - address: 127.0.0.1:{{probe}}
limits:
  keepalive_time_ms: 1s
  keepalive_timeout_ms: {timeout}
  keepalive_permit_without_calls: {permit}
"""

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
SETTINGS, PING, GOAWAY = 0x4, 0x6, 0x7
ACK = 0x1


def frame(ftype, flags, stream, payload=b""):
    return struct.pack(">I", len(payload))[1:] + struct.pack(">BBI", ftype, flags, stream) + payload


class Peer:
    """A raw HTTP/2 client connection: the preface, SETTINGS, then frames as they come."""

    def __init__(self, addr):
        host, port = addr.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=ops.TIMEOUT)
        self.sock.sendall(PREFACE + frame(SETTINGS, 0, 0))
        self.buf = b""

    def next_frame(self, until):
        """(type, flags, payload), or None at EOF/reset; raises TimeoutError after `until`."""
        while len(self.buf) < 9 or len(self.buf) < 9 + int.from_bytes(self.buf[:3], "big"):
            left = until - time.monotonic()
            if left <= 0:
                raise TimeoutError
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                raise TimeoutError
            except ConnectionResetError:
                return None
            if not data:
                return None
            self.buf += data
        n = int.from_bytes(self.buf[:3], "big")
        ftype, flags = self.buf[3], self.buf[4]
        payload = self.buf[9:9 + n]
        self.buf = self.buf[9 + n:]
        if ftype == SETTINGS and not flags & ACK:
            self.sock.sendall(frame(SETTINGS, ACK, 0))  # settings are answered; pings decide
        return ftype, flags, payload

    def close(self):
        self.sock.close()


class Keepalive(ops.DaemonTest):
    def start(self, timeout, permit):
        return self.daemon(CONFIG.format(timeout=timeout, permit=permit)).start()

    def test_unanswered_pings_close_the_connection(self):
        d = self.start("1s", "true")
        peer = Peer(d.probe)
        try:
            seen, until = [], time.monotonic() + 60
            while True:
                f = peer.next_frame(until)  # TimeoutError fails the test: never closed
                if f is None:
                    break
                if f[0] in (PING, GOAWAY) and not f[1] & ACK:
                    seen.append(f[0])
        finally:
            peer.close()
        self.assertIn(PING, seen, "entd never pinged the idle connection")
        if GOAWAY in seen:
            self.assertLess(seen.index(PING), seen.index(GOAWAY))
        # Still serving everyone else.
        with ops.channel(d.probe) as ch:
            self.assertEqual(ops.health_status(ch), ops.pb["health"].HealthCheckResponse.SERVING)

    def test_answered_pings_keep_the_connection(self):
        d = self.start("10s", "true")
        peer = Peer(d.probe)
        try:
            pings, until = 0, time.monotonic() + 60
            while pings < 3:
                f = peer.next_frame(until)
                self.assertIsNotNone(f, "entd closed a connection that answers its pings")
                self.assertNotEqual(f[0], GOAWAY, "entd sent GOAWAY to a live peer")
                if f[0] == PING and not f[1] & ACK:
                    pings += 1
                    peer.sock.sendall(frame(PING, ACK, 0, f[2]))
        finally:
            peer.close()
        self.assertEqual(pings, 3)

    def test_no_pings_without_calls_unless_permitted(self):
        d = self.start("1s", "false")
        peer = Peer(d.probe)
        try:
            # Three keepalive periods with no call on the connection: nothing but SETTINGS.
            until = time.monotonic() + 3.5
            while True:
                try:
                    f = peer.next_frame(until)
                except TimeoutError:
                    break
                self.assertIsNotNone(f, "entd closed an idle connection")
                self.assertNotEqual(f[0], PING, "entd pinged a connection without calls")
        finally:
            peer.close()


if __name__ == "__main__":
    ops.main()
