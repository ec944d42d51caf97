#!/usr/bin/python3
"""Helpers of the operations suites (tests/integration/ops/) that only they use: TLS material
made with the openssl CLI (`Pki`, `tls_creds`, `replace_file`) and a strict reader of the
Prometheus text format (`http_get`, `scrape`, `parse_metrics`, `metric`).

Everything else - options and generated code (`main`, `pb`, `ARGS`), the config-file daemon
(`Daemon`, `DaemonTest`), clients (`channel`, `unary`, `check_fn`, `check_req`, `Stream`,
`health_status`, `reason`), `run_entd`, `wait_for` - is the one fixture module's,
tests/integration/harness.py, re-exported here under the names the suites use.

Run with Debian's interpreter (/usr/bin/python3): grpcio and protobuf are Debian packages.
"""
import http.client
import os
import re
import subprocess
import sys

# The fixture module sits one directory up; it sets grpcio's environment before importing it.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import harness  # noqa: E402
from harness import (  # noqa: E402,F401  (re-exported for the suites)
    BATCH, CHECK, HEALTH_CHECK, HEALTH_WATCH, STREAM, TIMEOUT, Daemon, DaemonTest, Stream,
    channel, check_fn, check_req, health_status, pb, reason, run_entd, unary, wait_for)
import grpc  # noqa: E402

TOKEN = "ops-admin-token"  # the admin token the suites' config texts carry
main, setup, __getattr__ = harness.main_tests, harness.setup, harness.args_getattr


# ---- configuration texts ---------------------------------------------------------------------
# The suites' configurations are YAML templates; Daemon fills the placeholders ({db}, {tmp}, and
# one per port it picks: {probe}, {api}, ...). What most of them share is written here once.

def listener(address, services=None, more=""):
    """One item of `listeners:` (YAML); \a more: further indented lines of the item."""
    return "  - address: %s\n" % address + \
        ("    services: %s\n" % services if services else "") + more


PROBE = listener("127.0.0.1:{probe}", "health")  # the health-only probe port
API = listener("127.0.0.1:{api}")  # every service
ADMIN = "admin:\n  token: %s\n" % TOKEN
METRICS = "metrics:\n  listen: 127.0.0.1:{metrics}\n"


def config(threads, *listeners, extra=""):
    """A configuration template: the database, \a threads workers, \a listeners (items made
    by listener(), or PROBE/API), then the YAML sections in \a extra."""
    return "db:\n  path: {db}\nthreads: %d\nlisteners:\n" % threads + "".join(listeners) + extra


def log(msg):
    print("ops: " + msg, file=sys.stderr, flush=True)


# ---- TLS ---------------------------------------------------------------------------------

class Pki:
    """A test CA and certificates signed by it, made with the openssl CLI in \a dir."""

    def __init__(self, dir, name="ca"):
        self.dir = dir
        self.name = name
        self.ca_key = os.path.join(dir, name + ".key")
        self.ca_crt = os.path.join(dir, name + ".crt")
        self._openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                      "-nodes", "-days", "3", "-subj", "/CN=entd test %s" % name,
                      "-addext", "basicConstraints=critical,CA:TRUE",
                      "-addext", "keyUsage=critical,keyCertSign,cRLSign",
                      "-keyout", self.ca_key, "-out", self.ca_crt)

    @staticmethod
    def _openssl(*args):
        p = subprocess.run(["openssl"] + list(args), stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=120)
        if p.returncode != 0:
            raise RuntimeError("openssl %s failed:\n%s" % (" ".join(args), p.stdout.decode()))

    def issue(self, stem, cn, serial, server=True):
        """Key and certificate stem.key / stem.crt; returns (crt, key) paths."""
        key = os.path.join(self.dir, stem + ".key")
        csr = os.path.join(self.dir, stem + ".csr")
        crt = os.path.join(self.dir, stem + ".crt")
        ext = os.path.join(self.dir, stem + ".ext")
        with open(ext, "w") as f:
            f.write("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n")
            if server:
                f.write("extendedKeyUsage=serverAuth\n"
                        "subjectAltName=DNS:localhost,IP:127.0.0.1\n")
            else:
                f.write("extendedKeyUsage=clientAuth\n")
        self._openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                      "-subj", "/CN=" + cn, "-keyout", key, "-out", csr)
        self._openssl("x509", "-req", "-in", csr, "-CA", self.ca_crt, "-CAkey", self.ca_key,
                      "-set_serial", str(serial), "-days", "2", "-extfile", ext, "-out", crt)
        return crt, key


def read(path, mode="rb"):
    with open(path, mode) as f:
        return f.read()


def replace_file(path, data):
    """Atomic replacement, as a Kubernetes Secret update or a careful operator does it."""
    tmp = path + ".new"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def tls_creds(pki, client=None):
    """Channel credentials trusting \a pki's CA, with an optional (crt, key) client pair."""
    kw = {"root_certificates": read(pki.ca_crt)}
    if client:
        kw["certificate_chain"] = read(client[0])
        kw["private_key"] = read(client[1])
    return grpc.ssl_channel_credentials(**kw)


# ---- metrics -----------------------------------------------------------------------------

def http_get(port, path, timeout=30):
    """(status, body text) of GET http://127.0.0.1:port/path."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.status, r.read().decode()
    finally:
        c.close()


_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(,|$)')


def parse_metrics(text):
    """Prometheus text format 0.0.4 into {(name, frozenset(labels.items())): value}, strictly:
    every sample line must parse, every family must have # TYPE before its samples, and the
    text must end with a newline."""
    assert text.endswith("\n"), "exposition does not end with a newline"
    typed = {}
    out = {}
    for line in text.splitlines():
        if not line:
            continue
        if line.startswith("# TYPE "):
            _, _, name, typ = line.split(" ", 3)
            assert typ in ("counter", "gauge", "histogram", "summary", "untyped"), line
            typed[name] = typ
            continue
        if line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        assert m, "unparsable sample line: %r" % line
        name, _, labels, value = m.groups()
        family = re.sub(r"_(bucket|sum|count)$", "", name) if name not in typed else name
        assert name in typed or family in typed, "sample before its # TYPE: %r" % line
        lab = {}
        if labels:
            pos = 0
            while pos < len(labels):
                lm = _LABEL.match(labels, pos)
                assert lm, "bad labels in %r" % line
                lab[lm.group(1)] = lm.group(2)
                pos = lm.end()
        key = (name, frozenset(lab.items()))
        assert key not in out, "duplicate series %r" % line
        out[key] = float(value)
    return out


def metric(samples, name, **labels):
    """The value of one series, or None."""
    return samples.get((name, frozenset(labels.items())))


def scrape(port):
    st, body = http_get(port, "/metrics")
    assert st == 200, "GET /metrics: %d %s" % (st, body[:200])
    return parse_metrics(body)
