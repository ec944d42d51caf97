#!/usr/bin/python3
"""Hostile clients (ops suite; docs/security.md): memory stays bounded, others keep answers.

Each attack of issue 15 is replayed against a real entd, scaled down to stay within CI's time,
by a raw HTTP/2 client written here (frames and a literal-only HPACK encoder over a plain
socket) or by grpcio where it can produce the attack itself. For each one the test asserts the
bound docs/security.md states for entd's anonymous memory (RssAnon: the mapped database is not
counted) and that a well-behaved client on another connection still gets its answers:

- a gzip bomb (a 64 MiB message compressed to ~64 KiB): refused before it is inflated, because
  compression is off unless configured (limits.compression);
- a CONTINUATION flood (one HEADERS without END_HEADERS, then 64 MiB of CONTINUATION);
- 20,000 streams opened on one connection and never ended (limits.max_concurrent_streams);
- 20,000 streams opened and reset at once ("rapid reset");
- 70 slow-header connections to the metrics port from one address: /livez from another
  address still answers (metrics.max_connections, a quarter per address);
- an admin write carrying unknown protobuf fields (at the top and inside the feature): neither
  stored nor echoed.

Bounds are upper limits with a wide margin (two cores shared with builds), never timings.
"""
import gzip
import os
import socket
import struct
import threading
import time
import unittest
import http.client

import grpc
import ops  # first: it sets up grpcio's environment before the import

CONFIG = ops.config(2, ops.listener("127.0.0.1:{probe}"), ops.API, extra=ops.ADMIN + ops.METRICS)

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = (
    0x0, 0x1, 0x3, 0x4, 0x6, 0x7, 0x8, 0x9)
END_STREAM, ACK, END_HEADERS = 0x1, 0x1, 0x4
MIB = 1 << 20
# The bound asserted for each attack: entd's anonymous memory may grow by at most this much
# (docs/security.md gives the figures measured; they are far below it). Under a sanitizer
# (ENT_SANITIZED, set by CMake) freed memory sits in quarantine and the server is many times
# slower, so the figures are logged there but not asserted.
BOUND = 96 * MIB
SANITIZED = bool(os.environ.get("ENT_SANITIZED"))


def frame(ftype, flags, stream, payload=b""):
    return struct.pack(">I", len(payload))[1:] + struct.pack(">BBI", ftype, flags, stream) + payload


def hpack_int(v, prefix_bits, first=0):
    limit = (1 << prefix_bits) - 1
    if v < limit:
        return bytes([first | v])
    out = [first | limit]
    v -= limit
    while v >= 128:
        out.append((v & 127) | 128)
        v >>= 7
    out.append(v)
    return bytes(out)


def hpack_literal(name, value):
    """A literal header field without indexing, names and values not Huffman-coded."""
    return (b"\x00" + hpack_int(len(name), 7) + name + hpack_int(len(value), 7) + value)


def request_headers(path=b"/ent.v1.EntitlementService/CheckEntitlement", extra=()):
    fields = [(b":method", b"POST"), (b":scheme", b"http"), (b":path", path),
              (b":authority", b"localhost"), (b"content-type", b"application/grpc"),
              (b"te", b"trailers")] + list(extra)
    return b"".join(hpack_literal(n, v) for n, v in fields)


class Conn:
    """A raw HTTP/2 client connection; reads frames on a thread so the server never blocks on
    a full socket buffer, and remembers what kinds of frames came and whether it was closed."""

    def __init__(self, addr, ack_settings=True):
        self.ack_settings = ack_settings
        host, port = addr.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=ops.TIMEOUT)
        self.sock.sendall(PREFACE + frame(SETTINGS, 0, 0))
        self.kinds = {}
        self.closed = threading.Event()
        self.t = threading.Thread(target=self._read, daemon=True)
        self.t.start()

    def _read(self):
        buf = b""
        try:
            while True:
                data = self.sock.recv(1 << 16)
                if not data:
                    break
                buf += data
                while len(buf) >= 9 and len(buf) >= 9 + int.from_bytes(buf[:3], "big"):
                    n = int.from_bytes(buf[:3], "big")
                    ftype, flags = buf[3], buf[4]
                    self.kinds[ftype] = self.kinds.get(ftype, 0) + 1
                    if ftype == SETTINGS and not flags & ACK and self.ack_settings:
                        self.sock.sendall(frame(SETTINGS, ACK, 0))
                    buf = buf[9 + n:]
        except OSError:
            pass
        self.closed.set()

    def send(self, data):
        """False once the server has closed the connection."""
        try:
            self.sock.sendall(data)
            return True
        except OSError:
            return False

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def rss_anon(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no RssAnon for %d" % pid)


class Peak:
    """Samples a process's RssAnon on a thread until stopped; .peak is the highest seen."""

    def __init__(self, pid):
        self.pid, self.peak, self.stop_ev = pid, rss_anon(pid), threading.Event()
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self):
        while not self.stop_ev.is_set():
            try:
                self.peak = max(self.peak, rss_anon(self.pid))
            except (OSError, AssertionError):
                return
            time.sleep(0.01)

    def stop(self):
        self.stop_ev.set()
        self.t.join()
        return self.peak


class Hostile(ops.DaemonTest):
    def setUp(self):
        super().setUp()
        self.d = self.daemon(CONFIG, ports=("api", "metrics")).start()
        self.base = rss_anon(self.d.proc.pid)
        self.peak = Peak(self.d.proc.pid)

    def good_client_answers(self):
        """A well-behaved client on a connection of its own gets a right answer (three tries
        of ops.TIMEOUT each: on two shared cores a server still working off an attack's
        backlog may be slow, but it must answer)."""
        for attempt in range(3):
            try:
                with ops.channel(self.d.addr("api")) as ch:
                    r = ops.check_fn(ch)(ops.check_req(), timeout=ops.TIMEOUT)
                break
            except grpc.RpcError as e:
                if attempt == 2 or e.code() != grpc.StatusCode.DEADLINE_EXCEEDED:
                    raise
        self.assertTrue(r.allowed, "the good client's check was not answered right")

    def assert_bounded(self, what, bound=None):
        peak = self.peak.stop()
        grew = peak - self.base
        ops.log("%s: RssAnon %.1f -> peak %.1f MiB (+%.1f)" %
                (what, self.base / MIB, peak / MIB, grew / MIB))
        self.assertTrue(self.d.alive(), "%s: entd died" % what)
        if not SANITIZED:
            self.assertLess(grew, bound or BOUND,
                            "%s: entd's memory grew by %.0f MiB" % (what, grew / MIB))

    def test_gzip_bomb_refused_before_inflating(self):
        # 64 MiB of one repeated byte in a customer id: gzip makes ~64 KiB of it.
        req = ops.check_req(customer="c" * (64 * MIB))
        with ops.channel(self.d.addr("api"),
                         options=[("grpc.max_send_message_length", -1)]) as ch:
            call = ch.unary_unary(ops.CHECK, request_serializer=lambda m: m.SerializeToString(),
                                  response_deserializer=ops.pb["entitlement"]
                                  .CheckEntitlementResponse.FromString)
            with self.assertRaises(grpc.RpcError) as cm:
                call(req, timeout=ops.TIMEOUT, compression=grpc.Compression.Gzip)
        self.assertIn(cm.exception.code(),
                      (grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.RESOURCE_EXHAUSTED,
                       grpc.StatusCode.INTERNAL))
        self.good_client_answers()
        self.assert_bounded("gzip bomb")

    def flood(self, block):
        """One HEADERS without END_HEADERS, then CONTINUATION frames of \a block until 64 MiB
        are sent or the server closes the connection. Returns the bytes sent."""
        c = Conn(self.d.addr("api"))
        try:
            c.send(frame(HEADERS, 0, 1, request_headers()))
            chunk = frame(CONTINUATION, 0, 1, block) * 16
            sent = 0
            while sent < 64 * MIB and not c.closed.is_set():
                if not c.send(chunk):
                    break
                sent += 16 * len(block)
            self.good_client_answers()
            return sent, c.closed.is_set()
        finally:
            c.close()

    def test_continuation_flood_one_header(self):
        # A header whose value never ends (a 64 MiB length): over limits.max_metadata_bytes.
        sent, closed = self.flood(b"\x00" + hpack_int(5, 7) + b"x-big" + hpack_int(64 * MIB, 7)
                                  + b"a" * 16000)
        ops.log("continuation flood (one header): %.1f MiB sent, closed: %s" % (sent / MIB, closed))
        self.assert_bounded("continuation flood, one header")

    def test_continuation_flood_many_headers(self):
        # Many small headers, each well-formed, in CONTINUATION frames that never end the list.
        field = hpack_literal(b"x-pad", b"p" * 100)
        sent, closed = self.flood(field * (16000 // len(field)))
        ops.log("continuation flood (many headers): %.1f MiB sent, closed: %s" %
                (sent / MIB, closed))
        self.assert_bounded("continuation flood, many headers")

    def open_streams(self, c, n):
        hdr = request_headers()
        batch = []
        for i in range(n):
            batch.append(frame(HEADERS, END_HEADERS, 2 * i + 1, hdr))
            if len(batch) == 500:
                if not c.send(b"".join(batch)):
                    return
                batch = []
        if batch:
            c.send(b"".join(batch))
        # A PING answered means the server has read everything before it.
        c.send(frame(PING, 0, 0, b"8bytes!!"))
        ops.wait_for(lambda: c.kinds.get(PING, 0) > 0 or c.closed.is_set(),
                     what="the ping after the streams")

    def test_never_ended_streams(self):
        # A peer that acknowledged the server's SETTINGS (limits.max_concurrent_streams: 100)
        # and then opens 20,000 streams: all but 100 are refused.
        c = Conn(self.d.addr("api"))
        try:
            ops.wait_for(lambda: c.kinds.get(SETTINGS, 0) > 0, what="the server's SETTINGS")
            c.send(frame(PING, 0, 0, b"settled!"))  # our ACK is read before this PING
            ops.wait_for(lambda: c.kinds.get(PING, 0) > 0, what="ping after SETTINGS ACK")
            c.kinds.pop(PING)
            self.open_streams(c, 20000)
            self.assertGreater(c.kinds.get(RST_STREAM, 0) + c.kinds.get(GOAWAY, 0), 0,
                               "streams past the limit were not refused")
            self.good_client_answers()
        finally:
            c.close()
        self.assert_bounded("20000 never-ended streams")

    def test_never_ended_streams_settings_unacked(self):
        # gRPC 1.51 enforces the stream limit only once the peer has acknowledged it, and the
        # resource quota does not cover streams waiting for the application: a peer that never
        # acknowledges gets every stream it opens. docs/security.md gives the measured cost
        # (~12 KiB a stream) and the deployments that close it; asserted here is that cost
        # bound (16 KiB a stream), that entd survives and that others still get answers.
        c = Conn(self.d.addr("api"), ack_settings=False)
        try:
            self.open_streams(c, 20000)
            self.good_client_answers()
        finally:
            c.close()
        self.assert_bounded("20000 streams, SETTINGS never acknowledged", 20000 * 16 * 1024)

    def test_rapid_reset(self):
        c = Conn(self.d.addr("api"))
        try:
            hdr = request_headers()
            rst = struct.pack(">I", 8)  # CANCEL
            batch = []
            for i in range(20000):
                sid = 2 * i + 1
                batch.append(frame(HEADERS, END_HEADERS, sid, hdr) + frame(RST_STREAM, 0, sid, rst))
                if len(batch) == 500:
                    if not c.send(b"".join(batch)):
                        break
                    batch = []
            if batch:
                c.send(b"".join(batch))
            # A PING answered means the server has read everything before it.
            c.send(frame(PING, 0, 0, b"8bytes!!"))
            ops.wait_for(lambda: c.kinds.get(PING, 0) > 0 or c.closed.is_set(),
                         what="the ping after the resets")
            self.good_client_answers()
        finally:
            c.close()
        # gRPC 1.51 predates the rapid-reset fixes: reset streams still cost memory until the
        # server has worked through them, so the bound is per stream, as for the unacked case
        # (docs/security.md has the figures, release and ASan).
        self.assert_bounded("20000 rapid resets", 20000 * 16 * 1024)

    def test_metrics_slow_headers(self):
        port = self.d.ports["metrics"]
        held = []
        try:
            for _ in range(70):
                s = socket.socket()
                s.bind(("127.0.0.2", 0))  # one attacker address; the probe comes from .1
                try:
                    s.connect(("127.0.0.1", port))
                    s.sendall(b"GET /livez HTTP/1.1\r\nHost: x\r\n")  # never finished
                except OSError:
                    pass
                held.append(s)
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=ops.TIMEOUT)
            conn.request("GET", "/livez")
            r = conn.getresponse()
            self.assertEqual(r.status, 200)
            conn.close()
        finally:
            for s in held:
                s.close()
        self.good_client_answers()
        self.assert_bounded("metrics slow headers")

    def test_unknown_fields_dropped(self):
        def varint(v):
            out = bytearray()
            while v >= 0x80:
                out.append((v & 0x7f) | 0x80)
                v >>= 7
            out.append(v)
            return bytes(out)

        marker = b"UNKNOWN-FIELD-MARKER" * 4096  # 80 KiB
        unknown = varint((999 << 3) | 2) + varint(len(marker)) + marker
        feat = ops.pb["types"].Feature(code="uf_probe", name="probe",
                                       type=ops.pb["types"].FEATURE_TYPE_BOOLEAN)
        inner = feat.SerializeToString() + unknown
        req = varint((1 << 3) | 2) + varint(len(inner)) + inner + unknown
        md = [("authorization", "Bearer " + ops.TOKEN)]
        with ops.channel(self.d.addr("api")) as ch:
            raw = lambda path: ch.unary_unary(path, request_serializer=lambda b: b,
                                              response_deserializer=lambda b: b)
            echo = raw("/ent.v1.AdminService/UpsertFeature")(req, metadata=md,
                                                              timeout=ops.TIMEOUT)
            self.assertNotIn(b"UNKNOWN-FIELD-MARKER", echo)
            self.assertIn(b"uf_probe", echo)
            get = ops.pb["admin"].GetFeatureRequest(code="uf_probe").SerializeToString()
            stored = raw("/ent.v1.AdminService/GetFeature")(get, metadata=md,
                                                           timeout=ops.TIMEOUT)
            self.assertNotIn(b"UNKNOWN-FIELD-MARKER", stored)
            self.assertIn(b"uf_probe", stored)
        self.assert_bounded("unknown fields")


if __name__ == "__main__":
    ops.main()
