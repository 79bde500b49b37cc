//! `fcsim copy` as a user runs it against `fcsim up` (DESIGN.md §7, seed 004): a local
//! pair through copy → pair → split → resync → delete with its progress shown, a
//! server-free backup of the split secondary to tape and its RECEIVE COPY RESULTS, a
//! synchronous remote pair reaching pair and taken over at the secondary array, and
//! refusals (a bad mode, a mode the array does not run, a duplicate name) exiting
//! non-zero with the field named.

use std::time::Duration;

#[allow(dead_code)]
mod common;

/// How long one command may take (a `--watch` that never ends fails the test instead of
/// hanging it).
const COMMAND_DEADLINE: Duration = Duration::from_secs(20);

/// Runs `fcsim SUB --control ADDR ARGS…` and returns (success, stdout, stderr).
fn fcsim(addr: &str, sub: &str, args: &[&str]) -> (bool, String, String) {
    use std::io::Read;
    use std::process::Stdio;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_fcsim"))
        .args([sub, "--control", addr])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run fcsim");
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut b = Vec::new();
            let _ = r.read_to_end(&mut b);
            String::from_utf8_lossy(&b).into_owned()
        })
    };
    let out = drain(Box::new(child.stdout.take().expect("stdout")));
    let err = drain(Box::new(child.stderr.take().expect("stderr")));
    let start = std::time::Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("poll fcsim") {
            break s;
        }
        if start.elapsed() > COMMAND_DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "`fcsim {sub} {}` still running after {COMMAND_DEADLINE:?}; it printed:\n{}",
                args.join(" "),
                out.join().unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let (out, err) = (
        out.join().unwrap_or_default(),
        err.join().unwrap_or_default(),
    );
    (status.success(), out, err)
}

/// `fcsim copy ARGS…`, which must succeed; its stdout.
fn copy(addr: &str, args: &[&str]) -> String {
    let (ok, out, err) = fcsim(addr, "copy", args);
    assert!(ok, "`fcsim copy {}` failed:\n{out}{err}", args.join(" "));
    assert!(!err.contains("panicked"), "{err}");
    out
}

/// Runs `fcsim copy ARGS…` until it succeeds (at most `tries` × 50 ms): for what waits
/// on discovery (an array or host finding the LUs behind the fabric).
fn copy_until_ok(addr: &str, args: &[&str], tries: u32) -> String {
    let mut last = String::new();
    for _ in 0..tries {
        let (ok, out, err) = fcsim(addr, "copy", args);
        if ok {
            return out;
        }
        last = format!("{out}{err}");
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("`fcsim copy {}` never succeeded:\n{last}", args.join(" "));
}

/// The words of the status row of `pair`: name, mode, group, primary, `→`, secondary,
/// state, P status, S status, diff blocks, (diff %), journal, suspend reason.
fn row<'a>(out: &'a str, pair: &str) -> Vec<&'a str> {
    let rows: Vec<Vec<&str>> = out
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        // Progress lines read `p1 copy: [...]`.
        .filter(|w| w.first() == Some(&pair) && !w.get(1).is_some_and(|c| c.ends_with(':')))
        .collect();
    assert_eq!(rows.len(), 1, "one row for {pair}:\n{out}");
    rows.into_iter().next().unwrap_or_default()
}

/// (state, P status, S status) of `pair`'s row.
fn states<'a>(out: &'a str, pair: &str) -> (&'a str, &'a str, &'a str) {
    let r = row(out, pair);
    (r[6], r[7], r[8])
}

/// Runs `fcsim SUB ARGS…` against `up` every 50 ms (at most 20 s) until it succeeds with
/// an output `done` accepts; that output, or "" if it never did. Fails if `fcsim up` exits.
fn poll_until(
    up: &mut common::Up,
    sub: &str,
    args: &[&str],
    done: impl Fn(&str) -> bool,
) -> String {
    let addr = up.addr.clone();
    for _ in 0..400 {
        if let Some(status) = up.child.try_wait().expect("poll fcsim up") {
            panic!("fcsim up exited: {status}");
        }
        let (ok, out, _) = fcsim(&addr, sub, args);
        if ok && done(&out) {
            return out;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    String::new()
}

#[test]
fn copy_cli_pairs_backup_and_refusals() {
    // arr1 (two LUs) and arr2 run every pair mode, arr3 none; h1 and tape1 share a zone.
    let mut up = common::Up::start("copy-basics.json");
    let addr = up.addr.clone();
    let addr = addr.as_str();
    let mut ready = false;
    for _ in 0..200 {
        if let Some(status) = up.child.try_wait().expect("poll fcsim up") {
            panic!("fcsim up exited: {status}");
        }
        if fcsim(addr, "copy", &["status", "--array", "arr1"]).0 {
            ready = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(ready, "fcsim up never served {addr}");
    assert!(copy(addr, &["status", "--array", "arr1"]).contains("(no pairs)"));

    // A local pair, copied slowly (2 blocks/ms: about a second) so its progress shows.
    let out = copy(
        addr,
        &[
            "create",
            "p1",
            "--primary",
            "arr1:0",
            "--secondary",
            "arr1:1",
            "--mode",
            "local",
            "--copy-rate",
            "2",
        ],
    );
    let r = row(&out, "p1");
    assert_eq!(
        r[..6],
        ["p1", "local", "p1", "arr1:0", "→", "arr1:1"],
        "{out}"
    );
    match r[6] {
        "copy" => assert!(out.contains("p1 copy: ["), "no progress bar:\n{out}"),
        "pair" => {}
        s => panic!("a new pair in state {s}:\n{out}"),
    }
    let out = copy(addr, &["status", "p1", "--array", "arr1", "--watch"]);
    assert_eq!(states(&out, "p1"), ("pair", "pair", "pair"), "{out}");
    assert_eq!(row(&out, "p1")[9..11], ["0", "(0.0%)"], "{out}");
    if out.contains("p1 copy: [") {
        assert!(
            out.contains("p1 pair: [####################] 100%"),
            "{out}"
        );
    }

    // Split: the secondary keeps the image; back it up to tape, server-free.
    let out = copy(addr, &["split", "p1", "--array", "arr1"]);
    assert!(
        ["split", "split_pending"].contains(&states(&out, "p1").0),
        "{out}"
    );
    let out = copy(addr, &["status", "p1", "--array", "arr1", "--watch"]);
    assert_eq!(states(&out, "p1"), ("split", "split", "split"), "{out}");
    let out = copy_until_ok(
        addr,
        &[
            "backup",
            "--host",
            "h1",
            "--source",
            "arr1:1",
            "--tape",
            "tape1",
            "--list-id",
            "3",
        ],
        100,
    );
    assert!(
        out.contains("EXTENDED COPY list 3: arr1:1@0+2048 → tape1:0") && out.contains("GOOD"),
        "{out}"
    );
    let out = copy(
        addr,
        &[
            "results",
            "--host",
            "h1",
            "--manager",
            "arr1:1",
            "--list-id",
            "3",
        ],
    );
    assert!(
        out.contains("list 3 at arr1:1: completed good, 1 segment processed, 1048576 bytes"),
        "{out}"
    );

    // Writes after the split are copied back by the resync.
    let (ok, out, err) = fcsim(
        addr,
        "host",
        &["--host", "h1", "write", "arr1:0", "0", "--blocks", "8"],
    );
    assert!(ok && out.contains("GOOD"), "{out}{err}");
    let out = copy(addr, &["resync", "p1", "--array", "arr1"]);
    assert!(["resync", "pair"].contains(&states(&out, "p1").0), "{out}");
    let out = copy(addr, &["status", "p1", "--array", "arr1", "--watch"]);
    assert_eq!(states(&out, "p1"), ("pair", "pair", "pair"), "{out}");
    let out = copy(addr, &["delete", "p1", "--array", "arr1"]);
    assert!(
        out.contains("deleted `p1` on arr1") && out.contains("(no pairs)"),
        "{out}"
    );

    // A synchronous remote pair: the secondary named by array and LUN, resolved to its
    // NAA; arr1 may need a moment to discover arr2's LU.
    let out = copy_until_ok(
        addr,
        &[
            "create",
            "r1",
            "--primary",
            "arr1:0",
            "--secondary",
            "arr2:0",
            "--mode",
            "sync",
        ],
        100,
    );
    assert_eq!(
        row(&out, "r1")[..6],
        ["r1", "sync", "r1", "arr1:0", "→", "arr2:0"],
        "{out}"
    );
    let out = copy(addr, &["status", "r1", "--array", "arr1", "--watch"]);
    assert_eq!(states(&out, "r1"), ("pair", "pair", "pair"), "{out}");
    let out = copy(addr, &["status", "--array", "arr2"]);
    assert!(out.contains("Secondary roles of this array:"), "{out}");
    let role = out
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|w| w.first() == Some(&"0"))
        .unwrap_or_else(|| panic!("no role for LUN 0:\n{out}"));
    assert_eq!(role[..4], ["0", "r1", "r1", "pair"], "{out}");
    let out = copy(addr, &["takeover", "r1", "--array", "arr2"]);
    assert!(
        out.contains("takeover of `r1` at arr2: arr2:0 is now writable simplex"),
        "{out}"
    );

    // Refusals exit non-zero and name the field.
    let (ok, _, err) = fcsim(
        addr,
        "copy",
        &[
            "create",
            "bad",
            "--primary",
            "arr1:0",
            "--secondary",
            "arr1:1",
            "--mode",
            "mirror",
        ],
    );
    assert!(
        !ok && err.contains("--mode") && err.contains("'mirror'"),
        "{err}"
    );
    let (ok, _, err) = fcsim(
        addr,
        "copy",
        &[
            "create",
            "bad",
            "--primary",
            "arr3:0",
            "--secondary",
            "arr2:0",
            "--mode",
            "sync",
        ],
    );
    assert!(!ok, "arr3 created a sync pair");
    assert!(err.contains("FailedPrecondition: mode:"), "{err}");
    assert!(err.contains("remote-sync"), "{err}");
    let (ok, _, err) = fcsim(
        addr,
        "copy",
        &[
            "create",
            "r1",
            "--primary",
            "arr1:1",
            "--secondary",
            "arr2:0",
            "--mode",
            "async",
        ],
    );
    assert!(!ok && err.contains("FailedPrecondition: name:"), "{err}");
    let (ok, _, err) = fcsim(addr, "copy", &["split", "nosuch", "--array", "arr1"]);
    assert!(!ok && err.contains("NotFound: pair:"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

/// Pairs of virtual LUs at an intelligent switch (vsw-pairs.json's fabric): the offload
/// rule gives alpha → beta to arr1 (it runs local pairs) and leaves gamma → delta to the
/// switch; `status --array sw1` shows who runs each, and split and delete reach both
/// kinds through the switch.
#[test]
fn copy_cli_at_an_intelligent_switch() {
    let mut up = common::Up::start("vsw-pairs.json");
    let addr = up.addr.clone();
    let addr = addr.as_str();
    // TF must hold arr1's row (its functions) before the offload rule can choose arr1.
    let learned = !poll_until(&mut up, "ctl", &["tf", "sw1"], |out| {
        out.lines()
            .any(|l| l.starts_with("arr1") && l.contains("discovered"))
    })
    .is_empty();
    assert!(learned, "sw1 never learned arr1's functions");
    let create = |name: &str, p: &str, s: &str| {
        copy_until_ok(
            addr,
            &[
                "create",
                name,
                "--primary",
                p,
                "--secondary",
                s,
                "--mode",
                "local",
            ],
            100,
        )
    };
    let out = create("va", "sw1:0", "sw1:1");
    assert!(
        row(&out, "va").contains(&"array:arr1"),
        "delegated to arr1:\n{out}"
    );
    let out = create("vg", "sw1:2", "sw1:3");
    assert!(
        row(&out, "vg").contains(&"switch"),
        "run by the switch:\n{out}"
    );
    let out = copy(addr, &["status", "--array", "sw1", "--watch"]);
    for p in ["va", "vg"] {
        let r = row(&out, p);
        assert!(r.contains(&"sw1:0") || r.contains(&"sw1:2"), "{out}");
        assert_eq!(states(&out, p).0, "pair", "{out}");
    }
    for p in ["va", "vg"] {
        let out = copy(addr, &["split", p, "--array", "sw1"]);
        assert!(states(&out, p).0.starts_with("split"), "{out}");
    }
    let out = copy(addr, &["delete", "va", "--array", "sw1"]);
    assert!(out.contains("deleted `va` on sw1"), "{out}");
    let out = copy(addr, &["status", "--array", "sw1"]);
    assert!(!out.contains("va "), "va is gone:\n{out}");
    // A second pair named like one that exists is refused with the field named.
    let (ok, _, err) = fcsim(
        addr,
        "copy",
        &[
            "create",
            "vg",
            "--primary",
            "sw1:4",
            "--secondary",
            "sw1:3",
            "--mode",
            "local",
        ],
    );
    assert!(!ok && err.contains("name"), "{err}");
}

/// Three sites (seed 000) from the command line, on 3dc-window-a.json's fabric after its
/// setup: site 3's difference tables, a clear ahead of time (a second one refused while
/// it is pending), then site 1 destroyed, V2 taken over at site 2 and the failover at
/// site 3 reaching `pair`.
#[test]
fn copy_cli_three_sites() {
    let mut up = common::Up::start("3dc-window-a.json");
    let addr = up.addr.clone();
    let addr = addr.as_str();
    let out = poll_until(&mut up, "copy", &["differences", "--array", "arr3"], |o| {
        o.contains("cg-sync")
    });
    assert!(out.contains("Older table"), "{out}");
    let out = copy(
        addr,
        &["clear", "cg-sync", "--array", "arr3", "--in-ms", "50"],
    );
    assert!(out.contains(" ms "), "a clear pending:\n{out}");
    let (ok, _, err) = fcsim(
        addr,
        "copy",
        &["clear", "cg-sync", "--array", "arr3", "--in-ms", "60"],
    );
    assert!(
        !ok && err.contains("at_ns"),
        "refused, naming at_ns:\n{err}"
    );
    let roles = copy(addr, &["status", "--array", "arr2"]);
    let image = roles
        .lines()
        .find(|l| l.starts_with("0 ") && l.contains("pr0"))
        .and_then(|l| l.split_whitespace().rev().nth(1))
        .unwrap_or_else(|| panic!("no role row with an image time:\n{roles}"))
        .to_string();
    let (ok, _, err) = fcsim(addr, "fault", &["disaster", "site1"]);
    assert!(ok, "{err}");
    copy(addr, &["takeover", "pr0", "--array", "arr2"]);
    let out = copy(
        addr,
        &[
            "failover",
            "cg-sync",
            "--array",
            "arr3",
            "--pair",
            "f0=0=arr2:0",
            "--image-time-ms",
            &image,
        ],
    );
    assert!(out.contains("f0: LU 0 copies"), "{out}");
    let out = copy(addr, &["status", "f0", "--array", "arr3", "--watch"]);
    assert_eq!(states(&out, "f0").0, "pair", "{out}");
    let (ok, _, err) = fcsim(
        addr,
        "copy",
        &[
            "failover",
            "cg-sync",
            "--array",
            "arr3",
            "--pair",
            "f0",
            "--image-time-ms",
            "1",
        ],
    );
    assert!(!ok && err.contains("pair: expected"), "{err}");
}

/// Seed 001 (issue 7): `fcsim copy recover` refuses a pair that is not suspended, naming
/// the state; `fcsim copy recovery` shows an array's master session (none yet) and its
/// remote side (the topology's `recovery` block: variant A).
#[test]
fn copy_cli_recovery() {
    let mut up = common::Up::start("recovery-complete.json");
    let addr = up.addr.clone();
    let addr = addr.as_str();
    let out = poll_until(&mut up, "copy", &["status", "ps", "--array", "arr1"], |o| {
        states(o, "ps").0 == "pair"
    });
    assert_eq!(states(&out, "ps").0, "pair", "{out}");
    let (ok, _, err) = fcsim(
        addr,
        "copy",
        &["recover", "ps", "--array", "arr1", "--allowed-ms", "100"],
    );
    assert!(
        !ok && err.contains("only a suspended pair"),
        "refused, naming the state:\n{err}"
    );
    let out = copy(addr, &["recovery", "--array", "arr1"]);
    assert!(out.contains("master: no recovery copy"), "{out}");
    let out = copy(addr, &["recovery", "--array", "arr2"]);
    assert!(out.contains("remote (save_old): idle"), "{out}");
    assert!(out.contains("last: none"), "{out}");
}

/// A relay pair (seed 002) straight to the standby: `create --mode relay`, a restart
/// point with application state, and `relay-takeover` at the standby array resuming
/// from it; the relay options are refused with another mode.
#[test]
fn copy_cli_relay() {
    let mut up = common::Up::start("copy-basics.json");
    let addr = up.addr.clone();
    let addr = addr.as_str();
    let mut ready = false;
    for _ in 0..200 {
        if let Some(status) = up.child.try_wait().expect("poll fcsim up") {
            panic!("fcsim up exited: {status}");
        }
        if fcsim(addr, "copy", &["status", "--array", "arr1"]).0 {
            ready = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(ready, "fcsim up never served {addr}");
    let (ok, _, err) = fcsim(
        addr,
        "copy",
        &[
            "create",
            "bad",
            "--primary",
            "arr1:1",
            "--secondary",
            "arr2:0",
            "--mode",
            "sync",
            "--consistency",
            "epochs",
        ],
    );
    assert!(!ok && err.contains("only with --mode relay"), "{err}");
    let (ok, _, err) = fcsim(
        addr,
        "copy",
        &[
            "create",
            "bad",
            "--primary",
            "arr1:1",
            "--secondary",
            "arr2:0",
            "--mode",
            "relay",
            "--relays",
            "h1",
        ],
    );
    assert!(
        !ok && err.contains("relays: relay \"h1\": h1 is a host"),
        "{err}"
    );
    let out = copy_until_ok(
        addr,
        &[
            "create",
            "rp",
            "--primary",
            "arr1:1",
            "--secondary",
            "arr2:0",
            "--mode",
            "relay",
            "--group",
            "rg",
            "--consistency",
            "epochs",
            "--relays",
            "arr2/0",
        ],
        100,
    );
    assert_eq!(row(&out, "rp")[..2], ["rp", "relay"], "{out}");
    let out = copy(addr, &["status", "rp", "--array", "arr1", "--watch"]);
    assert_eq!(states(&out, "rp"), ("pair", "pair", "pair"), "{out}");
    let out = copy(
        addr,
        &[
            "restart-point",
            "rg",
            "--array",
            "arr1",
            "--app-state",
            "ckpt",
        ],
    );
    assert!(
        out.contains("restart point 1 of `rg` issued at arr1 (4 bytes of state)"),
        "{out}"
    );
    // The restart point reaches the standby (it travels in order with the writes).
    let standby = poll_until(&mut up, "copy", &["status", "--array", "arr2"], |out| {
        out.lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .any(|w| w.first() == Some(&"rg") && w.get(5) == Some(&"1"))
    });
    assert!(
        standby.contains("Relay standbys of this array"),
        "{standby}"
    );
    let out = copy(
        addr,
        &["relay-takeover", "--array", "arr2", "--group", "rg"],
    );
    assert!(
        out.contains("resumed from restart point 1 (4 bytes of application state)"),
        "{out}"
    );
    assert!(out.contains("arr2:0 now writable simplex"), "{out}");
}
