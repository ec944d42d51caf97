#!/usr/bin/python3
"""Configuration errors name the key and the value, and entd exits non-zero (ops suite).

`entd --check-config FILE` validates only; a normal start validates the same way before it
binds anything. Each case is a real entd process; stderr must carry the key path (and the
value where there is one), the status must be non-zero. A valid file prints "ok", exit 0.
Precedence is checked end to end: flags over environment over file.
"""
import os
import tempfile

import ops


class ConfigErrors(ops.DaemonTest):
    def setUp(self):
        super().setUp()
        self.dir = tempfile.mkdtemp(prefix="entd-ops-cfg-", dir="/tmp")
        self.addCleanup(lambda: __import__("shutil").rmtree(self.dir, ignore_errors=True))

    def write(self, name, text):
        p = os.path.join(self.dir, name)
        with open(p, "w") as f:
            f.write(text)
        return p

    def assertRefused(self, args, *needles, env=None):
        st, out, err = ops.run_entd(args, env=env)
        self.assertNotEqual(st, 0, "accepted: %s\nstdout: %s" % (args, out))
        for n in needles:
            self.assertIn(n, err, "stderr does not name %r:\n%s" % (n, err))
        self.assertTrue(err.startswith("entd: "), err)
        return err

    def test_valid_file_is_ok(self):
        p = self.write("ok.yaml", "db:\n  path: %s\nthreads: 2\nlog:\n  level: debug\n" % self.dir)
        st, out, err = ops.run_entd(["--check-config", p])
        self.assertEqual((st, out.strip()), (0, "ok"), err)

    def test_bad_value(self):
        p = self.write("bad.yaml", "threads: 0\n")
        self.assertRefused(["--check-config", p], "threads: 0 is not in 1..256", "line 1")

    def test_unknown_key(self):
        p = self.write("typo.yaml", "limits:\n  max_mesage_bytes: 4MiB\n")
        self.assertRefused(["--check-config", p], "limits.max_mesage_bytes", "unknown key")

    def test_wrong_type(self):
        p = self.write("type.yaml", "limits:\n  max_message_bytes: lots\n")
        self.assertRefused(["--check-config", p], "limits.max_message_bytes", "'lots'")

    def test_listener_address(self):
        p = self.write("addr.yaml", "listeners:\n  - address: foo\n")
        self.assertRefused(["--check-config", p], "listeners[0].address", "'foo'")

    def test_missing_tls_file(self):
        p = self.write("tls.yaml", "listeners:\n  - address: 127.0.0.1:0\n    tls:\n"
                       "      cert_file: %s/nope.crt\n      key_file: %s/nope.key\n"
                       % (self.dir, self.dir))
        self.assertRefused(["--check-config", p], "listeners[0].tls.cert_file", "nope.crt")

    def test_mtls_needs_ca(self):
        pki = ops.Pki(self.dir)
        crt, key = pki.issue("srv", "localhost", 7)
        p = self.write("mtls.yaml", "listeners:\n  - address: 127.0.0.1:0\n    tls:\n"
                       "      cert_file: %s\n      key_file: %s\n"
                       "      require_client_cert: true\n" % (crt, key))
        self.assertRefused(["--check-config", p], "listeners[0].tls.require_client_cert")

    def test_socket_owner(self):
        p = self.write("owner.yaml", "listeners:\n  - address: unix:%s/s.sock\n"
                       "    owner: no-such-user-entd\n" % self.dir)
        self.assertRefused(["--check-config", p], "listeners[0].owner", "no-such-user-entd")

    def test_secret_not_echoed(self):
        p = self.write("tok.yaml", "admin:\n  token: \"bad token-SECRET42\"\n")
        err = self.assertRefused(["--check-config", p], "admin.token", "value not shown")
        self.assertNotIn("SECRET42", err)

    def test_environment_names_variable(self):
        p = self.write("ok.yaml", "threads: 2\n")
        env = dict(os.environ, ENTD_THREADS="lots")
        self.assertRefused(["--check-config", p], "threads: 'lots'", "ENTD_THREADS", env=env)

    def test_flag_names_flag(self):
        p = self.write("ok.yaml", "threads: 2\n")
        self.assertRefused(["--check-config", p, "--grace-ms", "forever"], "shutdown.grace_ms",
                           "--grace-ms", "'forever'")
        self.assertRefused(["--check-config", p, "--no-such-flag", "1"], "--no-such-flag")

    def test_start_refuses_bad_config(self):
        """Not only --check-config: a normal start fails the same way, before binding."""
        p = self.write("bad.yaml", "db:\n  path: %s/db\nlisteners:\n  - 127.0.0.1:%d\n"
                       "metrics:\n  listen: nowhere\n" % (self.dir, ops.harness.free_port()))
        self.assertRefused(["--config", p], "metrics.listen", "'nowhere'")

    def test_precedence(self):
        """flags > environment > file, seen through --print-config."""
        p = self.write("p.yaml", "threads: 3\nshutdown:\n  grace_ms: 1s\nlog:\n  level: warn\n"
                       "admin:\n  token: file-secret-1\n")
        env = dict(os.environ, ENTD_GRACE_MS="2s", ENTD_THREADS="4")
        st, out, err = ops.run_entd(["--config", p, "--print-config", "--threads", "5"], env=env)
        self.assertEqual(st, 0, err)
        self.assertIn("threads: 5\n", out)        # flag over env and file
        self.assertIn("grace_ms: 2s\n", out)      # env over file
        self.assertIn("level: warn\n", out)       # file over default
        self.assertIn('token: "<set>"', out)      # secrets hidden
        self.assertNotIn("file-secret-1", out)


WRITER_CONFIG = """
db:
  path: {db}
threads: 2
listeners:
  - address: 127.0.0.1:{probe}
"""


def thread_nices(pid):
    """The nice value of each thread of process \a pid (field 19 of /proc/PID/task/TID/stat)."""
    out = []
    for tid in os.listdir("/proc/%d/task" % pid):
        with open("/proc/%d/task/%s/stat" % (pid, tid)) as f:
            stat = f.read()
        out.append(int(stat[stat.rindex(")") + 2:].split()[16]))
    return out


class WriterPriority(ops.DaemonTest):
    """writer.nice: the writer thread alone runs at the configured nice increment (default
    10), so checks get the CPU first while a large change applies; 0 leaves it as is."""

    def test_default_lowers_only_the_writer(self):
        d = self.daemon(WRITER_CONFIG).start()
        nices = thread_nices(d.pid)
        self.assertEqual(nices.count(10), 1, nices)
        self.assertEqual(nices.count(0), len(nices) - 1, nices)

    def test_zero_leaves_every_thread_alone(self):
        d = self.daemon(WRITER_CONFIG, args=["--writer-nice", "0"]).start()
        self.assertEqual(set(thread_nices(d.pid)), {0})


if __name__ == "__main__":
    ops.main()
