//! Frame captures as Wireshark reads them (`fcsim run --pcap`, `fcsim ctl capture`).
//!
//! Every library scenario runs in simulation with capture on (every cable tapped once),
//! and `tshark` decodes the file. What each test checks:
//! - `library_captures_decode_cleanly`: every scenario's capture decodes with no
//!   malformed packet and no expert error; every record is one real-sized FC frame
//!   (≤ 24 + 2112 bytes); ELS, dNS and FCP/SCSI all show up where the scenario has them.
//! - `flogi_accepts_assign_the_ids_that_follow`: the D_IDs of the FLOGI LS_ACCs (the
//!   FC_IDs the fabric assigned, FC-LS-3 §4.2.9) are the S_IDs of the PLOGIs to the name
//!   server that follow.
//! - `els_and_name_server_commands_decode`: FLOGI, PLOGI, PRLI, SCR and RSCN by ELS
//!   command code, RFT_ID, RFF_ID, GID_FT and GPN_ID by CT command code.
//! - `host_io_reads_and_writes_decode`: the `read_returns` READ(16) of host-io-basics
//!   (arr2:0 LBA 8191, 1 block, SBC-4 §5.16) from h2's FC_ID, answered GOOD on the same
//!   exchange; WRITE(16)s with FCP_DL and their data, cut into 2048-byte frames.
//! - `lun_masking_copy_is_aborted_with_sense`: the EXTENDED COPY whose source LU is
//!   masked from h2 ends in CHECK CONDITION, sense key COPY ABORTED (SPC-5 §4.4.6).
//! - `zoning_denied_plogi_stops_at_ingress`: the PLOGI that hard zoning drops is seen
//!   once, entering sw1, and never leaves it.
//! - `same_seed_same_bytes`: two runs with the same seed write identical files.
//! - `a_restarted_switch_is_captured_again_from_its_first_flogi`: after a switch crash
//!   and restart the capture holds the second round of FLOGIs and their LS_ACCs.
//! - `cli_run_with_chosen_ports_and_bad_arguments`: `fcsim run --pcap --capture` taps
//!   only the named port; an unknown port or an unwritable path is an error before the
//!   run starts.
//! - `ctl_capture_on_a_live_fabric`: `fcsim ctl capture` on `fcsim up` records a host
//!   READ with wall-clock timestamps, and a bad port is INVALID_ARGUMENT naming `ports`.
//!
//! Wireshark's FC reassembly assumes 1024-byte frames and never-reused OX_IDs, so tshark
//! runs with `-o fc.reassemble:FALSE` (docs/pcap.md). tshark is required: without it
//! these tests fail with a message saying so (`.ci/run` installs it).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use fcsim_scenarios::{CaptureOptions, RunOptions};

mod common;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn out_dir() -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join("pcap");
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

/// Fails the test, clearly, when tshark is missing.
fn require_tshark() {
    let ok = Command::new("tshark")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "tshark is not installed, and these tests read the captures with it. Install it \
         (Debian: `apt-get install tshark`; .ci/run does) and run again."
    );
}

/// Runs `scenarios/library/<name>.json` in simulation with capture on every cable (once
/// per test binary) and returns the pcap file.
fn capture(name: &str) -> PathBuf {
    static DONE: Mutex<BTreeMap<String, PathBuf>> = Mutex::new(BTreeMap::new());
    let mut done = DONE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(p) = done.get(name) {
        return p.clone();
    }
    let path = out_dir().join(format!("{name}.pcap"));
    run_captured(name, &path, None);
    done.insert(name.to_string(), path.clone());
    path
}

fn run_captured(name: &str, path: &Path, seed: Option<u64>) {
    let file = root().join(format!("scenarios/library/{name}.json"));
    let s = fcsim_scenarios::check_file(&file).unwrap_or_else(|d| panic!("{d}"));
    let r = fcsim_scenarios::run_scenario(
        &s,
        &RunOptions {
            seed,
            capture: Some(CaptureOptions {
                path: path.to_path_buf(),
                ports: vec![],
            }),
            ..Default::default()
        },
    )
    .unwrap_or_else(|e| panic!("{name}: {e}"));
    assert!(r.passed, "{name}:\n{}", r.summary_table());
}

/// Runs the scenario `text` in simulation with capture on every cable; it must pass.
fn capture_text(name: &str, text: &str) -> PathBuf {
    let s = fcsim_scenarios::parse(text, &format!("{name}.json")).unwrap_or_else(|d| panic!("{d}"));
    let pcap = out_dir().join(format!("{name}.pcap"));
    let r = fcsim_scenarios::run_scenario(
        &s,
        &RunOptions {
            capture: Some(CaptureOptions {
                path: pcap.clone(),
                ports: vec![],
            }),
            ..Default::default()
        },
    )
    .expect("run");
    assert!(r.passed, "{}", r.summary_table());
    pcap
}

/// `tshark -r pcap -Y filter -T fields -e …`: one row per matching frame, one column
/// per field (repeated occurrences within a frame joined by `,`).
fn fields(pcap: &Path, filter: &str, names: &[&str]) -> Vec<Vec<String>> {
    require_tshark();
    let mut cmd = Command::new("tshark");
    cmd.arg("-r").arg(pcap).args([
        "-o",
        "fc.reassemble:FALSE",
        "-T",
        "fields",
        "-E",
        "separator=|",
    ]);
    if !filter.is_empty() {
        cmd.args(["-Y", filter]);
    }
    for n in names {
        cmd.args(["-e", n]);
    }
    let out = cmd.output().expect("run tshark");
    assert!(
        out.status.success(),
        "tshark failed on {} with filter `{filter}`: {}",
        pcap.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.split('|').map(str::to_string).collect())
        .collect()
}

fn count(pcap: &Path, filter: &str) -> usize {
    fields(pcap, filter, &["frame.number"]).len()
}

fn library() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(root().join("scenarios/library"))
        .expect("scenarios/library")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .filter_map(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .collect();
    names.sort();
    names
}

/// A boolean field as tshark prints it (`1`, or `True` in later versions).
fn yes(s: &str) -> bool {
    s == "1" || s.eq_ignore_ascii_case("true")
}

/// A hex field as tshark prints it (`0x0a`, `0000000000001fff`) as a number.
fn hex(s: &str) -> u64 {
    u64::from_str_radix(s.trim_start_matches("0x"), 16)
        .unwrap_or_else(|_| panic!("`{s}` is not hex"))
}

#[test]
fn library_captures_decode_cleanly() {
    require_tshark();
    for name in library() {
        let pcap = capture(&name);
        let total = count(&pcap, "");
        assert!(total > 20, "{name}: only {total} frames captured");
        let bad = fields(
            &pcap,
            "_ws.malformed || _ws.expert.severity >= \"Error\"",
            &["frame.number", "_ws.col.Info", "_ws.expert.message"],
        );
        assert!(
            bad.is_empty(),
            "{name}: malformed or expert errors: {bad:?}"
        );
        assert_eq!(count(&pcap, "!fc"), 0, "{name}: frames not decoded as FC");
        assert_eq!(
            count(&pcap, "frame.len > 2136"),
            0,
            "{name}: a record longer than one FC frame (24 + 2112 bytes)"
        );
        assert!(count(&pcap, "fcels.opcode") > 0, "{name}: no ELS decoded");
        assert!(
            count(&pcap, "fcdns") > 0,
            "{name}: no name-server CT decoded"
        );
        if name != "fabric-basics" && name != "zoning-denied" {
            assert!(count(&pcap, "fcp.dl") > 0, "{name}: no FCP_CMND decoded");
            assert!(count(&pcap, "scsi.status") > 0, "{name}: no SCSI status");
        }
    }
}

#[test]
fn flogi_accepts_assign_the_ids_that_follow() {
    let pcap = capture("host-io-basics");
    // LS_ACC from the F_Port login server: R_CTL 0x23, S_ID FF.FF.FE.
    let assigned: BTreeSet<String> = fields(
        &pcap,
        "fc.r_ctl == 0x23 && fc.s_id == ff.ff.fe",
        &["fc.d_id"],
    )
    .into_iter()
    .map(|r| r[0].clone())
    .collect();
    // 2 + 1 host ports and 2 + 1 array ports.
    let want: BTreeSet<String> = [
        "01.00.00", "01.01.00", "02.00.00", "02.01.00", "02.02.00", "02.03.00",
    ]
    .into_iter()
    .map(str::to_string)
    .collect();
    assert_eq!(assigned, want);
    let plogi_sources: BTreeSet<String> = fields(
        &pcap,
        "fcels.opcode == 0x03 && fc.r_ctl == 0x22 && fc.d_id == ff.ff.fc",
        &["fc.s_id"],
    )
    .into_iter()
    .map(|r| r[0].clone())
    .collect();
    assert_eq!(plogi_sources, want);
    // Every FLOGI comes from the unidentified address.
    let flogi: BTreeSet<String> = fields(
        &pcap,
        "fcels.opcode == 0x04 && fc.r_ctl == 0x22",
        &["fc.s_id"],
    )
    .into_iter()
    .map(|r| r[0].clone())
    .collect();
    assert_eq!(flogi, BTreeSet::from(["00.00.00".to_string()]));
}

#[test]
fn els_and_name_server_commands_decode() {
    let pcap = capture("host-io-basics");
    let els: BTreeSet<u64> = fields(&pcap, "fc.r_ctl == 0x22", &["fcels.opcode"])
        .into_iter()
        .map(|r| hex(&r[0]))
        .collect();
    // FLOGI, PLOGI, PRLI, SCR (FC-LS-3 table 12); RSCN after the cable cut.
    for (code, what) in [
        (0x04, "FLOGI"),
        (0x03, "PLOGI"),
        (0x20, "PRLI"),
        (0x62, "SCR"),
        (0x61, "RSCN"),
    ] {
        assert!(els.contains(&code), "no {what} in {els:?}");
    }
    let ct: BTreeSet<u64> = fields(
        &pcap,
        "fc.d_id == ff.ff.fc && fc.r_ctl == 0x02",
        &["fcdns.opcode"],
    )
    .into_iter()
    .map(|r| hex(&r[0]))
    .collect();
    // FC-GS-7 table 137: RFT_ID, RFF_ID, GID_FT, GPN_ID.
    for (code, what) in [
        (0x0217, "RFT_ID"),
        (0x021F, "RFF_ID"),
        (0x0171, "GID_FT"),
        (0x0112, "GPN_ID"),
    ] {
        assert!(ct.contains(&code), "no {what} in {ct:x?}");
    }
    // Name-server accepts (CT_IU command/response code 8002h, FC-GS-7 §4.4.3.5).
    assert!(count(&pcap, "fc.s_id == ff.ff.fc && fcdns.opcode == 0x8002") > 0);
}

#[test]
fn host_io_reads_and_writes_decode() {
    let pcap = capture("host-io-basics");
    // `read_returns` h2 → arr2:0 LBA 8191, 1 block of 4096 bytes. h2/0 is on sw2/1
    // (02.01.00), arr2/0 on sw2/3 (02.03.00).
    let reads = fields(
        &pcap,
        "scsi_sbc.opcode == 0x88 && fc.s_id == 02.01.00 && fc.d_id == 02.03.00",
        &[
            "fc.ox_id",
            "scsi_sbc.rdwr16.lba",
            "scsi_sbc.rdwr12.xferlen",
            "fcp.dl",
            "fcp.rddata",
        ],
    );
    let read = reads
        .iter()
        .find(|r| hex(&r[1]) == 8191)
        .unwrap_or_else(|| panic!("no READ(16) of LBA 8191 from h2: {reads:?}"));
    assert_eq!((read[2].as_str(), read[3].as_str()), ("1", "4096"));
    assert!(yes(&read[4]), "RDDATA set: {read:?}");
    // The same exchange carries 4096 bytes of data and GOOD status back to h2 (tshark
    // 4.0 does not link FCP_RSP to FCP_CMND in FC-2 captures, so match by OX_ID).
    let ox = &read[0];
    let back = format!("fc.ox_id == {ox} && fc.s_id == 02.03.00 && fc.d_id == 02.01.00");
    let status = fields(
        &pcap,
        &format!("{back} && fc.r_ctl == 0x07"),
        &["scsi.status"],
    );
    assert!(
        !status.is_empty() && status.iter().all(|r| r[0] == "0x00"),
        "{status:?}"
    );
    let data = fields(
        &pcap,
        &format!("{back} && fc.r_ctl == 0x01"),
        &["frame.len", "fc.relative_offset"],
    );
    let bytes: usize = data
        .iter()
        .map(|r| r[0].parse::<usize>().unwrap() - 24)
        .sum();
    assert_eq!(bytes % 4096, 0, "{data:?}");
    assert!(
        data.iter().any(|r| r[1] == "2048"),
        "4096 bytes cut at 2048: {data:?}"
    );

    // WRITE(16)s of w1 (4096-byte blocks), each followed by its data: two frames of
    // 2048 bytes, SEQ_CNT 0 and 1, relative offsets 0 and 2048, only the second ending
    // the sequence.
    let writes = fields(
        &pcap,
        "scsi_sbc.opcode == 0x8a && fc.s_id == 01.00.00",
        &["fc.ox_id", "fcp.dl", "fcp.wrdata"],
    );
    assert!(writes.len() > 100, "{} writes", writes.len());
    assert!(
        writes.iter().all(|w| w[1] == "4096" && yes(&w[2])),
        "{writes:?}"
    );
    let ox = &writes[0][0];
    let frames = fields(
        &pcap,
        &format!("fc.ox_id == {ox} && fc.s_id == 01.00.00 && fc.r_ctl == 0x01"),
        &[
            "fc.seq_cnt",
            "fc.relative_offset",
            "fc.fctl.seq_last",
            "frame.len",
        ],
    );
    assert!(!frames.is_empty());
    let first = &frames[..2];
    assert_eq!(first[0], ["0", "0", "0", "2072"]);
    assert_eq!(first[1], ["1", "2048", "1", "2072"]);
}

#[test]
fn lun_masking_copy_is_aborted_with_sense() {
    let pcap = capture("lun-masking");
    // The EXTENDED COPY (LID1, opcode 83h) from h2 (01.01.00) to arr1 (01.02.00).
    // tshark files the opcodes of a direct-access LU, SPC ones included, under
    // `scsi_sbc.opcode`.
    let xcopies = fields(
        &pcap,
        "scsi_sbc.opcode == 0x83 && fc.s_id == 01.01.00",
        &["fc.ox_id"],
    );
    let oxes: BTreeSet<String> = xcopies.into_iter().map(|r| r[0].clone()).collect();
    assert_eq!(oxes.len(), 2, "two EXTENDED COPY exchanges: {oxes:?}");
    let mut outcomes = Vec::new();
    for ox in &oxes {
        let rsp = fields(
            &pcap,
            &format!("fc.ox_id == {ox} && fc.s_id == 01.02.00 && fc.r_ctl == 0x07"),
            &["scsi.status", "scsi.sns.key", "scsi.sns.asc"],
        );
        outcomes.push(rsp[0].clone());
    }
    // The first copy reads arr1:0, which is masked from h2: CHECK CONDITION, COPY
    // ABORTED (0Ah), ASC 0Dh (COPY TARGET DEVICE NOT REACHABLE). The second is GOOD.
    assert!(
        outcomes.contains(&vec!["0x02".into(), "0x0a".into(), "0x0d".into()]),
        "{outcomes:?}"
    );
    assert!(outcomes.iter().any(|o| o[0] == "0x00"), "{outcomes:?}");
}

#[test]
fn zoning_denied_plogi_stops_at_ingress() {
    let pcap = capture("zoning-denied");
    // h1/0 is 01.00.00, arr1/0 is 01.04.00; they share no zone.
    let denied = fields(
        &pcap,
        "fcels.opcode == 0x03 && fc.s_id == 01.00.00 && fc.d_id == 01.04.00",
        &["frame.time_relative"],
    );
    assert_eq!(denied.len(), 1, "seen entering sw1 only: {denied:?}");
    assert_eq!(
        count(&pcap, "fc.s_id == 01.04.00 && fc.d_id == 01.00.00"),
        0
    );
}

/// An exchange that times out is aborted: the array crashes with host I/O in flight,
/// the host's exchanges time out and it sends ABTS for each, which tshark decodes as a
/// basic link service naming a command the host really sent.
#[test]
fn a_timed_out_exchange_is_aborted() {
    let text = r#"{
      "name": "abts", "seed": 1,
      "topology": {
        "sites": [{"name": "dc1"}],
        "switches": [{"name": "sw1", "site": "dc1", "domain": 1, "ports": 4}],
        "arrays": [{"name": "arr1", "site": "dc1", "ports": 1,
                    "lus": [{"lun": 0, "blocks": 1024, "block_bytes": 512}]}],
        "hosts": [{"name": "h1", "site": "dc1", "ports": 1}],
        "links": [{"a": "h1/0", "b": "sw1/0"}, {"a": "arr1/0", "b": "sw1/1"}]
      },
      "setup": [{"op": "wait", "until": {"fabric": "converged"}}],
      "steps": [
        {"at": "1ms", "op": "workload", "name": "w", "host": "h1", "target": "arr1:0",
         "mix": "write", "qd": 4, "duration": "5ms"},
        {"at": "2ms", "op": "crash", "node": "arr1"},
        {"at": "4ms", "op": "restart", "node": "arr1"},
        {"at": "300ms", "op": "check", "check": "read_returns", "host": "h1",
         "target": "arr1:0", "lba": 0, "blocks": 8, "status": "good"}
      ]
    }"#;
    let pcap = capture_text("abts", text);
    let abts = fields(
        &pcap,
        "fc.r_ctl == 0x81 && fc.type == 0",
        &["fc.s_id", "fc.d_id", "fc.ox_id"],
    );
    assert!(!abts.is_empty(), "no ABTS in the capture");
    for a in &abts {
        let cmnd = format!(
            "fc.r_ctl == 0x06 && fc.s_id == {} && fc.d_id == {} && fc.ox_id == {}",
            a[0], a[1], a[2]
        );
        assert!(count(&pcap, &cmnd) >= 1, "ABTS {a:?} aborts no command");
    }
    assert_eq!(
        count(&pcap, "_ws.malformed || _ws.expert.severity >= \"Error\""),
        0
    );
}

#[test]
fn same_seed_same_bytes() {
    let dir = out_dir();
    let (a, b) = (dir.join("seed-a.pcap"), dir.join("seed-b.pcap"));
    run_captured("lun-masking", &a, Some(42));
    run_captured("lun-masking", &b, Some(42));
    let (x, y) = (std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    assert!(x.len() > 1000);
    assert!(x == y, "same seed, different captures");
}

#[test]
fn a_restarted_switch_is_captured_again_from_its_first_flogi() {
    let text = r#"{
      "name": "restart", "seed": 9,
      "topology": {
        "sites": [{"name": "dc1"}],
        "switches": [{"name": "sw1", "site": "dc1", "domain": 1, "ports": 4}],
        "arrays": [{"name": "arr1", "site": "dc1", "ports": 1,
                    "lus": [{"lun": 0, "blocks": 1024, "block_bytes": 512}]}],
        "hosts": [{"name": "h1", "site": "dc1", "ports": 1}],
        "links": [{"a": "h1/0", "b": "sw1/0"}, {"a": "arr1/0", "b": "sw1/1"}]
      },
      "setup": [{"op": "wait", "until": {"fabric": "converged"}}],
      "steps": [
        {"at": "2ms", "op": "crash", "node": "sw1"},
        {"at": "4ms", "op": "restart", "node": "sw1"},
        {"at": "30ms", "op": "check", "check": "logged_in", "port": "h1/0"},
        {"at": "30ms", "op": "check", "check": "read_returns", "host": "h1",
         "target": "arr1:0", "lba": 0, "blocks": 1, "status": "good"}
      ]
    }"#;
    let pcap = capture_text("restart", text);
    let flogis = fields(
        &pcap,
        "fcels.opcode == 0x04 && fc.r_ctl == 0x22",
        &["frame.time_epoch"],
    );
    let accs = fields(
        &pcap,
        "fc.r_ctl == 0x23 && fc.s_id == ff.ff.fe",
        &["fc.d_id"],
    );
    assert_eq!((flogis.len(), accs.len()), (4, 4), "{flogis:?} {accs:?}");
    // The second round comes after the crash at t0 + 2 ms.
    let t: Vec<f64> = flogis.iter().map(|r| r[0].parse().unwrap()).collect();
    assert!(t[2] - t[0] > 0.002, "{t:?}");
    assert_eq!(
        count(&pcap, "_ws.malformed || _ws.expert.severity >= \"Error\""),
        0
    );
}

fn fcsim() -> Command {
    Command::new(env!("CARGO_BIN_EXE_fcsim"))
}

#[test]
fn cli_run_with_chosen_ports_and_bad_arguments() {
    require_tshark();
    let dir = out_dir();
    let file = root().join("scenarios/library/lun-masking.json");
    let pcap = dir.join("cli-h1.pcap");
    let out = fcsim()
        .arg("run")
        .arg(&file)
        .arg("--pcap")
        .arg(&pcap)
        .args(["--capture", "sw1:0"])
        .output()
        .expect("fcsim run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("on 1 ports written to"), "{stdout}");
    // Only h1's cable: every frame is from or to h1 (01.00.00, or the unidentified
    // 00.00.00 before its FLOGI is accepted).
    let h1 = ["01.00.00", "00.00.00"];
    let frames = fields(&pcap, "", &["fc.s_id", "fc.d_id"]);
    assert!(frames.len() > 50, "{} frames", frames.len());
    for f in &frames {
        assert!(
            h1.contains(&f[0].as_str()) || h1.contains(&f[1].as_str()),
            "{} → {} in a capture of h1's cable",
            f[0],
            f[1]
        );
    }

    // A port that does not exist: an error before the run starts (no timeline).
    let out = fcsim()
        .arg("run")
        .arg(&file)
        .arg("--pcap")
        .arg(dir.join("never.pcap"))
        .args(["--capture", "sw1:99"])
        .output()
        .expect("fcsim run");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--capture sw1/99: sw1 has ports 0 to 7"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty(), "the run started");

    // An unwritable path: the same.
    let out = fcsim()
        .arg("run")
        .arg(&file)
        .arg("--pcap")
        .arg(dir.join("no-such-dir/x.pcap"))
        .output()
        .expect("fcsim run");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot write the capture to"), "{stderr}");
    assert!(out.stdout.is_empty(), "the run started");
}

#[test]
fn ctl_capture_on_a_live_fabric() {
    require_tshark();
    let up = common::Up::start("lun-masking.json");
    let dir = out_dir();
    let pcap = dir.join("live.pcap");
    let ctl = |args: &[&str]| {
        let mut c = fcsim();
        c.args(["ctl", "--control", &up.addr]).args(args);
        c
    };
    // Wait until the fabric serves its Control endpoint (setup done).
    let mut ready = false;
    for _ in 0..200 {
        if ctl(&["nodes"]).output().is_ok_and(|o| o.status.success()) {
            ready = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(ready, "fcsim up never answered");

    let bad = ctl(&["capture", "--port", "sw1:42", "--out"])
        .arg(dir.join("bad.pcap"))
        .args(["--duration", "1s"])
        .output()
        .expect("fcsim ctl capture");
    assert_eq!(bad.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(
        stderr.contains("InvalidArgument: ports: 42 is not a port of sw1"),
        "{stderr}"
    );

    let capture = ctl(&["capture", "--port", "sw1:0", "--out"])
        .arg(&pcap)
        .args(["--duration", "3s"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("fcsim ctl capture");
    std::thread::sleep(Duration::from_millis(800));
    let read = fcsim()
        .args([
            "host",
            "--control",
            &up.addr,
            "--host",
            "h1",
            "read",
            "arr1:0",
            "7",
            "2",
        ])
        .output()
        .expect("fcsim host read");
    assert!(
        read.status.success(),
        "{}",
        String::from_utf8_lossy(&read.stderr)
    );
    let out = capture.wait_with_output().expect("capture ends");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("captured "), "{stdout}");

    let reads = fields(
        &pcap,
        "scsi_sbc.opcode == 0x88",
        &[
            "fc.s_id",
            "scsi_sbc.rdwr16.lba",
            "scsi_sbc.rdwr12.xferlen",
            "frame.time_epoch",
        ],
    );
    assert_eq!(reads.len(), 1, "{reads:?}");
    assert_eq!(reads[0][0], "01.00.00");
    assert_eq!((hex(&reads[0][1]), reads[0][2].as_str()), (7, "2"));
    // Wall-clock timestamps: within a day of now.
    let t: f64 = reads[0][3].parse().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!((now - t).abs() < 86_400.0, "timestamp {t} is not wall time");
    assert_eq!(
        count(&pcap, "_ws.malformed || _ws.expert.severity >= \"Error\""),
        0
    );
}
