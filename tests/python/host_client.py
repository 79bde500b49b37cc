#!/usr/bin/env python3
"""Drives a live fabric's `fcsim.v1.Host` service from Python grpcio.

Proves the gRPC API is usable from outside Rust. Usage:

    python3 tests/python/host_client.py 127.0.0.1:7700

with `fcsim up scenarios/library/host-io-basics.json --control 127.0.0.1:7700`
running. Stubs are generated at run time from `proto/fcsim/v1/*.proto` into a
temporary directory with grpc_tools.protoc. Prints one line per step and exits
non-zero with a message on the first failure. Needs
`pip install -r tests/python/requirements.txt`.
"""

import glob
import importlib
import os
import sys
import tempfile
import time

import grpc
from grpc_tools import protoc
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from grpc_reflection.v1alpha import reflection_pb2

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PROTO_ROOT = os.path.join(REPO, "proto")
DEVICE = "arr1:0"
TIMEOUT = 10.0  # seconds, per RPC


class Failure(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise Failure(msg)


def step(msg):
    print(f"ok: {msg}", flush=True)


def generate_stubs(out_dir):
    """Compiles proto/fcsim/v1/*.proto into out_dir and imports the modules."""
    protos = sorted(glob.glob(os.path.join(PROTO_ROOT, "fcsim", "v1", "*.proto")))
    check(protos, f"no .proto files under {PROTO_ROOT}/fcsim/v1")
    rel = [os.path.relpath(p, PROTO_ROOT) for p in protos]
    # grpc_tools' own include dir carries google/protobuf/*.proto.
    well_known = os.path.join(os.path.dirname(protoc.__file__), "_proto")
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"-I{well_known}",
        f"--python_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *rel,
    ]
    rc = protoc.main(args)
    check(rc == 0, f"grpc_tools.protoc failed (exit {rc}) on {' '.join(rel)}")
    sys.path.insert(0, out_dir)
    mods = {}
    for name in ("control", "host", "copy"):
        mods[name] = importlib.import_module(f"fcsim.v1.{name}_pb2")
        mods[name + "_grpc"] = importlib.import_module(f"fcsim.v1.{name}_pb2_grpc")
    step(f"generated Python stubs from {len(rel)} .proto files")
    return mods


def expect_rpc_error(fn, code, prefix, what):
    try:
        resp = fn()
    except grpc.RpcError as e:
        check(
            e.code() == code,
            f"{what}: expected {code.name}, got {e.code().name}: {e.details()!r}",
        )
        details = e.details() or ""
        check(
            details.startswith(prefix),
            f"{what}: {code.name} details should start with {prefix!r}, got {details!r}",
        )
        return details
    raise Failure(f"{what}: expected gRPC {code.name}, got a response: {resp}")


def scsi_good(result, what):
    check(result is not None, f"{what}: response has no result")
    check(
        not result.transport_error,
        f"{what}: transport error {result.transport_error!r}",
    )
    check(
        result.status == 0,
        f"{what}: SCSI status {result.status} ({result.sense_text!r}), expected GOOD",
    )


# --- health and reflection, without the .proto files --------------------------


def health_check(channel, addr, service):
    """grpc.health.v1.Health/Check with hand-encoded protobuf (no stubs)."""
    check_rpc = channel.unary_unary(
        "/grpc.health.v1.Health/Check",
        request_serializer=lambda b: b,
        response_deserializer=lambda b: b,
    )
    # HealthCheckRequest{service = ""}: the empty message.
    resp = check_rpc(b"", timeout=TIMEOUT)
    # HealthCheckResponse{status = SERVING (1)}: field 1, varint → 0x08 0x01.
    check(
        resp == b"\x08\x01",
        f"health {addr}: expected SERVING (08 01), got {resp.hex() or '<empty>'}",
    )
    # The same for the node's own service: field 1 (string), length-delimited.
    svc = service.encode()
    resp = check_rpc(b"\x0a" + bytes([len(svc)]) + svc, timeout=TIMEOUT)
    check(
        resp == b"\x08\x01",
        f"health {addr} {service}: expected SERVING, got {resp.hex() or '<empty>'}",
    )
    step(f"grpc.health.v1.Health/Check on {addr}: server and {service} SERVING")


def reflection_call(channel, requests):
    """grpc.reflection.v1 ServerReflectionInfo (the v1alpha messages are identical)."""
    info = channel.stream_stream(
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
        response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
    )
    out = list(info(iter(requests), timeout=TIMEOUT))
    check(len(out) == len(requests), f"reflection: {len(requests)} requests, {len(out)} answers")
    for r in out:
        check(
            not r.HasField("error_response"),
            f"reflection error: {r.error_response.error_code} {r.error_response.error_message}",
        )
    return out


def reflection_check(channel, addr):
    """Lists services and calls Host.ListDevices with descriptors fetched by reflection."""
    (listed,) = reflection_call(
        channel, [reflection_pb2.ServerReflectionRequest(list_services="*")]
    )
    services = {s.name for s in listed.list_services_response.service}
    for want in ("fcsim.v1.Host", "fcsim.v1.Link", "grpc.health.v1.Health"):
        check(want in services, f"reflection on {addr}: {want} not listed in {sorted(services)}")
    (files,) = reflection_call(
        channel,
        [reflection_pb2.ServerReflectionRequest(file_containing_symbol="fcsim.v1.Host")],
    )
    protos = {}
    for raw in files.file_descriptor_response.file_descriptor_proto:
        fd = descriptor_pb2.FileDescriptorProto.FromString(raw)
        protos[fd.name] = fd
    pool = descriptor_pool.DescriptorPool()
    added = set()
    while len(added) < len(protos):
        ready = [
            fd
            for name, fd in protos.items()
            if name not in added and all(d in added for d in fd.dependency)
        ]
        check(ready, f"reflection: unresolved imports among {sorted(protos)}")
        for fd in ready:
            pool.Add(fd)
            added.add(fd.name)
    method = pool.FindServiceByName("fcsim.v1.Host").methods_by_name["ListDevices"]
    req_cls = message_factory.GetMessageClass(method.input_type)
    resp_cls = message_factory.GetMessageClass(method.output_type)
    call = channel.unary_unary(
        "/fcsim.v1.Host/ListDevices",
        request_serializer=req_cls.SerializeToString,
        response_deserializer=resp_cls.FromString,
    )
    resp = call(req_cls(), timeout=TIMEOUT)
    names = [d.name for d in resp.devices]
    check(DEVICE in names, f"ListDevices via reflection descriptors: {DEVICE} not in {names}")
    step(
        f"reflection on {addr}: {len(services)} services; "
        f"ListDevices through reflected descriptors sees {names}"
    )


# --- the Host service ---------------------------------------------------------


def main(control_addr):
    with tempfile.TemporaryDirectory(prefix="fcsim-pystubs-") as tmp:
        pb = generate_stubs(tmp)
        cpb, cgrpc, hpb, hgrpc = pb["control"], pb["control_grpc"], pb["host"], pb["host_grpc"]

        control_ch = grpc.insecure_channel(control_addr)
        control = cgrpc.ControlStub(control_ch)
        nodes = control.ListNodes(cpb.ListNodesRequest(), timeout=TIMEOUT).nodes
        h1 = next((n for n in nodes if n.name == "h1"), None)
        check(h1 is not None, f"ListNodes: no node h1 among {[n.name for n in nodes]}")
        check(h1.kind == "host", f"ListNodes: h1 is a {h1.kind!r}, expected 'host'")
        check(h1.alive, "ListNodes: h1 is not alive")
        check(h1.address, "ListNodes: h1 has no address")
        step(f"Control.ListNodes: {len(nodes)} nodes, h1 at {h1.address}")

        health_check(control_ch, control_addr, "fcsim.v1.Control")

        ch = grpc.insecure_channel(h1.address)
        host = hgrpc.HostStub(ch)

        # Discovery runs after fabric login: allow it a moment. h1 has one HBA port per
        # switch and arr1 one target port per switch; with the default all-access zoning
        # each host port logs in to both target ports: 2 x 2 distinct paths (I_T nexuses).
        deadline = time.monotonic() + 10.0
        while True:
            devices = host.ListDevices(hpb.ListDevicesRequest(), timeout=TIMEOUT).devices
            dev = next((d for d in devices if d.name == DEVICE), None)
            nexus = [(p.port, p.target_wwpn) for p in dev.paths] if dev else []
            if (
                len(dev.paths if dev else []) >= 2
                and {p for p, _ in nexus} == {0, 1}
                and len({w for _, w in nexus}) == 2
                and len(set(nexus)) == 4
            ):
                break
            if time.monotonic() > deadline:
                seen = {d.name: [(p.port, p.target_wwpn, p.state) for p in d.paths] for d in devices}
                raise Failure(
                    f"ListDevices: {DEVICE} never showed paths from both host ports to both "
                    f"arr1 ports within 10 s; devices: {seen}"
                )
            time.sleep(0.1)
        check(len(nexus) == len(set(nexus)), f"ListDevices: duplicate paths {nexus}")
        check(
            all(p.state == "active" for p in dev.paths),
            f"ListDevices: path states {[p.state for p in dev.paths]}",
        )
        check((dev.blocks, dev.block_bytes) == (8192, 512), f"ListDevices: {dev.blocks} x {dev.block_bytes}")
        step(
            f"Host.ListDevices: {DEVICE} naa={dev.naa} {dev.vendor.strip()!r} {dev.product.strip()!r} "
            f"{len(dev.paths)} paths {sorted((p.port, p.target_fc_id) for p in dev.paths)}"
        )

        health_check(ch, h1.address, "fcsim.v1.Host")
        reflection_check(ch, h1.address)

        r = host.Inquiry(hpb.InquiryRequest(device=DEVICE), timeout=TIMEOUT).result
        scsi_good(r, "Inquiry (standard)")
        check(len(r.data) >= 36, f"Inquiry: {len(r.data)} bytes of standard data, expected >= 36")
        vendor = r.data[8:16]
        check(
            vendor.rstrip(b" ") == b"FCSIM",
            f"Inquiry: vendor (bytes 8..16) is {vendor!r}, expected b'FCSIM   '",
        )
        step(f"Host.Inquiry standard: vendor {vendor.decode(errors='replace')!r} product {r.data[16:32].decode(errors='replace')!r}")

        r = host.Inquiry(hpb.InquiryRequest(device=DEVICE, vpd_page=0x83), timeout=TIMEOUT).result
        scsi_good(r, "Inquiry VPD 83h")
        check(len(r.data) > 4, f"Inquiry VPD 83h: {len(r.data)} bytes, expected a designator list")
        check(r.data[1] == 0x83, f"Inquiry VPD 83h: page code byte is {r.data[1]:#x}")
        step(f"Host.Inquiry vpd_page=0x83: {len(r.data)} bytes")

        rc = host.ReadCapacity(hpb.ReadCapacityRequest(device=DEVICE), timeout=TIMEOUT)
        scsi_good(rc.result, "ReadCapacity")
        check(
            (rc.blocks, rc.block_bytes) == (8192, 512),
            f"ReadCapacity: {rc.blocks} blocks of {rc.block_bytes} bytes, expected 8192 of 512",
        )
        step(f"Host.ReadCapacity: {rc.blocks} x {rc.block_bytes}")

        pattern = bytes((i * 7 + 3) & 0xFF for i in range(8 * 512))
        w = host.Write(hpb.WriteRequest(device=DEVICE, lba=100, data=pattern), timeout=TIMEOUT)
        scsi_good(w.result, "Write lba 100")
        # write_id is the host's history id; the host's first write is id 0.
        r = host.Read(hpb.ReadRequest(device=DEVICE, lba=100, blocks=8), timeout=TIMEOUT).result
        scsi_good(r, "Read lba 100")
        check(len(r.data) == len(pattern), f"Read: {len(r.data)} bytes, expected {len(pattern)}")
        if r.data != pattern:
            first = next(i for i in range(len(pattern)) if r.data[i] != pattern[i])
            raise Failure(f"Read: data differs from what was written, first at byte {first}")
        step(f"Host.Write + Host.Read 8 blocks at lba 100: identical (write_id {w.write_id})")

        r = host.ScsiPassthrough(
            hpb.PassthroughRequest(device=DEVICE, cdb=b"\xff" + bytes(5), data_in_len=0),
            timeout=TIMEOUT,
        )
        check(not r.transport_error, f"ScsiPassthrough: transport error {r.transport_error!r}")
        check(r.status == 2, f"ScsiPassthrough opcode ff: status {r.status}, expected 2 (CHECK CONDITION)")
        check(len(r.sense) >= 13, f"ScsiPassthrough: sense is {len(r.sense)} bytes: {r.sense.hex()}")
        check(
            r.sense[2] & 0x0F == 5,
            f"ScsiPassthrough: sense key {r.sense[2] & 0x0F:#x}, expected 5 (ILLEGAL REQUEST); {r.sense_text!r}",
        )
        check(r.sense[12] == 0x20, f"ScsiPassthrough: ASC {r.sense[12]:#04x}, expected 0x20; {r.sense_text!r}")
        step(f"Host.ScsiPassthrough opcode ff: CHECK CONDITION, {r.sense_text!r}")

        d = expect_rpc_error(
            lambda: host.Read(hpb.ReadRequest(device=DEVICE, lba=0, blocks=0), timeout=TIMEOUT),
            grpc.StatusCode.INVALID_ARGUMENT,
            "blocks",
            "Read blocks=0",
        )
        step(f"Host.Read blocks=0: INVALID_ARGUMENT {d!r}")
        d = expect_rpc_error(
            lambda: host.Write(hpb.WriteRequest(device="nosuch", lba=0, data=bytes(512)), timeout=TIMEOUT),
            grpc.StatusCode.INVALID_ARGUMENT,
            "device",
            "Write device=nosuch",
        )
        step(f"Host.Write device=nosuch: INVALID_ARGUMENT {d!r}")

        req = hpb.WorkloadRequest(
            name="py",
            device=DEVICE,
            pattern="sequential",
            mix="write",
            block_bytes=4096,
            qd=4,
            count=50,
            verify=True,
            seed=1,
        )
        last = None
        updates = 0
        for p in host.RunWorkload(req, timeout=60.0):
            updates += 1
            last = p
            if p.done:
                break
        check(last is not None and last.done, f"RunWorkload: stream ended without done after {updates} messages")
        check(
            last.errors == 0 and last.verify_failures == 0,
            f"RunWorkload: {last.errors} errors, {last.verify_failures} verify failures; first: {last.first_error!r}",
        )
        check(
            (last.issued, last.writes, last.reads) == (50, 50, 0),
            f"RunWorkload: issued {last.issued}, writes {last.writes}, reads {last.reads}; expected 50, 50, 0",
        )
        # `completed` counts the verify read of every write too.
        check(last.completed == 100, f"RunWorkload: {last.completed} completed, expected 50 writes + 50 verifies")
        check(
            (last.bytes_written, last.bytes_read) == (50 * 4096, 50 * 4096),
            f"RunWorkload: {last.bytes_written} bytes written, {last.bytes_read} read back",
        )
        step(
            f"Host.RunWorkload: {updates} progress messages, {last.completed} done, "
            f"0 errors, p99 {last.p99_latency_us} us"
        )

        hist = host.WriteHistory(hpb.WriteHistoryRequest(device=DEVICE), timeout=TIMEOUT).writes
        check(len(hist) >= 51, f"WriteHistory {DEVICE}: {len(hist)} records, expected >= 51")
        ours = [h for h in hist if h.id == w.write_id]
        check(ours, f"WriteHistory: write {w.write_id} missing")
        h = ours[0]
        check(
            (h.lba, h.blocks, h.block_bytes) == (100, 8, 512),
            f"WriteHistory: write {w.write_id} is lba {h.lba} x {h.blocks} of {h.block_bytes}",
        )
        check(h.outcome == "acked", f"WriteHistory: write {w.write_id} outcome {h.outcome!r}")
        failed = [x for x in hist if x.outcome != "acked"]
        check(not failed, f"WriteHistory: not acked: {[(x.id, x.outcome) for x in failed][:5]}")
        step(f"Host.WriteHistory {DEVICE}: {len(hist)} records, all acked")

        ch.close()
        control_ch.close()
    print("PASS: Python grpcio drove the Host service", flush=True)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print(f"usage: {sys.argv[0]} CONTROL_ADDR (host:port)", file=sys.stderr)
        sys.exit(2)
    try:
        main(sys.argv[1])
    except Failure as e:
        print(f"FAIL: {e}", file=sys.stderr, flush=True)
        sys.exit(1)
    except grpc.RpcError as e:
        print(f"FAIL: unexpected gRPC error {e.code().name}: {e.details()}", file=sys.stderr, flush=True)
        sys.exit(1)
