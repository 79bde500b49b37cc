#!/usr/bin/env python3
"""Generates scenarios/library/relay-*.json (issue 8, seed 002: relay-based replication)
from one base: a primary site tokyo (host h1, array arr1, switch sw1), a relay site chiba
40 km away in its own disaster zone (switch swr, relays), and a standby site osaka 500 km
away (array arr2, host h2, switch sw2). Records go primary -> relay -> standby over
sw1 - swr - sw2; the direct sync and async pairs use the same path."""
import json
import pathlib

LIB = pathlib.Path(__file__).resolve().parent.parent / "scenarios" / "library"


def base(name, seed, description, relays, luns=1, relay_km=40, extra_links=()):
    lus = [{"lun": l, "blocks": 4096, "block_bytes": 512} for l in range(luns)]
    functions = ["xcopy", "remote-sync", "remote-async"]
    relay_ports = [f"{r['name']}/0" for r in relays]
    links = [
        {"a": "h1/0", "b": "sw1/0"},
        {"a": "arr1/0", "b": "sw1/1"},
        {"a": "arr1/1", "b": "sw1/2"},
        {"a": "h2/0", "b": "sw2/0"},
        {"a": "arr2/0", "b": "sw2/1"},
        {"a": "sw1/7", "b": "swr/7", "km": relay_km},
        {"a": "swr/6", "b": "sw2/7", "km": 500 - relay_km},
    ]
    links += [{"a": f"{r['name']}/0", "b": f"swr/{i}"} for i, r in enumerate(relays)]
    links += list(extra_links)
    return {
        "name": name,
        "description": description,
        "seed": seed,
        "topology": {
            "sites": [{"name": "tokyo", "zone": "kanto"}, {"name": "chiba", "zone": "boso"},
                      {"name": "osaka", "zone": "kansai"}],
            "switches": [
                {"name": "sw1", "site": "tokyo", "domain": 1, "ports": 8},
                {"name": "swr", "site": "chiba", "domain": 3, "ports": 8},
                {"name": "sw2", "site": "osaka", "domain": 2, "ports": 8},
            ],
            "arrays": [
                {"name": "arr1", "site": "tokyo", "ports": 2, "functions": functions, "lus": lus},
                {"name": "arr2", "site": "osaka", "ports": 1, "functions": functions, "lus": lus},
            ],
            "hosts": [
                {"name": "h1", "site": "tokyo", "ports": 1},
                {"name": "h2", "site": "osaka", "ports": 1},
            ],
            "relays": relays,
            "links": links,
            "zones": [
                {"name": "z_h1", "members": ["h1/0", "arr1/0"]},
                {"name": "z_rep", "members": ["arr1/1", "arr2/0"] + relay_ports},
                {"name": "z_h2", "members": ["h2/0", "arr2/0"]},
            ],
        },
        "setup": [{"op": "wait", "until": {"fabric": "converged"}}],
        "steps": [],
    }


def relay(name, **kw):
    return {"name": name, "site": "chiba", **kw}


def pair(s, name, lun, mode, **relay_settings):
    """A pair arr1:LUN -> arr2:LUN in its own group `g<name>`, waited for in setup."""
    p = {"op": "pair_create", "name": name, "primary": f"arr1:{lun}", "secondary": f"arr2:{lun}",
         "mode": mode, "group": f"g{name}"}
    if mode == "relay":
        p["relay"] = relay_settings
    s["setup"].append(p)
    s["setup"].append({"op": "wait", "until": {"pair": name, "state": "pair"}})


def workload(at, name, lun, duration, qd=4):
    return {"at": at, "op": "workload", "name": name, "host": "h1", "target": f"arr1:{lun}",
            "mix": "write", "block_bytes": 512, "qd": qd, "duration": duration}


def check(at, **kw):
    return {"at": at, "op": "check", **kw}


def takeover(at, group):
    return {"at": at, "op": "relay_takeover", "standby": "arr2", "group": group}


def settle(at):
    """The takeover answers once the relays drained and the fences are sent; a fence
    reaches a relay one cable latency later."""
    return {"at": at, "op": "wait", "for": "5ms"}


def kept(at, w, lun):
    """Every write acknowledged to h1 is on the standby, which is a prefix of the primary."""
    return [
        check(at, check="no_acked_write_lost", workload=w, volume=f"arr2:{lun}"),
        check(at, check="prefix_consistent", workload=w, volume=f"arr2:{lun}"),
    ]


def write(s):
    (LIB / f"{s['name']}.json").write_text(json.dumps(s, indent=1) + "\n")


def latency():
    s = base("relay-vs-sync-async-500km", 201,
             "Seed 002 R9, the latency benefit: three pairs from tokyo to osaka (500 km), side by side. pr replicates "
             "through the relay r1 at chiba (40 km, outside tokyo's disaster zone): h1's write completes on the local "
             "write plus r1's acknowledgement, a 0.4 ms round trip. ps is a direct sync pair (5 ms round trip), pa an "
             "async one (no wait, but a journal that a disaster takes with it). Then tokyo is destroyed with all three "
             "writing: after the relay takeover at arr2 (r1 drained, then fenced) the relay pair, like the sync pair, "
             "lost nothing acknowledged; the async pair lost its journal's tail (RPO > 0).",
             [relay("r1")], luns=3)
    pair(s, "pr", 0, "relay", relays=["r1"], source=1)
    pair(s, "ps", 1, "sync")
    pair(s, "pa", 2, "async")
    s["steps"] = [
        workload("0ms", "lat_relay", 0, "30ms", qd=1),
        workload("0ms", "lat_sync", 1, "30ms", qd=1),
        workload("0ms", "lat_async", 2, "30ms", qd=1),
        check("1ms", check="workload_errors", workload="lat_sync"),
        check("1ms", check="workload_errors", workload="lat_relay", p50_below="lat_sync", p50_at_most="1ms"),
        check("1ms", check="workload_errors", workload="lat_async", p50_below="lat_relay"),
        workload("40ms", "wr", 0, "60ms"),
        workload("40ms", "ws", 1, "60ms"),
        workload("40ms", "wa", 2, "60ms"),
        {"at": "70ms", "op": "disaster", "site": "tokyo"},
        takeover("71ms", "gpr"),
        {"at": "71ms", "op": "takeover", "pair": "ps", "host": "h2"},
        {"at": "71ms", "op": "takeover", "pair": "pa", "host": "h2"},
        check("90ms", check="rpo_at_most", workload="wr", volume="arr2:0", writes=0),
        check("90ms", check="rpo_at_most", workload="ws", volume="arr2:1", writes=0),
        check("90ms", check="rpo_at_most", workload="wa", volume="arr2:2", writes=1000000),
        *kept("90ms", "wr", 0),
        *kept("90ms", "ws", 1),
        check("90ms", check="prefix_consistent", workload="wa", volume="arr2:2"),
        check("91ms", check="relay_standby", array="arr2", group="gpr", fenced=True),
        check("91ms", check="relay_state", relay="r1", held_records=0, fenced=[1]),
    ]
    write(s)


def drain():
    s = base("relay-disaster-drain", 202,
             "Seed 002 §4.3 and R2: the relay r1 keeps a non-volatile log and defers forwarding (records go to osaka "
             "once 30 ms old), so when tokyo is destroyed it holds the last writes h1 was answered for. The takeover at "
             "arr2 asks r1 to forward everything (RELAY CONTROL forward), waits until it holds nothing, then fences "
             "tokyo's source at r1 and at arr2: every acknowledged write is on arr2:0.",
             [relay("r1", durability="non_volatile", schedule={"mode": "deferred", "max_age": "30ms"})])
    pair(s, "pr", 0, "relay", relays=["r1"], source=1, drain_timeout="200ms")
    s["steps"] = [
        workload("0ms", "w", 0, "100ms"),
        {"at": "60ms", "op": "disaster", "site": "tokyo"},
        check("61ms", check="relay_state", relay="r1", fenced=[]),
        takeover("62ms", "gpr"),
        settle("62ms"),
        check("63ms", check="relay_state", relay="r1", held_records=0, fenced=[1]),
        *kept("63ms", "w", 0),
        check("63ms", check="rpo_at_most", workload="w", volume="arr2:0", writes=0),
        check("63ms", check="relay_standby", array="arr2", group="gpr", fenced=True),
    ]
    write(s)


def crash():
    s = base("relay-crash-volatile-vs-nv", 203,
             "Seed 002 §4.3 [0114]: two relay pairs side by side, pv through a volatile relay rv and pn through a "
             "non-volatile one rn. The 460 km cable from chiba to osaka is cut at 20 ms: both relays go on "
             "acknowledging h1's writes and hold them. A power cut at 30 ms takes both relays down together with "
             "tokyo (the disaster); the relays come back at 32 ms and the cable at 34 ms. rn replays its log and forwards what it held; rv's buffer is gone, and with it writes h1 was "
             "already answered for (the primary kept no copy once a relay acknowledged, E2, and it is destroyed "
             "anyway). After arr2 takes over, pn lost nothing; pv lost the records rv held (a non-zero RPO), and "
             "arr2:0 is still a prefix of the primary's writes.",
             [relay("rv", resend_after="5ms"), relay("rn", durability="non_volatile", resend_after="5ms")], luns=2)
    pair(s, "pv", 0, "relay", relays=["rv"], source=1)
    pair(s, "pn", 1, "relay", relays=["rn"], source=2)
    s["steps"] = [
        workload("0ms", "wv", 0, "60ms"),
        workload("0ms", "wn", 1, "60ms"),
        {"at": "20ms", "op": "link_down", "port": "swr/6"},
        {"at": "30ms", "op": "crash", "node": "rv"},
        {"at": "30ms", "op": "crash", "node": "rn"},
        {"at": "30ms", "op": "disaster", "site": "tokyo"},
        {"at": "32ms", "op": "restart", "node": "rv"},
        {"at": "32ms", "op": "restart", "node": "rn"},
        {"at": "34ms", "op": "link_up", "port": "swr/6"},
        takeover("80ms", "gpv"),
        takeover("80ms", "gpn"),
        *kept("90ms", "wn", 1),
        check("90ms", check="rpo_at_most", workload="wn", volume="arr2:1", writes=0),
        check("90ms", check="prefix_consistent", workload="wv", volume="arr2:0"),
        check("90ms", check="rpo_at_most", workload="wv", volume="arr2:0", writes=1000000, lost_at_least=10),
    ]
    write(s)


def slow_relay():
    s = base("relay-slow-among-three", 204,
             "Seed 002 emb 4: three relays at chiba, r3 behind a slow 1 Gb/s cable 150 km long (still closer than "
             "osaka). Pair pl picks the least-loaded relay for each record, so r3, slow to acknowledge, carries few; "
             "pair pr turns round-robin and waits on r3 for every third record. Both keep every acknowledged write "
             "through a disaster.",
             [relay("r1"), relay("r2"), relay("r3")], luns=2)
    # r3 hangs off its own switch port behind a long, slow cable.
    topo = s["topology"]
    topo["links"] = [l for l in topo["links"] if l["a"] != "r3/0"]
    topo["links"].append({"a": "r3/0", "b": "swr/2", "km": 150, "gfc": 1})
    pair(s, "pl", 0, "relay", relays=["r1", "r2", "r3"], selection="least_loaded", source=1)
    pair(s, "pr", 1, "relay", relays=["r1", "r2", "r3"], selection="round_robin", source=2)
    s["steps"] = [
        workload("0ms", "lat_ll", 0, "30ms", qd=1),
        workload("0ms", "lat_rr", 1, "30ms", qd=1),
        check("1ms", check="workload_errors", workload="lat_rr"),
        check("1ms", check="workload_errors", workload="lat_ll", p50_below="lat_rr"),
        workload("40ms", "wl", 0, "40ms"),
        workload("40ms", "wr", 1, "40ms"),
        {"at": "60ms", "op": "disaster", "site": "tokyo"},
        takeover("61ms", "gpl"),
        takeover("61ms", "gpr"),
        *kept("70ms", "wl", 0),
        *kept("70ms", "wr", 1),
    ]
    write(s)


def duplicate():
    s = base("relay-duplicate", 205,
             "Seed 002 emb 4, duplicate mode: every record goes to both r1 and r2 and the first acknowledgement "
             "answers h1. r1 crashes (volatile, never restarted) with records in flight; r2 carries them all. arr2 "
             "gets most records twice and applies each once (its per-source sequence watermark), so after tokyo is "
             "destroyed every acknowledged write is on arr2:0, in order.",
             [relay("r1"), relay("r2")])
    pair(s, "pd", 0, "relay", relays=["r1", "r2"], selection="duplicate", source=1)
    s["steps"] = [
        workload("0ms", "w", 0, "60ms"),
        {"at": "30ms", "op": "crash", "node": "r1"},
        {"at": "50ms", "op": "disaster", "site": "tokyo"},
        takeover("51ms", "gpd"),
        settle("51ms"),
        *kept("60ms", "w", 0),
        check("60ms", check="rpo_at_most", workload="w", volume="arr2:0", writes=0),
        check("60ms", check="relay_state", relay="r2", held_records=0, fenced=[1]),
    ]
    write(s)


def restart_points(consistency, seed):
    emb = "7 (delayed-write epochs)" if consistency == "epochs" else "8 (standby snapshots)"
    how = ("arr2 lands the writes of an epoch only when the restart point closing it arrives, and discards the "
           "open epoch at the takeover" if consistency == "epochs" else
           "arr2 lands every write at once and snapshots arr2:0 at each restart point; the takeover rolls arr2:0 "
           "back to the last one")
    s = base(f"relay-{'delayed-write' if consistency == 'epochs' else 'snapshot'}-failover", seed,
             f"Seed 002 emb {emb} and 9: the application on h1 marks restart points at 20 and 40 ms, each carrying its "
             f"state; {how}. Tokyo is destroyed at 55 ms in the middle of the third epoch: the application resumes "
             "at osaka from restart point 2 with the state shipped with it, on the image of that instant (a prefix "
             "of the primary's writes, without the writes after it).",
             [relay("r1")])
    pair(s, "pe", 0, "relay", relays=["r1"], source=1, consistency=consistency)
    s["steps"] = [
        workload("0ms", "w", 0, "70ms", qd=1),
        {"at": "20ms", "op": "restart_point", "pair": "pe", "app_state": "ledger at 20ms"},
        {"at": "40ms", "op": "restart_point", "pair": "pe", "app_state": "ledger at 40ms"},
        {"at": "55ms", "op": "disaster", "site": "tokyo"},
        takeover("56ms", "gpe"),
        check("60ms", check="relay_standby", array="arr2", group="gpe", resumed_point=2, fenced=True),
        check("60ms", check="prefix_consistent", workload="w", volume="arr2:0"),
    ]
    write(s)


def split_brain():
    s = base("relay-split-brain-fenced", 207,
             "Seed 002 §4.6 and R12, split brain prevented: the 40 km cable tokyo-chiba is cut, so osaka loses sight "
             "of tokyo while tokyo itself keeps running. Osaka takes over: arr2 drains r1, then fences tokyo's source "
             "at r1 and at itself, and h2 owns arr2:0. The cable comes back and h1 writes on (w2) at tokyo: r1 refuses "
             "the fenced source's records (RESERVATION CONFLICT), the pair stays suspended, and no write of the old "
             "primary lands on arr2:0.",
             [relay("r1")])
    pair(s, "pf", 0, "relay", relays=["r1"], source=1)
    s["steps"] = [
        workload("0ms", "w", 0, "40ms"),
        {"at": "20ms", "op": "link_down", "port": "sw1/7"},
        takeover("25ms", "gpf"),
        check("39ms", check="relay_state", relay="r1", held_records=0, fenced=[1]),
        check("39ms", check="relay_standby", array="arr2", group="gpf", fenced=True),
        check("39ms", check="prefix_consistent", workload="w", volume="arr2:0"),
        {"at": "40ms", "op": "link_up", "port": "sw1/7"},
        workload("45ms", "w2", 0, "30ms"),
        check("90ms", check="pair_state", pair="pf", state="suspended"),
        check("90ms", check="prefix_consistent", workload="w2", volume="arr2:0"),
        check("91ms", check="read_returns", host="h2", target="arr2:0", lba=0, blocks=8, status="good"),
    ]
    write(s)


def split_brain_late_fence():
    s = base("relay-split-brain-late-fence", 209,
             "Seed 002 R12 when the relay cannot be fenced at once: the 460 km cable chiba-osaka is cut, so osaka "
             "sees neither tokyo nor r1 while tokyo still reaches r1 and goes on writing through it. Osaka takes "
             "over without draining (r1 unreachable) and fences itself; r1's fence is pending. When the cable comes "
             "back arr2 fences r1 as soon as it has a path to it: r1 refuses tokyo's records from then on, the pair "
             "suspends (fenced by the standby), and nothing tokyo wrote after the takeover lands on arr2:0.",
             [relay("r1", resend_after="5ms")])
    pair(s, "pf", 0, "relay", relays=["r1"], source=1, drain_timeout="5ms")
    s["steps"] = [
        workload("0ms", "w", 0, "100ms"),
        {"at": "20ms", "op": "link_down", "port": "swr/6"},
        takeover("38ms", "gpf"),
        check("40ms", check="relay_state", relay="r1", fenced=[]),
        {"at": "45ms", "op": "link_up", "port": "swr/6"},
        check("90ms", check="relay_state", relay="r1", fenced=[1]),
        check("90ms", check="pair_state", pair="pf", state="suspended"),
        check("120ms", check="prefix_consistent", workload="w", volume="arr2:0"),
        check("120ms", check="relay_standby", array="arr2", group="gpf", fenced=True),
    ]
    write(s)


def fec_losses():
    """Seed 002 emb 5/6 (issue 8 follow-up): FEC on the direct hop over two networks, with
    a lossy port on the first one; a plain direct pair suffers the same losses."""
    lus = [{"lun": l, "blocks": 4096, "block_bytes": 512} for l in range(2)]
    functions = ["xcopy", "remote-sync", "remote-async"]
    s = {
        "name": "relay-fec-losses",
        "description": "Seed 002 emb 5/6, forward error correction (Fig. 17): arr1 (tokyo) replicates to arr2 (osaka, "
                       "500 km) over two independent networks, sw1-sw2 (arr1/1 to arr2/0) and sw3-sw4 (arr1/2 to "
                       "arr2/1). The ISL port sw2/7 has bit errors: every 5th frame it receives is discarded. pf "
                       "is a FEC relay pair, 4 data + 2 parity units per record, data units on the first network, "
                       "parity on the second: the standby restores a record from any 4 units and each host write "
                       "completes as soon as the standby holds them, without waiting for a lost unit. pf keeps its "
                       "median at one round trip and stays in pair. pp is a plain direct relay pair to arr2/0 over "
                       "the lossy network: its first lost frame ends the record's exchange in a timeout, the standby "
                       "counts as not reachable and pp suspends. Tokyo is then destroyed; after the relay takeover "
                       "nothing h1 saw acknowledged on pf is lost.",
        "seed": 211,
        "topology": {
            "sites": [{"name": "tokyo", "zone": "kanto"}, {"name": "osaka", "zone": "kansai"}],
            "switches": [
                {"name": "sw1", "site": "tokyo", "domain": 1, "ports": 8},
                {"name": "sw2", "site": "osaka", "domain": 2, "ports": 8},
                {"name": "sw3", "site": "tokyo", "domain": 3, "ports": 8},
                {"name": "sw4", "site": "osaka", "domain": 4, "ports": 8},
            ],
            "arrays": [
                {"name": "arr1", "site": "tokyo", "ports": 3, "functions": functions, "lus": lus},
                {"name": "arr2", "site": "osaka", "ports": 2, "functions": functions, "lus": lus},
            ],
            "hosts": [
                {"name": "h1", "site": "tokyo", "ports": 1},
                {"name": "h2", "site": "osaka", "ports": 1},
            ],
            "links": [
                {"a": "h1/0", "b": "sw1/0"},
                {"a": "arr1/0", "b": "sw1/1"},
                {"a": "arr1/1", "b": "sw1/2"},
                {"a": "arr1/2", "b": "sw3/2"},
                {"a": "h2/0", "b": "sw2/0"},
                {"a": "arr2/0", "b": "sw2/1"},
                {"a": "arr2/1", "b": "sw4/1"},
                {"a": "sw1/7", "b": "sw2/7", "km": 500},
                {"a": "sw3/7", "b": "sw4/7", "km": 500},
            ],
            "zones": [
                {"name": "z_h1", "members": ["h1/0", "arr1/0"]},
                {"name": "z_rep", "members": ["arr1/1", "arr2/0"]},
                {"name": "z_rep2", "members": ["arr1/2", "arr2/1"]},
                {"name": "z_h2", "members": ["h2/0", "arr2/0"]},
            ],
        },
        "setup": [{"op": "wait", "until": {"fabric": "converged"}}],
        "steps": [],
    }
    pair(s, "pf", 0, "relay", source=1, fec={"data": 4, "parity": 2}, networks=2)
    pair(s, "pp", 1, "relay", source=2, relays=["arr2/0"])
    s["steps"] = [
        {"at": "0ms", "op": "port_errors", "port": "sw2/7", "drop_every": 5},
        workload("1ms", "wf", 0, "600ms", qd=4),
        workload("1ms", "wp", 1, "600ms", qd=4),
        check("700ms", check="port_errors_at_least", port="sw2/7", at_least=10),
        # One round trip (5 ms at 500 km) per write: no write waited for a lost unit.
        check("700ms", check="workload_errors", workload="wf", p50_at_most="6ms"),
        check("700ms", check="pair_state", pair="pf", state="pair"),
        # The plain pair's lost frame ends its record's exchange in a timeout: the
        # standby counts as not reachable and the pair suspends.
        check("700ms", check="pair_state", pair="pp", state="suspended"),
        {"at": "710ms", "op": "disaster", "site": "tokyo"},
        takeover("711ms", "gpf"),
        *kept("760ms", "wf", 0),
        check("761ms", check="relay_standby", array="arr2", group="gpf", fenced=True),
    ]
    write(s)


if __name__ == "__main__":
    latency()
    drain()
    crash()
    slow_relay()
    duplicate()
    restart_points("epochs", 206)
    restart_points("snapshots", 208)
    split_brain()
    split_brain_late_fence()
    fec_losses()
