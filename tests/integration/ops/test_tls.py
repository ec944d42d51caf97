#!/usr/bin/python3
"""TLS and mTLS listeners (ops suite).

A test CA, a server certificate (SAN localhost, 127.0.0.1) and client certificates are made
with the openssl CLI. One entd serves:

- `tls`:  TLS, no client certificate asked;
- `mtls`: TLS with require_client_cert against the test CA;
- `probe`: plain text, health only.

Checked with grpcio's ssl_channel_credentials: checks work over TLS trusting the CA; a
plain-text client and a client trusting another CA fail on the TLS port; on the mTLS port a
client with a certificate from the CA is served, one without a certificate and one with a
certificate from another CA are refused at the handshake. The ssl module confirms what the
server presents and that it asks for a client certificate only on the mTLS port.
"""
import os
import socket
import ssl


import ops  # first: it sets up grpcio's environment before the import
import grpc  # noqa: E402

CONFIG = ops.config(
    2, ops.PROBE,
    ops.listener("127.0.0.1:{tls}", "all", """\
    tls:
      cert_file: {tmp}/pki/srv.crt
      key_file: {tmp}/pki/srv.key
"""),
    ops.listener("127.0.0.1:{mtls}", "checks", """\
    tls:
      cert_file: {tmp}/pki/srv.crt
      key_file: {tmp}/pki/srv.key
      client_ca_file: {tmp}/pki/ca.crt
      require_client_cert: true
"""),
    extra=ops.ADMIN)


class Tls(ops.DaemonTest):
    def setUp(self):
        super().setUp()
        self.d = self.daemon(CONFIG, ports=["tls", "mtls"])
        os.makedirs(self.d.path("pki"))
        self.pki = ops.Pki(self.d.path("pki"))
        self.pki.issue("srv", "localhost", 0x1001)
        self.client = self.pki.issue("client", "app-1", 0x2001, server=False)
        self.other = ops.Pki(self.d.path("pki"), name="other-ca")
        self.stranger = self.other.issue("stranger", "stranger", 0x3001, server=False)
        self.d.start()

    def check(self, target, creds, timeout=ops.TIMEOUT):
        with ops.channel(target, creds) as ch:
            return ops.check_fn(ch)(ops.check_req(), timeout=timeout)

    def refused(self, target, creds):
        with self.assertRaises(grpc.RpcError) as cm:
            self.check(target, creds, timeout=20)
        return cm.exception

    def test_tls_serves_checks(self):
        r = self.check(self.d.addr("tls"), ops.tls_creds(self.pki))
        self.assertTrue(r.allowed)
        self.assertEqual(r.reason, ops.reason("ENTITLED"))
        # The same port verified by name: the certificate's DNS SAN "localhost" matches. The name
        # is given to TLS only (no resolver: a minimal machine may have no /etc/hosts).
        creds = ops.tls_creds(self.pki)
        with ops.channel("127.0.0.1:%d" % self.d.ports["tls"], creds,
                         options=[("grpc.ssl_target_name_override", "localhost")]) as ch:
            self.assertTrue(ops.check_fn(ch)(ops.check_req(), timeout=ops.TIMEOUT).allowed)

    def test_tls_refuses_plaintext_and_unknown_ca(self):
        e = self.refused(self.d.addr("tls"), None)
        self.assertEqual(e.code(), grpc.StatusCode.UNAVAILABLE)
        e = self.refused(self.d.addr("tls"), ops.tls_creds(self.other))
        self.assertEqual(e.code(), grpc.StatusCode.UNAVAILABLE)

    def test_mtls_accepts_client_certificate(self):
        r = self.check(self.d.addr("mtls"), ops.tls_creds(self.pki, self.client))
        self.assertTrue(r.allowed)

    def test_mtls_refuses_client_without_certificate(self):
        e = self.refused(self.d.addr("mtls"), ops.tls_creds(self.pki))
        self.assertEqual(e.code(), grpc.StatusCode.UNAVAILABLE)
        # And one whose certificate comes from another CA.
        e = self.refused(self.d.addr("mtls"), ops.tls_creds(self.pki, self.stranger))
        self.assertEqual(e.code(), grpc.StatusCode.UNAVAILABLE)
        # The daemon is unharmed: a proper client still gets in.
        self.assertTrue(self.check(self.d.addr("mtls"),
                                   ops.tls_creds(self.pki, self.client)).allowed)

    def test_mtls_handshake_without_certificate_fails(self):
        """Below gRPC: the TLS handshake itself is refused, not just the call."""
        ctx = ssl.create_default_context(cafile=self.pki.ca_crt)
        ctx.set_alpn_protocols(["h2"])
        with socket.create_connection(("127.0.0.1", self.d.ports["mtls"]), timeout=30) as s:
            try:
                with ctx.wrap_socket(s, server_hostname="localhost") as t:
                    # TLS 1.3: the server's verdict on the (missing) client certificate
                    # arrives after the client's side of the handshake; reading surfaces it
                    # as an alert or the end of the connection, never as HTTP/2 SETTINGS.
                    t.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
                    data = t.recv(1)
            except (ssl.SSLError, ConnectionResetError, BrokenPipeError) as e:
                ops.log("refused as expected: %s" % e)
                data = b""
            self.assertEqual(data, b"")
        # With the client certificate the handshake completes and h2 is negotiated.
        ctx.load_cert_chain(self.client[0], self.client[1])
        with socket.create_connection(("127.0.0.1", self.d.ports["mtls"]), timeout=30) as s:
            with ctx.wrap_socket(s, server_hostname="localhost") as t:
                self.assertEqual(t.selected_alpn_protocol(), "h2")
                self.assertEqual(t.getpeercert()["serialNumber"], "1001")
                t.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
                self.assertNotEqual(t.recv(9), b"")  # the server's SETTINGS frame

    def test_services_per_listener(self):
        """The mTLS listener serves checks only: admin is UNIMPLEMENTED there, and served on
        the TLS listener that serves everything."""
        req = ops.pb["admin"].ListFeaturesRequest()
        md = [("authorization", "Bearer " + ops.TOKEN)]
        with ops.channel(self.d.addr("mtls"), ops.tls_creds(self.pki, self.client)) as ch:
            fn = ops.unary(ch, "/ent.v1.AdminService/ListFeatures",
                           ops.pb["admin"].ListFeaturesResponse)
            with self.assertRaises(grpc.RpcError) as cm:
                fn(req, metadata=md, timeout=ops.TIMEOUT)
            self.assertEqual(cm.exception.code(), grpc.StatusCode.UNIMPLEMENTED)
        with ops.channel(self.d.addr("tls"), ops.tls_creds(self.pki)) as ch:
            fn = ops.unary(ch, "/ent.v1.AdminService/ListFeatures",
                           ops.pb["admin"].ListFeaturesResponse)
            self.assertGreater(len(fn(req, metadata=md, timeout=ops.TIMEOUT).features), 0)


if __name__ == "__main__":
    ops.main()
