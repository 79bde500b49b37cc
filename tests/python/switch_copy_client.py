"""Drives an intelligent switch's fcsim.v1.Copy service from Python grpcio: the switch
runs copy pairs of its virtual LUs itself when no array holding both volumes can (here
gamma and delta live on arr2, which runs no local pairs). Create the pair at the
switch's engine node, see it reported as run by the switch, wait for pair, split it,
refuse bad arguments with INVALID_ARGUMENT naming the field, and delete it.

Usage: python3 tests/python/switch_copy_client.py CONTROL_ADDR   (a fabric started by
`fcsim up scenarios/library/vsw-pairs.json`). Prints one line per step; exits non-zero
on failure.
"""

import sys
import tempfile

import grpc

from copy_client import wait_state
from host_client import TIMEOUT, Failure, check, expect_rpc_error, generate_stubs, step


def main(control_addr):
    with tempfile.TemporaryDirectory(prefix="fcsim-pystubs-") as tmp:
        pb = generate_stubs(tmp)
        ctl, cgrpc = pb["control"], pb["control_grpc"]
        cpb, copy_grpc = pb["copy"], pb["copy_grpc"]
        nodes = cgrpc.ControlStub(grpc.insecure_channel(control_addr)).ListNodes(
            ctl.ListNodesRequest(), timeout=TIMEOUT
        ).nodes
        engine = next((n for n in nodes if n.name == "sw1.ve"), None)
        check(engine is not None, f"ListNodes: no sw1.ve among {[n.name for n in nodes]}")
        copy = copy_grpc.CopyStub(grpc.insecure_channel(engine.address))

        r = copy.CreatePair(
            cpb.CreatePairRequest(name="pyv", primary_lun=2, mode="local", secondary_lun=3),
            timeout=TIMEOUT,
        )
        check(r.pairs and r.pairs[0].executor == "switch", f"CreatePair: {r}")
        step(f"Copy.CreatePair at sw1.ve: pyv {r.pairs[0].state}, run by {r.pairs[0].executor}")
        wait_state(copy, cpb, "pyv", "pair")
        step("Copy.PairStatus: pyv reached pair")

        r = copy.SplitPair(cpb.SplitPairRequest(pair="pyv"), timeout=TIMEOUT)
        check(r.pairs[0].primary_status == "split", f"SplitPair: primary status {r.pairs[0].primary_status}")
        wait_state(copy, cpb, "pyv", "split")
        step("Copy.SplitPair: pyv split")

        expect_rpc_error(
            lambda: copy.CreatePair(cpb.CreatePairRequest(name="bad", primary_lun=2, mode="mirror"), timeout=TIMEOUT),
            grpc.StatusCode.INVALID_ARGUMENT, "mode:", "CreatePair with mode 'mirror'",
        )
        expect_rpc_error(
            lambda: copy.CreatePair(
                cpb.CreatePairRequest(name="bad", primary_lun=9, mode="local", secondary_lun=3), timeout=TIMEOUT
            ),
            grpc.StatusCode.INVALID_ARGUMENT, "primary:", "CreatePair of a virtual LU that does not exist",
        )
        step("Copy at the switch: bad arguments refused, naming the field")

        copy.DeletePair(cpb.PairRequest(pair="pyv"), timeout=TIMEOUT)
        r = copy.PairStatus(cpb.PairRequest(), timeout=TIMEOUT)
        check(not any(p.name == "pyv" for p in r.pairs), f"DeletePair: pairs left {r.pairs}")
        step("Copy.DeletePair: pyv gone")


if __name__ == "__main__":
    try:
        main(sys.argv[1])
    except Failure as e:
        print(f"FAILED: {e}", file=sys.stderr)
        sys.exit(1)
