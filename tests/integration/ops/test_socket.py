#!/usr/bin/python3
"""Unix socket permissions and services per listener (ops suite).

The sidecar's application reaches entd through a shared socket: its mode, owner and group are
configured. One entd serves

- checks.sock: checks only, mode 0600, owner and group as configured;
- admin.sock:  admin only, mode 0660;
- probe:       plain-text TCP, health only (Kubernetes' gRPC probes).

stat(2) shows the configured modes and ownership; each listener serves its services and
answers UNIMPLEMENTED for the others, health everywhere. When the test runs as root it also
proves the permissions bite: a process switched to another user cannot connect to a 0600
socket owned by root, and can once the socket is chowned to it.
"""
import grp
import os
import pwd
import socket
import stat
import unittest


import ops  # first: it sets up grpcio's environment before the import
import grpc  # noqa: E402

CONFIG = ops.config(
    2, ops.PROBE,
    ops.listener("unix:{tmp}/checks.sock", "checks",
                 '    mode: "0600"\n    owner: "{owner}"\n    group: "{group}"\n'),
    ops.listener("unix:{tmp}/admin.sock", "admin", '    mode: "0660"\n'),
    extra=ops.ADMIN)


def other_user():
    """A user that is not us, for the root-only part: (name, uid, gid) or None."""
    if os.geteuid() != 0:
        return None
    for name in ("nobody", "daemon"):
        try:
            pw = pwd.getpwnam(name)
            return name, pw.pw_uid, pw.pw_gid
        except KeyError:
            continue
    return None


def connect_as(uid, gid, path):
    """Try connect(2) on the socket from a child running as uid:gid; True if it connected.

    A plain fork, no exec: the child only switches identity and calls connect, so nothing of
    the interpreter's installation has to be readable by that user. If that user cannot even
    reach the socket's directory (a sandbox whose root is private to root), the test cannot
    tell socket permissions from path permissions and is skipped, saying so."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)
            if not os.access(os.path.dirname(path), os.X_OK):
                code = 4
            else:
                s = socket.socket(socket.AF_UNIX)
                try:
                    s.connect(path)
                    code = 0
                except PermissionError:
                    code = 3
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    rc = os.waitstatus_to_exitcode(status)
    if rc == 4:
        raise unittest.SkipTest("uid %d cannot reach %s at all (path permissions)"
                                % (uid, os.path.dirname(path)))
    if rc not in (0, 3):
        raise AssertionError("connect helper failed with %d" % rc)
    return rc == 0


class Sockets(ops.DaemonTest):
    def start(self, owner, group):
        self.d = self.daemon(CONFIG.replace("{owner}", owner).replace("{group}", group))
        self.d.start()
        self.checks = "unix:" + self.d.path("checks.sock")
        self.admin = "unix:" + self.d.path("admin.sock")

    def me(self):
        return pwd.getpwuid(os.geteuid()).pw_name, grp.getgrgid(os.getegid()).gr_name

    def test_modes_and_ownership(self):
        user, group = self.me()
        self.start(user, group)
        st = os.stat(self.d.path("checks.sock"))
        self.assertTrue(stat.S_ISSOCK(st.st_mode))
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o600)
        self.assertEqual((st.st_uid, st.st_gid), (os.geteuid(), os.getegid()))
        st = os.stat(self.d.path("admin.sock"))
        self.assertTrue(stat.S_ISSOCK(st.st_mode))
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o660)

    def test_services_per_listener(self):
        user, group = self.me()
        self.start(user, group)
        md = [("authorization", "Bearer " + ops.TOKEN)]
        feats = ("/ent.v1.AdminService/ListFeatures", ops.pb["admin"].ListFeaturesResponse)
        lreq = ops.pb["admin"].ListFeaturesRequest()
        with ops.channel(self.checks) as ch:
            self.assertTrue(ops.check_fn(ch)(ops.check_req(), timeout=ops.TIMEOUT).allowed)
            with self.assertRaises(grpc.RpcError) as cm:
                ops.unary(ch, *feats)(lreq, metadata=md, timeout=ops.TIMEOUT)
            self.assertEqual(cm.exception.code(), grpc.StatusCode.UNIMPLEMENTED)
            self.assertEqual(ops.health_status(ch), 1)  # SERVING
        with ops.channel(self.admin) as ch:
            self.assertGreater(len(ops.unary(ch, *feats)(lreq, metadata=md,
                                                          timeout=ops.TIMEOUT).features), 0)
            with self.assertRaises(grpc.RpcError) as cm:
                ops.check_fn(ch)(ops.check_req(), timeout=ops.TIMEOUT)
            self.assertEqual(cm.exception.code(), grpc.StatusCode.UNIMPLEMENTED)
            self.assertEqual(ops.health_status(ch), 1)
        with ops.channel(self.d.probe) as ch:
            self.assertEqual(ops.health_status(ch, "ent.v1.EntitlementService"), 1)
            with self.assertRaises(grpc.RpcError) as cm:
                ops.check_fn(ch)(ops.check_req(), timeout=ops.TIMEOUT)
            self.assertEqual(cm.exception.code(), grpc.StatusCode.UNIMPLEMENTED)

    def test_permissions_bite(self):
        other = other_user()
        if not other:
            self.skipTest("needs root and a 'nobody' or 'daemon' user")
        name, uid, gid = other
        # The directory must be traversable by the other user for the test to mean anything.
        user, group = self.me()
        self.start(user, group)
        os.chmod(self.d.tmp, 0o755)
        self.assertFalse(connect_as(uid, gid, self.d.path("checks.sock")),
                         "a 0600 root socket accepted another user")
        self.assertEqual(self.d.stop(), 0)
        # The same socket handed to that user by the config.
        self.d.template = CONFIG.replace("{owner}", name).replace(
            "{group}", grp.getgrgid(gid).gr_name)
        self.d.start()
        st = os.stat(self.d.path("checks.sock"))
        self.assertEqual((st.st_uid, st.st_gid), (uid, gid))
        self.assertTrue(connect_as(uid, gid, self.d.path("checks.sock")))
        # A socket a live daemon serves is never taken over by a second one (on a database of
        # its own: the first daemon's is locked, which would refuse it before the socket).
        st_out = ops.run_entd(["--config", self.d.cfgpath, "--db", self.d.path("db2"),
                               "--listen", "unix:" + self.d.path("checks.sock")])
        self.assertNotEqual(st_out[0], 0)
        self.assertIn("another process is serving on it", st_out[2])


if __name__ == "__main__":
    ops.main()
