"""Writes the three-site scenarios of seed 000 into scenarios/library/ (3dc-*.json).

Usage: python3 scripts/gen-3dc-scenarios.py scenarios/library

Every scenario shares one topology: site 1 (h1, arr1 with P1 = arr1:0 and S1v = arr1:1),
site 3 (arr3, V3 = arr3:0, 10 km) and site 2 (arr2, V2 = arr2:0, h2, 100 km), and one
setup (the pairs formed, one remote image taken). Edit here and regenerate rather than
editing the JSON by hand.
"""
import json, sys
def topo():
    arr = lambda name, site, ports, luns: {"name": name, "site": site, "ports": ports,
        "functions": ["xcopy", "local-pair", "remote-sync", "remote-async"],
        "lus": [{"lun": l, "blocks": 2048, "block_bytes": 512} for l in luns]}
    return {
      "sites": [{"name": "site1"}, {"name": "site3"}, {"name": "site2"}],
      "switches": [{"name": "sw1", "site": "site1", "domain": 1, "ports": 8},
                   {"name": "sw3", "site": "site3", "domain": 3, "ports": 8},
                   {"name": "sw2", "site": "site2", "domain": 2, "ports": 8}],
      "arrays": [arr("arr1", "site1", 2, [0, 1]), arr("arr3", "site3", 1, [0]), arr("arr2", "site2", 1, [0])],
      "hosts": [{"name": "h1", "site": "site1", "ports": 1}, {"name": "h2", "site": "site2", "ports": 1}],
      "links": [{"a": "h1/0", "b": "sw1/0"}, {"a": "arr1/0", "b": "sw1/1"}, {"a": "arr1/1", "b": "sw1/2"},
                {"a": "arr3/0", "b": "sw3/1"}, {"a": "arr2/0", "b": "sw2/1"}, {"a": "h2/0", "b": "sw2/0"},
                {"a": "sw1/7", "b": "sw3/7", "km": 10}, {"a": "sw1/6", "b": "sw2/6", "km": 100},
                {"a": "sw3/6", "b": "sw2/7", "km": 100}],
      "zones": [{"name": "z_h1", "members": ["h1/0", "arr1/0"]},
                {"name": "z_rep", "members": ["arr1/1", "arr3/0", "arr2/0"]},
                {"name": "z_h2", "members": ["h2/0", "arr2/0"]}]}

def setup(remote_rate=None):
    rem = {"op": "pair_create", "name": "pr0", "primary": "arr1:1", "secondary": "arr2:0", "mode": "async", "group": "cg-rem"}
    if remote_rate: rem["copy_rate"] = remote_rate
    return [{"op": "wait", "until": {"fabric": "converged"}},
      {"op": "pair_create", "name": "pl0", "primary": "arr1:0", "secondary": "arr1:1", "mode": "local", "group": "cg-loc"},
      {"op": "pair_create", "name": "ps0", "primary": "arr1:0", "secondary": "arr3:0", "mode": "sync", "group": "cg-sync"},
      {"op": "wait", "until": {"pair": "pl0", "state": "pair"}},
      {"op": "wait", "until": {"pair": "ps0", "state": "pair"}},
      {"op": "pair_split", "pair": "cg-loc"},
      {"op": "wait", "until": {"pair": "pl0", "state": "split"}},
      rem,
      {"op": "wait", "until": {"pair": "pr0", "state": "pair"}},
      {"op": "pair_split", "pair": "cg-rem"},
      {"op": "wait", "until": {"pair": "pr0", "state": "split"}},
      {"op": "pair_resync", "pair": "cg-loc"},
      {"op": "wait", "until": {"pair": "pl0", "state": "pair"}}]

def workload(name, at, dur, qd=2):
    return {"at": at, "op": "workload", "name": name, "host": "h1", "target": "arr1:0", "mix": "write",
            "block_bytes": 4096, "qd": qd, "duration": dur}

def failover(rule="safe"):
    return {"op": "failover_3dc", "sync": "cg-sync", "remote": "cg-rem", "rule": rule,
            "pairs": [{"name": "f0", "primary": "arr3:0", "secondary": "arr2:0"}]}

def scenario(name, desc, steps, remote_rate=None, seed=60):
    return {"name": name, "description": desc, "seed": seed, "topology": topo(), "setup": setup(remote_rate), "steps": steps}

def disaster_run(window, phase, desc, dis_at, remote_rate=None, rule="safe", expect_equal=True, cycles=1, slow=None, margin=None):
    steps = [workload("w0", "0ms", "40ms")]
    for i in range(cycles - 1):
        steps.append({"at": f"{2+i*20}ms", "op": "three_dc_cycle", "local": "cg-loc", "remote": "cg-rem", "sync": "cg-sync", "split_at": f"{5+i*20}ms"})
    if slow:
        steps.append({"at": "21ms", "op": "pair_options", "pair": slow, "copy_rate": 2})
    c = {"at": f"{2+(cycles-1)*20}ms", "op": "three_dc_cycle", "local": "cg-loc", "remote": "cg-rem", "sync": "cg-sync", "split_at": f"{5+(cycles-1)*20}ms"}
    if phase: c["stop_after"] = phase
    steps.append(c)
    if margin:
        steps.append({"at": dis_at, "op": "wait", "for": margin})
    steps += [{"at": dis_at, "op": "disaster", "site": "site1"},
              dict(failover(rule), at=dis_at),
              {"at": dis_at, "op": "wait", "until": {"pair": "f0", "state": "pair"}}]
    if expect_equal:
        steps += [{"at": dis_at, "op": "check", "check": "volumes_equal", "a": "arr3:0", "b": "arr2:0"},
                  {"at": dis_at, "op": "check", "check": "no_acked_write_lost", "workload": "w0", "volume": "arr2:0"},
                  {"at": dis_at, "op": "check", "check": "failover_copied", "sync": "cg-sync"}]
    return scenario(f"3dc-window-{window}", desc, steps, remote_rate)


def cycle(at, split_at, stop_after=None):
    c = {"at": at, "op": "three_dc_cycle", "local": "cg-loc", "remote": "cg-rem", "sync": "cg-sync",
         "split_at": split_at}
    if stop_after:
        c["stop_after"] = stop_after
    return c


def after_failover(at, workload="w0"):
    steps = [{"at": at, "op": "wait", "until": {"pair": "f0", "state": "pair"}},
             {"at": at, "op": "check", "check": "volumes_equal", "a": "arr3:0", "b": "arr2:0"},
             {"at": at, "op": "check", "check": "failover_copied", "sync": "cg-sync"}]
    if workload:
        steps.insert(2, {"at": at, "op": "check", "check": "no_acked_write_lost", "workload": workload,
                         "volume": "arr2:0"})
    return steps


def literal_gap(window, phase, what):
    steps = [workload("w0", "0ms", "40ms"), cycle("2ms", "5ms"), cycle("22ms", "25ms", phase),
             {"at": "22ms", "op": "disaster", "site": "site1"},
             dict(failover("literal"), at="22ms"),
             {"at": "22ms", "op": "wait", "until": {"pair": "f0", "state": "pair"}},
             {"at": "22ms", "op": "check", "check": "volumes_equal", "a": "arr3:0", "b": "arr2:0", "differ": True}]
    desc = ("The patent's literal table rule (\"resyncing: the older table, otherwise the newer\") in "
            f"window {window} of seed 000 §7.4 ({what}): the remote pair is not resyncing, so site 3 picks "
            "the newer table, whose base is the split time T, while V2 still holds the image of the split "
            "before. Blocks written only between the two splits are never copied: V2 differs from V3 (the "
            "check lists them). 3dc-window-" + window + " is the same disaster under the safe rule.")
    return scenario(f"3dc-literal-gap-{window}", desc, steps)


def late_clear():
    steps = [{"at": "2ms", "op": "clear_difference", "group": "cg-sync", "clear_at": "1ms", "refused": True},
             {"at": "2ms", "op": "clear_difference", "group": "cg-sync", "clear_at": "2ms", "refused": True},
             {"at": "3ms", "op": "clear_difference", "group": "cg-sync", "clear_at": "6ms"},
             {"at": "4ms", "op": "clear_difference", "group": "cg-sync", "clear_at": "7ms", "refused": True},
             cycle("10ms", "12ms")]
    desc = ("Seed 000 §7.4 item 3 and §7.6 item 3: a clear-difference request whose start time has "
            "already passed at site 3 is refused (clearing then would wipe bits of writes stamped after "
            "it), and so is a second clear while one is pending; a clear in time is taken, and the host "
            "cycle still runs afterwards.")
    return scenario("3dc-late-clear", desc, steps)


def window_h():
    steps = [workload("w0", "0ms", "40ms", qd=16), cycle("2ms", "5ms"), cycle("22ms", "25ms", "remote_pair"),
             {"at": "22ms", "op": "wait", "for": "1500us"},
             {"at": "22ms", "op": "disaster", "site": "site1"},
             dict(failover(), at="22ms")] + after_failover("22ms")
    desc = ("Seed 000 §7.4 item 1, window h combined with e: h1 keeps 16 writes in flight when site 1 is "
            "destroyed, so some writes are on P1 and not yet on V3, and some are on V3 with their "
            "acknowledgement not yet delivered. V3 holds every acknowledged write and perhaps some "
            "unacknowledged ones; the failover copies them to V2 as well: V2 == V3 and nothing "
            "acknowledged is lost.")
    return scenario("3dc-window-h", desc, steps)


def fig7():
    values = [1, 5, 9, 3, 4, 2]
    steps = [cycle("2ms", "5ms")]
    steps += [{"at": "15ms", "op": "write", "host": "h1", "target": "arr1:0", "lba": b + 1, "byte": v}
              for b, v in enumerate(values)]
    steps += [{"at": "20ms", "op": "pair_options", "pair": "pr0", "copy_rate": 1},
              cycle("22ms", "25ms", "remote_resync"),
              {"at": "22ms", "op": "wait", "for": "3200us"},
              {"at": "22ms", "op": "disaster", "site": "site1"},
              {"at": "22ms", "op": "check", "check": "blocks_hold", "volume": "arr2:0", "lba": 1,
               "bytes": [1, 5, 0, 0, 0, 0]},
              dict(failover(), at="22ms")] + after_failover("22ms", workload=None)
    steps.append({"at": "22ms", "op": "check", "check": "blocks_hold", "volume": "arr2:0", "lba": 1,
                  "bytes": values})
    desc = ("Seed 000 Fig. 7 ([0050]–[0052]) exactly: after one cycle, h1 writes blocks 1–6 of P1 with "
            "1, 5, 9, 3, 4, 2; the next cycle splits at T and resyncs S1v → V2 one block per "
            "millisecond. Site 1 is destroyed when V2 has received \"1\" and \"5\" but not \"9\", "
            "so V2 is not yet the last split's image and the table since the last split does not cover "
            "what it lacks; site 3 copies blocks 1–6 from the split-before-last table and V2 then holds "
            "1, 5, 9, 3, 4, 2 and equals V3.")
    return scenario("3dc-fig7", desc, steps)


def link_loss():
    steps = [workload("w0", "0ms", "40ms"), cycle("2ms", "5ms"), cycle("22ms", "25ms", "remote_split"),
             {"at": "22ms", "op": "wait", "for": "1500us"},
             {"at": "22ms", "op": "disaster", "site": "site1"},
             dict(failover(), at="22ms"),
             {"at": "22ms", "op": "pair_options", "pair": "f0", "copy_rate": 1},
             {"at": "22ms", "op": "link_down", "port": "sw3/6"},
             {"at": "22ms", "op": "wait", "until": {"pair": "f0", "state": "suspended"}},
             {"at": "22ms", "op": "check", "check": "volumes_equal", "a": "arr3:0", "b": "arr2:0", "differ": True},
             {"at": "22ms", "op": "link_up", "port": "sw3/6"},
             {"at": "22ms", "op": "wait", "for": "5ms"},
             {"at": "22ms", "op": "pair_options", "pair": "f0", "copy_rate": 1024},
             {"at": "22ms", "op": "pair_resync", "pair": "f0"}] + after_failover("22ms")
    desc = ("Seed 000 §7.4 item 8: the link between site 3 and site 2 fails during the failover's "
            "differential copy V3 → V2. The new pair suspends with the blocks it had not copied still "
            "marked; after the link returns a resync copies them (copying a block twice changes nothing: "
            "V3 is the truth once site 1 is gone) and V2 converges to V3 with nothing acknowledged lost.")
    return scenario("3dc-link-loss", desc, steps)


def clock_skew():
    s = disaster_run("d", "remote_resync", "", "22ms", slow="pr0", margin="1500us", cycles=2)
    for a in s["topology"]["arrays"]:
        if a["name"] == "arr3":
            a["clock_skew_us"] = 1500
    s["name"] = "3dc-clock-skew"
    s["steps"].insert(1, {"at": "1ms", "op": "clear_difference", "group": "cg-sync", "clear_at": "2ms",
                          "refused": True})
    s["description"] = ("Seed 000 §7.4 item 4: site 3's clock runs 1.5 ms ahead of site 1's, which stamps "
        "the writes and splits at T. A clear for a time 1 ms ahead of site 1 has already passed at site 3 "
        "and is refused, so the host cycle asks with margin. Site 3 clears at its own T, 1.5 ms early: "
        "writes stamped before T that arrive after the clear mark the new table too (extra bits, never "
        "missing ones), so a disaster during the remote resync (window d) still ends with V2 == V3 and "
        "nothing acknowledged lost.")
    return s


def group_failover():
    """Window d with a consistency group of two volumes on each site."""
    t = topo()
    for a in t["arrays"]:
        luns = {"arr1": [0, 1, 2, 3], "arr3": [0, 1], "arr2": [0, 1]}[a["name"]]
        a["lus"] = [{"lun": l, "blocks": 2048, "block_bytes": 512} for l in luns]
    pairs = lambda mode, group, prefix, src, dst: [
        {"op": "pair_create", "name": f"{prefix}{i}", "primary": f"{src[0]}:{src[1] + i}",
         "secondary": f"{dst[0]}:{dst[1] + i}", "mode": mode, "group": group} for i in (0, 1)]
    waits = lambda prefix, state: [{"op": "wait", "until": {"pair": f"{prefix}{i}", "state": state}} for i in (0, 1)]
    setup = ([{"op": "wait", "until": {"fabric": "converged"}}]
             + pairs("local", "cg-loc", "pl", ("arr1", 0), ("arr1", 2))
             + pairs("sync", "cg-sync", "ps", ("arr1", 0), ("arr3", 0))
             + waits("pl", "pair") + waits("ps", "pair")
             + [{"op": "pair_split", "pair": "cg-loc"}] + waits("pl", "split")
             + pairs("async", "cg-rem", "pr", ("arr1", 2), ("arr2", 0)) + waits("pr", "pair")
             + [{"op": "pair_split", "pair": "cg-rem"}] + waits("pr", "split")
             + [{"op": "pair_resync", "pair": "cg-loc"}] + waits("pl", "pair"))
    fo = failover()
    fo["pairs"] = [{"name": f"f{i}", "primary": f"arr3:{i}", "secondary": f"arr2:{i}"} for i in (0, 1)]
    steps = [workload("w0", "0ms", "40ms"),
             dict(workload("w1", "0ms", "40ms"), target="arr1:1"),
             {"at": "2ms", "op": "three_dc_cycle", "local": "cg-loc", "remote": "cg-rem", "sync": "cg-sync", "split_at": "5ms"},
             {"at": "21ms", "op": "pair_options", "pair": "cg-rem", "copy_rate": 2},
             {"at": "22ms", "op": "three_dc_cycle", "local": "cg-loc", "remote": "cg-rem", "sync": "cg-sync",
              "split_at": "25ms", "stop_after": "remote_resync"},
             {"at": "22ms", "op": "wait", "for": "1500us"},
             {"at": "22ms", "op": "disaster", "site": "site1"},
             dict(fo, at="22ms")]
    steps += [dict(w, at="22ms") for w in waits("f", "pair")]
    for i in (0, 1):
        steps += [{"at": "22ms", "op": "check", "check": "volumes_equal", "a": f"arr3:{i}", "b": f"arr2:{i}"},
                  {"at": "22ms", "op": "check", "check": "no_acked_write_lost", "workload": f"w{i}", "volume": f"arr2:{i}"}]
    steps.append({"at": "22ms", "op": "check", "check": "failover_copied", "sync": "cg-sync"})
    desc = ("Seed 000 §7.6 item 8: the consistency group holds two volumes at every site (P1a/P1b → "
            "V3a/V3b synchronously, S1va/S1vb → V2a/V2b asynchronously). Site 1 is destroyed during the "
            "remote resync (window d); site 3 chooses one generation for the whole group and copies each "
            "volume's marked blocks, so both V2 volumes come from the same image: each equals its V3 and "
            "nothing acknowledged on either is lost.")
    return {"name": "3dc-group", "description": desc, "seed": 61, "topology": t, "setup": setup, "steps": steps}

if __name__ == "__main__":
    out = sys.argv[1]
    A = "After one full cycle, a site-1 disaster in the second (seed 000 §7.4 item 1, window {w}: {what}) while h1 writes P1 (arr1:0), which is mirrored synchronously to V3 (arr3:0, 10 km) and cut into point-in-time images at S1v (arr1:1) carried asynchronously to V2 (arr2:0, 100 km). Site 2 reports its remote pair's state and V2's image time, takes V2 over, and site 3 copies only the blocks of the difference table chosen by the safe rule: V2 then equals V3, no acknowledged write is lost, and fewer blocks than a full copy move."
    runs = [
      ("a", "requested", "after S911/S912, before the split time passed", "3ms", None, None),
      ("b", "time_passed", "the split time passed at site 3, S914 not done", "2ms", None, None),
      ("c", "split_done", "split and clear complete, remote pair still split: V2 is the image before last while the newer table starts at T", "2ms", None, None),
      ("d", "remote_resync", "during the remote resync (Fig. 11B)", "2ms", "pr0", "1500us"),
      ("e", "remote_pair", "remote pair back to pair, not split yet", "2ms", None, "1500us"),
      ("f", "remote_split", "remote pair split: V2 is the image at T", "2ms", None, "1500us"),
      ("g", "local_resync", "during the local resync (Fig. 11A)", "2ms", "pl0", "1500us"),
    ]
    for w, phase, what, at, slow, margin in runs:
        s = disaster_run(w, phase, A.format(w=w, what=what), "23ms" if w == "a" else "22ms", slow=slow, margin=margin, cycles=2)
        json.dump(s, open(f"{out}/3dc-window-{w}.json", "w"), indent=1, ensure_ascii=False)
    more = [literal_gap("b", "time_passed", "the split time passed at site 3, the remote pair not yet resyncing"),
            literal_gap("c", "split_done", "split and clear complete, the remote pair still split"),
            late_clear(), window_h(), fig7(), link_loss(), clock_skew(), group_failover()]
    for s in more:
        json.dump(s, open(f"{out}/{s['name']}.json", "w"), indent=1, ensure_ascii=False)
