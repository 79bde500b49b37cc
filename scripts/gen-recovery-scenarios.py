#!/usr/bin/env python3
"""Generates scenarios/library/recovery-*.json (issue 7, seed 001: the protected
recovery copy after a suspended mirror) from one base: a sync pair arr1:0 -> arr2:0 of
512 blocks over a 10 km ISL, h1 writing (w1) while the ISL is cut (the pair suspends),
the ISL back at 300 ms, then a recovery copy (or, for the counter-example, a plain
resync) at 320 ms while h1 writes a little more (w2)."""
import copy
import json
import pathlib

LIB = pathlib.Path(__file__).resolve().parent.parent / "scenarios" / "library"


def base(name, seed, description, recovery=None, luns=1, km=10):
    arrays = []
    for n, site, ports in (("arr1", "tokyo", 2), ("arr2", "osaka", 1)):
        a = {
            "name": n,
            "site": site,
            "ports": ports,
            "functions": ["xcopy", "remote-sync", "remote-async"],
            "lus": [{"lun": l, "blocks": 512, "block_bytes": 512} for l in range(luns)],
        }
        if n == "arr2" and recovery is not None:
            a["recovery"] = recovery
        arrays.append(a)
    return {
        "name": name,
        "description": description,
        "seed": seed,
        "topology": {
            "sites": [{"name": "tokyo"}, {"name": "osaka"}],
            "switches": [
                {"name": "sw1", "site": "tokyo", "domain": 1, "ports": 8},
                {"name": "sw2", "site": "osaka", "domain": 2, "ports": 8},
            ],
            "arrays": arrays,
            "hosts": [
                {"name": "h1", "site": "tokyo", "ports": 1},
                {"name": "h2", "site": "osaka", "ports": 1},
            ],
            "links": [
                {"a": "h1/0", "b": "sw1/0"},
                {"a": "arr1/0", "b": "sw1/1"},
                {"a": "arr1/1", "b": "sw1/2"},
                {"a": "h2/0", "b": "sw2/0"},
                {"a": "arr2/0", "b": "sw2/1"},
                {"a": "sw1/7", "b": "sw2/7", "km": km},
            ],
            "zones": [
                {"name": "z_h1", "members": ["h1/0", "arr1/0"]},
                {"name": "z_rep", "members": ["arr1/1", "arr2/0"]},
                {"name": "z_h2", "members": ["h2/0", "arr2/0"]},
            ],
        },
        "setup": [
            {"op": "wait", "until": {"fabric": "converged"}},
            {"op": "pair_create", "name": "ps", "primary": "arr1:0", "secondary": "arr2:0", "mode": "sync"},
            {"op": "wait", "until": {"pair": "ps", "state": "pair"}},
        ],
        "steps": [
            {"at": "0ms", "op": "workload", "name": "w1", "host": "h1", "target": "arr1:0",
             "mix": "write", "block_bytes": 512, "qd": 2, "duration": "280ms"},
            {"at": "20ms", "op": "link_down", "port": "sw1/7"},
            {"at": "250ms", "op": "check", "check": "pair_state", "pair": "ps", "state": "suspended"},
            {"at": "300ms", "op": "link_up", "port": "sw1/7"},
        ],
    }


def w2(at="322ms"):
    return {"at": at, "op": "workload", "name": "w2", "host": "h1", "target": "arr1:0",
            "mix": "write", "block_bytes": 512, "qd": 1, "count": 40}


def check(at, **kw):
    return {"at": at, "op": "check", **kw}


def write(s):
    (LIB / f"{s['name']}.json").write_text(json.dumps(s, indent=1) + "\n")


def completed():
    s = base("recovery-complete", 101,
             "Seed 001: a sync pair suspends when its replication link is cut while h1 writes (w1); the link comes back and a "
             "protected recovery copy (variant A: arr2 saves the old data of every block before overwriting it) copies the "
             "changed blocks while h1 writes a little more (w2). The copy completes: the pair is back to pair, arr2:0 equals "
             "arr1:0 and holds every acknowledged write.",
             {"protection": "save_old", "cache_tracks": 256})
    s["steps"] += [
        {"at": "320ms", "op": "recover_pair", "pair": "ps", "allowed": "2s"},
        w2(),
        check("330ms", check="workload_errors", workload="w1"),
        check("402ms", check="recovery_outcome", pair="ps", outcome="completed"),
        check("403ms", check="pair_state", pair="ps", state="pair"),
        check("404ms", check="no_acked_write_lost", workload="w2", volume="arr2:0"),
        check("404ms", check="volumes_equal", a="arr1:0", b="arr2:0"),
    ]
    write(s)


def master_dies(variant, seed):
    s = base(f"recovery-master-dies-{'a' if variant == 'save_old' else 'b'}", seed,
             f"Seed 001 §7.4 item 3, variant {'A (save old data)' if variant == 'save_old' else 'B (hold new data)'}: "
             "a protected recovery copy of a suspended sync pair is half way through its 512 changed blocks when tokyo "
             "(the master array arr1, h1, sw1) is destroyed. No completion reaches arr2 within T = 300 ms: its watchdog "
             "rolls the pair back, and arr2:0 holds the image it had at the suspension, a prefix of the primary's writes: "
             "old, never a mixture of old and new blocks. Just after the disaster, before the rollback, variant A's drive "
             "is a mixture (blocks are copied in address order and overwritten in place) while variant B's still holds "
             "the old image (the new blocks are held aside).",
             {"protection": variant, "cache_tracks": 1024})
    s["steps"] += [
        {"at": "320ms", "op": "recover_pair", "pair": "ps", "allowed": "300ms"},
        w2(),
        check("330ms", check="workload_errors", workload="w1"),
        {"at": "400ms", "op": "disaster", "site": "tokyo"},
        # Before the watchdog fires, variant A's drive holds the address-order mixture
        # (the rollback undoes it); variant B's drive still holds the old image.
        check("405ms", check="prefix_consistent", workload="w1", volume="arr2:0", expect=variant == "hold_new"),
        check("700ms", check="recovery_outcome", pair="ps", side="remote", outcome="rolled_back", cause="timeout"),
        check("701ms", check="prefix_consistent", workload="w1", volume="arr2:0"),
    ]
    write(s)


def counter_example():
    s = base("recovery-resync-mixed", 105,
             "The problem seed 001 solves (§7.5 item 13): the same suspended pair is resynchronised the plain way, in "
             "address order (the copier slowed to 2 blocks/ms), and tokyo is destroyed half way. arr2:0 then holds the "
             "new lower blocks and the old upper ones, an order of writes that never existed on arr1: it matches no "
             "instant of the primary's write history.")
    s["steps"] += [
        {"at": "310ms", "op": "pair_options", "pair": "ps", "copy_rate": 2},
        {"at": "320ms", "op": "pair_resync", "pair": "ps"},
        check("330ms", check="workload_errors", workload="w1"),
        {"at": "450ms", "op": "disaster", "site": "tokyo"},
        check("460ms", check="prefix_consistent", workload="w1", volume="arr2:0", expect=False),
    ]
    write(s)


def exhausted():
    s = base("recovery-save-exhausted", 106,
             "Seed 001 §7.4 item 6: arr2's save area is tiny (64 cache blocks, no parity groups, no spares) and keeping "
             "RAID5; the recovery copy of 512 changed blocks runs out of it. arr2 never overwrites a block it cannot "
             "protect: it refuses the write and rolls the whole session back; arr1 reports the rollback "
             "(save_area_exhausted, no retry) and the pair stays suspended with its bitmap; arr2:0 is its image at the "
             "suspension.",
             {"protection": "save_old", "cache_tracks": 64, "parity_rows": 0, "spare_rows": 0, "keep_raid5": True})
    s["steps"] += [
        {"at": "320ms", "op": "recover_pair", "pair": "ps", "allowed": "2s"},
        check("330ms", check="workload_errors", workload="w1"),
        check("500ms", check="recovery_outcome", pair="ps", outcome="rolled_back", cause="save_area_exhausted"),
        check("501ms", check="recovery_outcome", pair="ps", side="remote", outcome="rolled_back",
              cause="save_area_exhausted"),
        check("502ms", check="pair_state", pair="ps", state="suspended"),
        check("503ms", check="prefix_consistent", workload="w1", volume="arr2:0"),
    ]
    write(s)


def spill():
    s = base("recovery-spill-rollback", 107,
             "Seed 001 §7.4 item 7: arr2 keeps only 32 saved blocks in cache, then spills to a parity group (its RAID5 "
             "protection is borrowed) and a spare disk. Half way through the copy the master array dies; the watchdog "
             "rolls back, reading the old data back from cache, parity and spare tracks (steps 517-519). arr2:0 is its "
             "image at the suspension.",
             {"protection": "save_old", "cache_tracks": 256, "cache_threshold_tracks": 32, "parity_rows": 1,
              "spare_rows": 1, "row_tracks": 512})
    s["steps"] += [
        {"at": "320ms", "op": "recover_pair", "pair": "ps", "allowed": "300ms"},
        check("330ms", check="workload_errors", workload="w1"),
        {"at": "420ms", "op": "crash", "node": "arr1"},
        check("700ms", check="recovery_outcome", pair="ps", side="remote", outcome="rolled_back", cause="timeout",
              row_tracks_at_least=100),
        check("701ms", check="prefix_consistent", workload="w1", volume="arr2:0"),
    ]
    write(s)


def late():
    s = base("recovery-late", 108,
             "Seed 001 §7.4 item 5 / §7.6 item 2: T = 60 ms is shorter than the copy of 512 blocks. arr2's watchdog "
             "fires first and rolls back; the master learns it from arr2's answer (RolledBack, or CompleteRefused for a "
             "completion that came too late) and, with one attempt allowed, ends rolled back: nothing is re-applied, "
             "the pair stays suspended and arr2:0 is its image at the suspension.",
             {"protection": "hold_new"})
    s["steps"] += [
        {"at": "320ms", "op": "recover_pair", "pair": "ps", "allowed": "60ms", "max_attempts": 1},
        check("330ms", check="workload_errors", workload="w1"),
        check("500ms", check="recovery_outcome", pair="ps", outcome="rolled_back", cause="timeout"),
        check("501ms", check="pair_state", pair="ps", state="suspended"),
        check("502ms", check="prefix_consistent", workload="w1", volume="arr2:0"),
    ]
    write(s)


def lost_message():
    s = base("recovery-lost-message", 109,
             "Seed 001 §7.4 item 4: the replication link drops for 3 ms in the middle of a recovery copy, losing a "
             "message (or its answer). The master sends its outstanding request again after its retry interval, arr2 "
             "answers duplicates idempotently, and the copy completes within T: the pair is back to pair and arr2:0 "
             "equals arr1:0.",
             {"protection": "hold_new"})
    s["steps"] += [
        {"at": "320ms", "op": "recover_pair", "pair": "ps", "allowed": "2s"},
        check("330ms", check="workload_errors", workload="w1"),
        {"at": "380ms", "op": "link_down", "port": "sw1/7"},
        {"at": "383ms", "op": "link_up", "port": "sw1/7"},
        check("600ms", check="recovery_outcome", pair="ps", outcome="completed"),
        check("601ms", check="pair_state", pair="ps", state="pair"),
        check("602ms", check="volumes_equal", a="arr1:0", b="arr2:0"),
    ]
    write(s)


def group(unit, seed):
    """Two volumes in one consistency group; the master dies after the first pair
    reached (n = 1: the pairs are recovered one after the other)."""
    name = f"recovery-two-volumes-{unit}"
    if unit == "device":
        what = ("With unit device, arr2 keeps the pair that reached (arr2:0 holds the new image) and rolls back the "
                "other (arr2:1 the old one): each volume alone is consistent, together they are not one instant "
                "(seed 001 §7.6 item 6).")
        rolled = [1]
    else:
        what = ("With unit group the two volumes are one consistency unit: the reached report of the first is not "
                "enough, arr2 rolls both back to the suspension, one instant for the group.")
        rolled = [0, 1]
    s = base(name, seed,
             "Seed 001 §7.6 item 6: two sync pairs in group cg (arr1:0 -> arr2:0, arr1:1 -> arr2:1) suspend together; a "
             "recovery copy of the group copies them one at a time (n = 1), and tokyo is destroyed just after the first "
             "reached (411), before the second is started (412). " + what,
             {"protection": "save_old"}, luns=2)
    s["setup"] = [
        {"op": "wait", "until": {"fabric": "converged"}},
        {"op": "pair_create", "name": "p0", "primary": "arr1:0", "secondary": "arr2:0", "mode": "sync", "group": "cg"},
        {"op": "pair_create", "name": "p1", "primary": "arr1:1", "secondary": "arr2:1", "mode": "sync", "group": "cg"},
        {"op": "wait", "until": {"pair": "p0", "state": "pair"}},
        {"op": "wait", "until": {"pair": "p1", "state": "pair"}},
    ]
    s["steps"] = [
        {"at": "0ms", "op": "workload", "name": "w0", "host": "h1", "target": "arr1:0",
         "mix": "write", "block_bytes": 512, "qd": 1, "duration": "280ms"},
        {"at": "0ms", "op": "workload", "name": "w1", "host": "h1", "target": "arr1:1",
         "mix": "write", "block_bytes": 512, "qd": 1, "duration": "280ms"},
        {"at": "20ms", "op": "link_down", "port": "sw1/7"},
        {"at": "250ms", "op": "check", "check": "pair_state", "pair": "p0", "state": "suspended"},
        {"at": "250ms", "op": "check", "check": "pair_state", "pair": "p1", "state": "suspended"},
        {"at": "300ms", "op": "link_up", "port": "sw1/7"},
        {"at": "320ms", "op": "recover_pair", "pair": "cg", "allowed": "400ms", "unit": unit, "concurrency": 1},
        check("330ms", check="workload_errors", workload="w0"),
        # Between 411 for the first pair and 412 for the second.
        wait("cg", "330ms", master="copying", reached=1),
        {"at": "330ms", "op": "disaster", "site": "tokyo"},
        check("900ms", check="recovery_outcome", pair="cg", side="remote", outcome="rolled_back", cause="timeout",
              rolled_back=rolled),
        check("901ms", check="prefix_consistent", workload="w0", volume="arr2:0"),
        check("901ms", check="prefix_consistent", workload="w1", volume="arr2:1"),
    ]
    write(s)


def ordered():
    s = base("recovery-ordered", 110,
             "Seed 001 claim 3: arr1 keeps a time-series queue of the suspended pair's updates and the recovery copy sends "
             "them oldest-first (every update, 10x the blocks of an address-order copy). When tokyo is destroyed half way, "
             "arr2:0 is already a prefix of the primary's writes, before any rollback; the watchdog then rolls the "
             "unreached pair back to its image at the suspension, also a prefix.",
             {"protection": "save_old", "cache_tracks": 1024})
    s["steps"] += [
        {"at": "320ms", "op": "recover_pair", "pair": "ps", "allowed": "3s", "ordered": True},
        check("330ms", check="workload_errors", workload="w1"),
        {"at": "800ms", "op": "disaster", "site": "tokyo"},
        check("805ms", check="prefix_consistent", workload="w1", volume="arr2:0"),
        check("3400ms", check="recovery_outcome", pair="ps", side="remote", outcome="rolled_back", cause="timeout"),
        check("3401ms", check="prefix_consistent", workload="w1", volume="arr2:0"),
    ]
    write(s)


# ---- seed 001 §7.4 items 3 and 4: a fault at each point of the protocol ------------------
#
# The replication link is 100 km (0.5 ms each way) so that every point lasts long enough
# to place a fault in it: a `wait` on the recovery copy's progress, as its master or its
# remote array reports it, then the fault at once. w0 writes while the pair mirrors; w1
# writes 24 blocks while it is suspended, so the recovery copy has at most 24 tracks.


def point_base(name, seed, description, protection="save_old"):
    s = base(name, seed, description, {"protection": protection}, km=100)
    s["steps"] = [
        {"at": "0ms", "op": "workload", "name": "w0", "host": "h1", "target": "arr1:0",
         "mix": "write", "block_bytes": 512, "qd": 1, "count": 16},
        {"at": "20ms", "op": "link_down", "port": "sw1/7"},
        {"at": "30ms", "op": "workload", "name": "w1", "host": "h1", "target": "arr1:0",
         "mix": "write", "block_bytes": 512, "qd": 1, "count": 24},
        {"at": "250ms", "op": "check", "check": "pair_state", "pair": "ps", "state": "suspended"},
        check("250ms", check="workload_errors", workload="w1"),
        {"at": "300ms", "op": "link_up", "port": "sw1/7"},
        {"at": "320ms", "op": "recover_pair", "pair": "ps", "allowed": "300ms"},
    ]
    return s


def wait(recovery="ps", at="320ms", **point):
    return {"at": at, "op": "wait", "until": {"recovery": recovery, **point}}


def strike():
    return {"at": "320ms", "op": "disaster", "site": "tokyo"}


def old_image(s, at="700ms", rolled=(0,)):
    """After T the remote has rolled the pair back: arr2:0 is its image at the suspension."""
    s["steps"] += [
        check(at, check="recovery_outcome", pair="ps", side="remote", outcome="rolled_back", cause="timeout",
              rolled_back=list(rolled)),
        check(at, check="prefix_consistent", workload="w1", volume="arr2:0"),
    ]


def new_image(s, at="700ms", remote_outcome="kept"):
    """The pair reached: arr2:0 holds every write acknowledged before the disaster. The
    remote ended the session `completed`, or (`kept`) timed out without rolling back."""
    if remote_outcome == "kept":
        s["steps"].append(check(at, check="recovery_outcome", pair="ps", side="remote", outcome="rolled_back",
                                cause="timeout", rolled_back=[]))
    else:
        s["steps"].append(check(at, check="recovery_outcome", pair="ps", side="remote", outcome=remote_outcome))
    s["steps"] += [
        check(at, check="no_acked_write_lost", workload="w0", volume="arr2:0"),
        check(at, check="no_acked_write_lost", workload="w1", volume="arr2:0"),
        check(at, check="prefix_consistent", workload="w1", volume="arr2:0"),
    ]


MASTER_DIES = "Seed 001 §7.4 item 3: tokyo (the master array arr1, h1, sw1) is destroyed "


def dies_before_start():
    s = point_base("recovery-dies-before-start", 120,
                   MASTER_DIES + "just after the recovery copy was asked for, while the configuration request (403) is "
                   "on its way, before the start instruction (405). arr2 never opens a session: nothing was written, "
                   "nothing needs rolling back, and arr2:0 keeps its image at the suspension.")
    s["steps"] += [
        wait(master="configuring"), strike(),
        check("700ms", check="recovery_outcome", pair="ps", side="remote", outcome="none"),
        check("700ms", check="prefix_consistent", workload="w1", volume="arr2:0"),
    ]
    write(s)


def dies_in_handshake():
    s = point_base("recovery-dies-in-handshake", 121,
                   MASTER_DIES + "between the start instruction (405) and its ready answer (504): arr2 has raised its "
                   "\"recovery in progress\" flag and armed the watchdog T = 300 ms, but no track came. At T it ends the "
                   "session rolled back, with nothing to restore: arr2:0 is its image at the suspension.")
    s["steps"] += [wait(remote="started"), strike()]
    old_image(s)
    write(s)


def dies_after_write(variant, seed, writes):
    v = "a" if variant == "save_old" else "b"
    how = ("variant A saved each old block before overwriting it and writes them back"
           if variant == "save_old" else "variant B held the new blocks aside and drops them")
    s = point_base(f"recovery-dies-after-write-{writes}-{v}", seed,
                   MASTER_DIES + f"just after arr2 applied write {writes} of the recovery copy (and queued its write "
                   f"end), before the master has it. No reached report came: at T {how}, and arr2:0 is its image at the "
                   "suspension.", variant)
    s["steps"] += [wait(remote="started", writes=writes), strike()]
    old_image(s)
    write(s)


def dies_after_last_write():
    s = point_base("recovery-dies-after-last-write", 124,
                   MASTER_DIES + "once the master has sent the last changed track and waits for its write end: every "
                   "track may have reached arr2, but the reached report (411) never does. At T arr2 rolls the pair back "
                   "all the same: without 411 it cannot know the copy was whole.")
    s["steps"] += [wait(master="copying", tracks_left=0), strike()]
    old_image(s)
    write(s)


def dies_before_complete(variant, seed):
    v = "a" if variant == "save_old" else "b"
    how = ("variant A drops its saved old blocks" if variant == "save_old"
           else "variant B applies the new blocks it held")
    s = point_base(f"recovery-dies-before-complete-{v}", seed,
                   MASTER_DIES + "after arr2 received the pair's reached report (411) and before the completion (413) "
                   f"arrives. At T arr2 ends the session, but a unit that reached is never rolled back: {how}, and "
                   "arr2:0 holds every write acknowledged before the disaster.", variant)
    s["steps"] += [wait(remote="started", reached=1), strike()]
    new_image(s)
    write(s)


def dies_after_complete():
    s = point_base("recovery-dies-after-complete", 127,
                   MASTER_DIES + "just after it sent the completion (413), which is lost with the site; the reached "
                   "report before it arrived. At T arr2 ends the session without rolling anything back (the pair "
                   "reached), and arr2:0 holds every write acknowledged before the disaster.")
    s["steps"] += [wait(master="completing"), strike()]
    new_image(s)
    write(s)


def dies_before_complete_ack():
    s = point_base("recovery-dies-before-complete-ack", 129,
                   MASTER_DIES + "after arr2 processed the completion (520) and before its acknowledgement reaches the "
                   "master: arr2's session ended completed, and arr2:0 holds every write acknowledged before the "
                   "disaster.")
    s["steps"] += [wait(remote="ended"), strike()]
    new_image(s, remote_outcome="completed")
    write(s)


def lost(what, seed, point, description):
    s = point_base(f"recovery-lost-{what}", seed,
                   "Seed 001 §7.4 item 4: " + description + " The master hears nothing within its retry interval "
                   "(20 ms) and sends its request again; arr2 answers the duplicate from what it already did, and the "
                   "copy completes within T: the pair is back to pair and arr2:0 equals arr1:0.")
    s["steps"] += [
        wait(**point),
        {"at": "320ms", "op": "link_down", "port": "sw1/7"},
        {"at": "322ms", "op": "link_up", "port": "sw1/7"},
        check("700ms", check="recovery_outcome", pair="ps", outcome="completed", resent_at_least=1),
        check("701ms", check="pair_state", pair="ps", state="pair"),
        check("702ms", check="volumes_equal", a="arr1:0", b="arr2:0"),
    ]
    write(s)


def lost_messages():
    lost("write-end", 130, {"remote": "started", "writes": 5},
         "the replication link drops for 2 ms just as arr2 has applied write 5 and queued its write end (508): the "
         "master's read of the answers, or the answer itself, is lost.")
    lost("reached", 131, {"master": "completing"},
         "the replication link drops for 2 ms just as the master sent the pair's reached report (411) with the "
         "completion (413) behind it: both are lost. A reached report is not sent again (no answer is awaited); the "
         "completion is, and it covers every pair of the session.")
    lost("complete", 132, {"remote": "started", "reached": 1},
         "the replication link drops for 2 ms just after arr2 received the pair's reached report (411), as the "
         "completion (413) is sent: it is lost, and without its acknowledgement the master does not take the copy as "
         "done.")


if __name__ == "__main__":
    dies_before_start()
    dies_in_handshake()
    dies_after_write("save_old", 122, 1)
    dies_after_write("hold_new", 123, 1)
    dies_after_write("save_old", 128, 12)
    dies_after_last_write()
    dies_before_complete("save_old", 125)
    dies_before_complete("hold_new", 126)
    dies_after_complete()
    dies_before_complete_ack()
    lost_messages()
    group("device", 111)
    group("group", 112)
    ordered()
    completed()
    master_dies("save_old", 102)
    master_dies("hold_new", 103)
    counter_example()
    exhausted()
    spill()
    late()
    lost_message()
