"""Drives an array's fcsim.v1.Copy service from Python grpcio, as a storage
administrator's script would: create a local pair on arr1, wait for it to reach
pair, split it (acknowledged at once), wait for split, refuse bad arguments with
INVALID_ARGUMENT naming the field, and delete the pair.

Usage: python3 tests/python/copy_client.py CONTROL_ADDR   (a fabric started by
`fcsim up scenarios/library/copy-basics.json`). Stubs come from proto/ at run time
(host_client.generate_stubs). Prints one line per step; exits non-zero on failure.
"""

import sys
import tempfile
import time

import grpc

from host_client import TIMEOUT, Failure, check, expect_rpc_error, generate_stubs, step


def wait_state(copy, cpb, name, state, limit=20.0):
    deadline = time.monotonic() + limit
    while True:
        r = copy.PairStatus(cpb.PairRequest(pair=name), timeout=TIMEOUT)
        p = next((x for x in r.pairs if x.name == name), None)
        check(p is not None, f"PairStatus: no pair {name} in {r}")
        if p.state == state:
            return p
        if time.monotonic() > deadline:
            raise Failure(f"pair {name} stayed {p.state} ({p.diff_blocks} blocks to copy), never {state}")
        time.sleep(0.05)


def main(control_addr):
    with tempfile.TemporaryDirectory(prefix="fcsim-pystubs-") as tmp:
        pb = generate_stubs(tmp)
        ctl, cgrpc = pb["control"], pb["control_grpc"]
        cpb, copy_grpc = pb["copy"], pb["copy_grpc"]
        nodes = cgrpc.ControlStub(grpc.insecure_channel(control_addr)).ListNodes(
            ctl.ListNodesRequest(), timeout=TIMEOUT
        ).nodes
        arr1 = next((n for n in nodes if n.name == "arr1"), None)
        check(arr1 is not None, f"ListNodes: no arr1 among {[n.name for n in nodes]}")
        copy = copy_grpc.CopyStub(grpc.insecure_channel(arr1.address))

        r = copy.CreatePair(
            cpb.CreatePairRequest(
                name="py", primary_lun=0, mode="local", secondary_lun=1,
                options=cpb.PairOptions(copy_rate=512, strategy="M"),
            ),
            timeout=TIMEOUT,
        )
        check(r.pairs and r.pairs[0].state == "copy", f"CreatePair: {r}")
        step(f"Copy.CreatePair: py {r.pairs[0].state}, {r.pairs[0].diff_blocks} blocks to copy")
        p = wait_state(copy, cpb, "py", "pair")
        step(f"Copy.PairStatus: py reached pair, {p.copied_blocks} blocks copied")

        r = copy.SplitPair(cpb.SplitPairRequest(pair="py"), timeout=TIMEOUT)
        check(r.pairs[0].primary_status == "split", f"SplitPair: primary status {r.pairs[0].primary_status}")
        step(f"Copy.SplitPair: primary {r.pairs[0].primary_status}, secondary {r.pairs[0].secondary_status}")
        wait_state(copy, cpb, "py", "split")
        step("Copy.PairStatus: py split")

        expect_rpc_error(
            lambda: copy.CreatePair(cpb.CreatePairRequest(name="bad", primary_lun=0, mode="mirror"), timeout=TIMEOUT),
            grpc.StatusCode.INVALID_ARGUMENT, "mode:", "CreatePair with mode 'mirror'",
        )
        expect_rpc_error(
            lambda: copy.SplitPair(cpb.SplitPairRequest(pair=""), timeout=TIMEOUT),
            grpc.StatusCode.INVALID_ARGUMENT, "pair:", "SplitPair without a pair",
        )
        expect_rpc_error(
            lambda: copy.ResyncPair(cpb.PairRequest(pair="nope"), timeout=TIMEOUT),
            grpc.StatusCode.NOT_FOUND, "pair:", "ResyncPair of an unknown pair",
        )
        step("Copy: bad arguments refused, naming the field")

        copy.DeletePair(cpb.PairRequest(pair="py"), timeout=TIMEOUT)
        r = copy.PairStatus(cpb.PairRequest(), timeout=TIMEOUT)
        check(not r.pairs, f"DeletePair: pairs left {r.pairs}")
        step("Copy.DeletePair: arr1 has no pairs")


if __name__ == "__main__":
    try:
        main(sys.argv[1])
    except Failure as e:
        print(f"FAILED: {e}", file=sys.stderr)
        sys.exit(1)
