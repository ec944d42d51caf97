#!/usr/bin/python3
"""gRPC server reflection through an independent client (ops suite).

The client side is written here by hand on grpcio with the _pb2 modules protoc generates from
proto/grpc/reflection/{v1alpha,v1}/reflection.proto: one bidirectional stream, several
requests on it, as grpcurl and evans do. Checked, for both protocol versions:

- list_services names ent.v1.EntitlementService, ent.v1.AdminService, grpc.health.v1.Health;
- file_containing_symbol returns FileDescriptorProtos that parse with descriptor_pb2, build a
  descriptor pool with every dependency, and describe CheckEntitlement with its types;
- file_by_filename and method symbols work; unknown symbols answer NOT_FOUND in the stream;
- reflection is not served on a health-only listener, and works over a unix socket.
"""
import queue

from google.protobuf import descriptor_pb2, descriptor_pool

import ops  # first: it sets up grpcio's environment before the import
import grpc  # noqa: E402

CONFIG = ops.config(2, ops.PROBE, ops.API, ops.listener("unix:{tmp}/entd.sock", "checks"))

PATHS = {
    "refl_v1alpha": "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
    "refl_v1": "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
}


class Reflector:
    """A reflection session: ask() sends one request on the open stream, returns the reply."""

    def __init__(self, ch, version):
        self.m = ops.pb[version]
        self.queue = queue.Queue()
        fn = ch.stream_stream(PATHS[version], request_serializer=lambda r: r.SerializeToString(),
                              response_deserializer=self.m.ServerReflectionResponse.FromString)

        def gen():
            while True:
                r = self.queue.get()
                if r is None:
                    return
                yield r
        self.call = fn(gen(), timeout=ops.TIMEOUT)

    def ask(self, **kw):
        self.queue.put(self.m.ServerReflectionRequest(host="localhost", **kw))
        return next(self.call)

    def close(self):
        self.queue.put(None)
        for _ in self.call:
            pass
        return self.call.code()


def files(resp):
    out = []
    for raw in resp.file_descriptor_response.file_descriptor_proto:
        fd = descriptor_pb2.FileDescriptorProto()
        fd.ParseFromString(raw)
        out.append(fd)
    return out


class Reflection(ops.DaemonTest):
    def setUp(self):
        super().setUp()
        self.d = self.daemon(CONFIG, ports=["api"])
        self.d.start()

    def session(self, version, target=None):
        ch = ops.channel(target or self.d.addr("api"))
        self.addCleanup(ch.close)
        return Reflector(ch, version)

    def list_services(self, r):
        resp = r.ask(list_services="*")
        self.assertEqual(resp.WhichOneof("message_response"), "list_services_response")
        self.assertEqual(resp.original_request.list_services, "*")
        return {s.name for s in resp.list_services_response.service}

    def test_list_and_describe(self):
        for version in PATHS:
            with self.subTest(version=version):
                r = self.session(version)
                names = self.list_services(r)
                for svc in ("ent.v1.EntitlementService", "ent.v1.AdminService",
                            "grpc.health.v1.Health"):
                    self.assertIn(svc, names)

                resp = r.ask(file_containing_symbol="ent.v1.EntitlementService")
                self.assertEqual(resp.WhichOneof("message_response"),
                                 "file_descriptor_response")
                fds = files(resp)
                self.assertEqual(fds[0].name, "ent/v1/entitlement.proto")
                svc = [s for s in fds[0].service if s.name == "EntitlementService"]
                self.assertEqual(len(svc), 1)
                methods = {m.name: m for m in svc[0].method}
                self.assertIn("CheckEntitlement", methods)
                self.assertEqual(methods["CheckEntitlement"].input_type,
                                 ".ent.v1.CheckEntitlementRequest")
                self.assertTrue(methods["StreamCheckEntitlements"].client_streaming)
                self.assertTrue(methods["StreamCheckEntitlements"].server_streaming)

                # Every dependency came along: a pool builds, and the request type can be
                # described field by field, as a client without the .proto would.
                pool = descriptor_pool.DescriptorPool()
                pending = list(fds)
                while pending:  # add in dependency order
                    progress = False
                    for fd in list(pending):
                        try:
                            pool.Add(fd)
                        except TypeError:
                            continue
                        pending.remove(fd)
                        progress = True
                    self.assertTrue(progress, "unresolvable: %s" % [f.name for f in pending])
                m = pool.FindMessageTypeByName("ent.v1.CheckEntitlementRequest")
                self.assertEqual([f.name for f in m.fields][:3],
                                 ["customer_id", "feature_code", "quantity"])
                self.assertEqual(r.close(), grpc.StatusCode.OK)

    def test_lookups_and_errors(self):
        r = self.session("refl_v1alpha")
        fds = files(r.ask(file_by_filename="ent/v1/admin.proto"))
        self.assertEqual(fds[0].name, "ent/v1/admin.proto")
        self.assertIn("ent/v1/types.proto", {f.name for f in fds})
        fds = files(r.ask(file_containing_symbol="grpc.health.v1.Health.Watch"))
        self.assertEqual(fds[0].package, "grpc.health.v1")
        fds = files(r.ask(file_containing_symbol="ent.v1.Reason"))
        self.assertEqual(fds[0].name, "ent/v1/types.proto")
        resp = r.ask(file_containing_symbol="ent.v1.NoSuchThing")
        self.assertEqual(resp.WhichOneof("message_response"), "error_response")
        self.assertEqual(resp.error_response.error_code, grpc.StatusCode.NOT_FOUND.value[0])
        # The stream is still usable after an error answer.
        self.assertIn("grpc.health.v1.Health", self.list_services(r))
        self.assertEqual(r.close(), grpc.StatusCode.OK)

    def test_where_served(self):
        # Over the unix socket (a sidecar's app) it works.
        r = self.session("refl_v1", "unix:" + self.d.path("entd.sock"))
        self.assertIn("ent.v1.EntitlementService", self.list_services(r))
        r.close()
        # Not on the health-only probe listener.
        r = self.session("refl_v1alpha", self.d.probe)
        with self.assertRaises(grpc.RpcError) as cm:
            r.ask(list_services="")
        self.assertEqual(cm.exception.code(), grpc.StatusCode.UNIMPLEMENTED)


if __name__ == "__main__":
    ops.main()
