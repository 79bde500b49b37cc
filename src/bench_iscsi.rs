//! The outside reference of `fcsim bench io --tgt`: `tgt` (the Linux SCSI target
//! framework's user-space daemon, `tgtd`) serving a file-backed LU over iSCSI on
//! loopback, driven by a small iSCSI initiator here.
//!
//! Why an initiator of our own: the kernel initiator needs the `iscsi_tcp` module and a
//! block device (not available in a container), Debian's `fio` has no libiscsi engine,
//! and libiscsi's `iscsi-perf` only reads and prints no percentiles. This one does what
//! the fcsim host's workload does: 4 KiB random READ(16) or WRITE(16) at a fixed queue
//! depth over one session, each I/O timed from sending its command to its status.
//!
//! iSCSI subset (RFC 7143): one connection, login straight through security (AuthMethod
//! None) and operational negotiation (no digests, immediate data), SCSI Command with
//! immediate data, Data-In (with or without status), SCSI Response, R2T → Data-Out,
//! NOP-In → NOP-Out; CmdSN kept inside the target's MaxCmdSN window.
//!
//! [`Tgtd`] starts a private `tgtd` (its own portal port and control socket) with one
//! target and a sparse file LU, and stops it when dropped. It needs root and the `tgt`
//! package; `scripts/bench-tgt.sh` installs that and runs the bench.

use std::collections::BTreeMap;
use std::io::{BufReader, BufWriter, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};

/// The iSCSI target name of the bench LU.
pub const TARGET_IQN: &str = "iqn.2026-11.org.fcsim:bench";
const INITIATOR_IQN: &str = "iqn.2026-11.org.fcsim:bench-initiator";
/// The LUN of the file-backed LU (LUN 0 is tgt's controller).
const LUN: u64 = 1;
const BHS: usize = 48;

/// A private `tgtd` serving one sparse file as LUN 1 of [`TARGET_IQN`] on
/// `127.0.0.1:port`. Stopped (and the file removed) when dropped.
pub struct Tgtd {
    child: Child,
    dir: PathBuf,
    /// The iSCSI portal, `127.0.0.1:port`.
    pub portal: String,
}

impl Tgtd {
    /// Starts `tgtd` in the foreground on a free loopback port with control socket
    /// `control` (distinct from a system `tgtd`'s 0), then creates the target and a
    /// `bytes`-byte sparse file LU, open to every initiator.
    pub fn start(bytes: u64) -> anyhow::Result<Self> {
        let tgtd = which("tgtd").context(
            "tgtd not found: install the `tgt` package (scripts/bench-tgt.sh does) and run as root",
        )?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let control = 100 + std::process::id() % 800;
        let dir = std::env::temp_dir().join(format!("fcsim-tgt-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let file = dir.join("lu.img");
        std::fs::File::create(&file)?.set_len(bytes)?;
        let child = Command::new(tgtd)
            .args(["-f", "-C", &control.to_string(), "--iscsi"])
            .arg(format!("portal=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting tgtd")?;
        let mut me = Tgtd {
            child,
            dir,
            portal: format!("127.0.0.1:{port}"),
        };
        // tgtd's control socket comes up shortly after start.
        let deadline = Instant::now() + Duration::from_secs(10);
        let c = control.to_string();
        loop {
            let r = tgtadm(
                &c,
                &["--mode", "target", "--op", "new", "--tid", "1"],
                &["--targetname", TARGET_IQN],
            );
            match r {
                Ok(()) => break,
                Err(e) if Instant::now() > deadline => {
                    return Err(e.context("tgtd did not come up"));
                }
                Err(_) => {
                    if let Some(status) = me.child.try_wait()? {
                        bail!("tgtd exited at start ({status}); it needs root");
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        }
        let file = file.to_str().context("temp path is not UTF-8")?.to_string();
        tgtadm(
            &c,
            &[
                "--mode",
                "logicalunit",
                "--op",
                "new",
                "--tid",
                "1",
                "--lun",
                "1",
            ],
            &["--backing-store", &file],
        )?;
        tgtadm(
            &c,
            &["--mode", "target", "--op", "bind", "--tid", "1"],
            &["--initiator-address", "ALL"],
        )?;
        // The portal listens once tgtd has started; wait for it.
        while TcpStream::connect(&me.portal).is_err() {
            if Instant::now() > deadline {
                bail!("tgtd portal {} never accepted", me.portal);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        me.portal = format!("127.0.0.1:{port}");
        Ok(me)
    }
}

impl Drop for Tgtd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn tgtadm(control: &str, op: &[&str], rest: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("tgtadm")
        .args(["-C", control, "--lld", "iscsi"])
        .args(op)
        .args(rest)
        .output()
        .context("running tgtadm")?;
    if !out.status.success() {
        bail!(
            "tgtadm {}: {}",
            op.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// `name` on `PATH` or in the sbin directories (tgtd lives in /usr/sbin).
pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    path.split(':')
        .chain(["/usr/sbin", "/sbin", "/usr/local/sbin"])
        .map(|d| PathBuf::from(d).join(name))
        .find(|p| p.is_file())
}

/// One measured point against the iSCSI LU.
#[derive(Debug, Clone)]
pub struct IscsiPoint {
    pub ios: u64,
    pub errors: u64,
    pub iops: f64,
    pub p50_us: u64,
    pub p99_us: u64,
}

/// One iSCSI session (one connection) to LUN 1 of [`TARGET_IQN`].
pub struct Session {
    r: BufReader<TcpStream>,
    w: BufWriter<TcpStream>,
    cmd_sn: u32,
    exp_stat_sn: u32,
    max_cmd_sn: u32,
    next_itt: u32,
    /// Largest data segment the target accepts from us.
    max_send: usize,
    immediate: bool,
    block_bytes: u32,
    blocks: u64,
}

/// A received PDU: its header and data segment.
struct Pdu {
    bhs: [u8; BHS],
    data: Vec<u8>,
}

impl Pdu {
    fn opcode(&self) -> u8 {
        self.bhs[0] & 0x3F
    }
    fn u32_at(&self, at: usize) -> u32 {
        u32::from_be_bytes([
            self.bhs[at],
            self.bhs[at + 1],
            self.bhs[at + 2],
            self.bhs[at + 3],
        ])
    }
}

fn put_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_be_bytes());
}

fn put_dsl(b: &mut [u8], len: usize) {
    let l = u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes();
    b[5..8].copy_from_slice(&l[1..4]);
}

/// `a` ≤ `b` in serial number arithmetic (RFC 1982, 32 bits).
fn sn_le(a: u32, b: u32) -> bool {
    a == b || b.wrapping_sub(a) < (1 << 31)
}

fn text(keys: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (k, v) in keys {
        out.extend_from_slice(k.as_bytes());
        out.push(b'=');
        out.extend_from_slice(v.as_bytes());
        out.push(0);
    }
    out
}

fn parse_text(data: &[u8]) -> BTreeMap<String, String> {
    data.split(|b| *b == 0)
        .filter_map(|kv| {
            let s = std::str::from_utf8(kv).ok()?;
            let (k, v) = s.split_once('=')?;
            Some((k.to_string(), v.to_string()))
        })
        .collect()
}

impl Session {
    /// Connects to `portal`, logs in to [`TARGET_IQN`] and reads the LU's capacity.
    pub fn login(portal: &str) -> anyhow::Result<Self> {
        let s = TcpStream::connect(portal).with_context(|| format!("connecting to {portal}"))?;
        s.set_nodelay(true)?;
        let mut me = Session {
            r: BufReader::with_capacity(1 << 20, s.try_clone()?),
            w: BufWriter::with_capacity(1 << 20, s),
            cmd_sn: 1,
            exp_stat_sn: 0,
            max_cmd_sn: 1,
            next_itt: 1,
            max_send: 8192,
            immediate: false,
            block_bytes: 512,
            blocks: 0,
        };
        let security = text(&[
            ("InitiatorName", INITIATOR_IQN),
            ("TargetName", TARGET_IQN),
            ("SessionType", "Normal"),
            ("AuthMethod", "None"),
        ]);
        let mut tsih = 0u16;
        let r = me.login_step(0, 1, &security, tsih)?;
        tsih = u16::from_be_bytes([r.bhs[14], r.bhs[15]]);
        let operational = text(&[
            ("HeaderDigest", "None"),
            ("DataDigest", "None"),
            ("ImmediateData", "Yes"),
            ("InitialR2T", "No"),
            ("MaxRecvDataSegmentLength", "262144"),
            ("FirstBurstLength", "262144"),
            ("MaxBurstLength", "262144"),
            ("MaxOutstandingR2T", "1"),
            ("MaxConnections", "1"),
            ("ErrorRecoveryLevel", "0"),
            ("DefaultTime2Wait", "0"),
            ("DefaultTime2Retain", "0"),
            ("DataPDUInOrder", "Yes"),
            ("DataSequenceInOrder", "Yes"),
        ]);
        let mut keys = BTreeMap::new();
        let mut r = me.login_step(1, 3, &operational, tsih)?;
        keys.extend(parse_text(&r.data));
        // The target may need more rounds before it moves to full feature phase.
        let mut rounds = 0;
        while r.bhs[1] & 0x80 == 0 || r.bhs[1] & 0x03 != 3 {
            rounds += 1;
            if rounds > 8 {
                bail!("iSCSI login did not reach full feature phase");
            }
            r = me.login_step(1, 3, &[], tsih)?;
            keys.extend(parse_text(&r.data));
        }
        if let Some(v) = keys
            .get("MaxRecvDataSegmentLength")
            .and_then(|v| v.parse().ok())
        {
            me.max_send = v;
        }
        me.immediate = keys.get("ImmediateData").is_none_or(|v| v == "Yes");
        let first_burst: usize = keys
            .get("FirstBurstLength")
            .and_then(|v| v.parse().ok())
            .unwrap_or(65536);
        me.max_send = me.max_send.min(first_burst);
        me.read_capacity()?;
        Ok(me)
    }

    fn login_step(&mut self, csg: u8, nsg: u8, data: &[u8], tsih: u16) -> anyhow::Result<Pdu> {
        let mut b = [0u8; BHS];
        b[0] = 0x43;
        b[1] = 0x80 | (csg << 2) | nsg;
        put_dsl(&mut b, data.len());
        b[8..14].copy_from_slice(&[0x80, 0x00, 0x00, 0x0F, 0xC5, 0x01]);
        b[14..16].copy_from_slice(&tsih.to_be_bytes());
        put_u32(&mut b, 16, 0);
        put_u32(&mut b, 24, self.cmd_sn);
        put_u32(&mut b, 28, self.exp_stat_sn);
        self.send(&b, data)?;
        let r = self.recv()?;
        if r.opcode() != 0x23 {
            bail!("login: unexpected PDU opcode {:#04x}", r.opcode());
        }
        if r.bhs[36] != 0 {
            bail!(
                "login rejected: status class {} detail {}",
                r.bhs[36],
                r.bhs[37]
            );
        }
        self.exp_stat_sn = r.u32_at(24).wrapping_add(1);
        self.max_cmd_sn = r.u32_at(32);
        Ok(r)
    }

    fn send(&mut self, bhs: &[u8; BHS], data: &[u8]) -> anyhow::Result<()> {
        self.w.write_all(bhs)?;
        if !data.is_empty() {
            self.w.write_all(data)?;
            let pad = (4 - data.len() % 4) % 4;
            self.w.write_all(&[0u8; 3][..pad])?;
        }
        self.w.flush()?;
        Ok(())
    }

    /// Queues a PDU without flushing (a batch of commands goes out in one write).
    fn queue(&mut self, bhs: &[u8; BHS], data: &[u8]) -> anyhow::Result<()> {
        self.w.write_all(bhs)?;
        if !data.is_empty() {
            self.w.write_all(data)?;
            let pad = (4 - data.len() % 4) % 4;
            self.w.write_all(&[0u8; 3][..pad])?;
        }
        Ok(())
    }

    fn recv(&mut self) -> anyhow::Result<Pdu> {
        let mut bhs = [0u8; BHS];
        self.r.read_exact(&mut bhs)?;
        let ahs = usize::from(bhs[4]) * 4;
        let dsl = usize::try_from(u32::from_be_bytes([0, bhs[5], bhs[6], bhs[7]]))?;
        if ahs > 0 {
            let mut skip = vec![0u8; ahs];
            self.r.read_exact(&mut skip)?;
        }
        let mut data = vec![0u8; dsl.div_ceil(4) * 4];
        self.r.read_exact(&mut data)?;
        data.truncate(dsl);
        Ok(Pdu { bhs, data })
    }

    /// Builds a SCSI Command PDU for `cdb` with `itt`; for a write, the immediate data
    /// it carries (up to what the target takes).
    fn command(&mut self, cdb: &[u8; 16], itt: u32, read: u32, write: &[u8]) -> [u8; BHS] {
        let mut b = [0u8; BHS];
        b[0] = 0x01;
        b[1] =
            0x80 | 0x01 | if read > 0 { 0x40 } else { 0 } | if write.is_empty() { 0 } else { 0x20 };
        let immediate = if self.immediate {
            write.len().min(self.max_send)
        } else {
            0
        };
        put_dsl(&mut b, immediate);
        b[8..16].copy_from_slice(&(LUN << 48).to_be_bytes());
        put_u32(&mut b, 16, itt);
        let expected = if read > 0 {
            read
        } else {
            u32::try_from(write.len()).unwrap_or(u32::MAX)
        };
        put_u32(&mut b, 20, expected);
        put_u32(&mut b, 24, self.cmd_sn);
        put_u32(&mut b, 28, self.exp_stat_sn);
        b[32..48].copy_from_slice(cdb);
        self.cmd_sn = self.cmd_sn.wrapping_add(1);
        b
    }

    fn take_itt(&mut self) -> u32 {
        let itt = self.next_itt;
        self.next_itt = self.next_itt.wrapping_add(1).max(1);
        itt
    }

    /// Handles one incoming PDU: returns `Some((itt, good))` when a command finished.
    fn handle(
        &mut self,
        p: &Pdu,
        writes: &BTreeMap<u32, Vec<u8>>,
    ) -> anyhow::Result<Option<(u32, bool)>> {
        match p.opcode() {
            // SCSI Response.
            0x21 => {
                self.exp_stat_sn = p.u32_at(24).wrapping_add(1);
                self.max_cmd_sn = p.u32_at(32);
                Ok(Some((p.u32_at(16), p.bhs[2] == 0 && p.bhs[3] == 0)))
            }
            // SCSI Data-In, maybe with status.
            0x25 => {
                self.max_cmd_sn = p.u32_at(32);
                if p.bhs[1] & 0x01 != 0 {
                    self.exp_stat_sn = p.u32_at(24).wrapping_add(1);
                    return Ok(Some((p.u32_at(16), p.bhs[3] == 0)));
                }
                Ok(None)
            }
            // R2T: send the requested part of the write as one Data-Out.
            0x31 => {
                self.max_cmd_sn = p.u32_at(32);
                let itt = p.u32_at(16);
                let data = writes
                    .get(&itt)
                    .ok_or_else(|| anyhow!("R2T for unknown task {itt}"))?;
                let off = usize::try_from(p.u32_at(40))?;
                let len = usize::try_from(p.u32_at(44))?;
                let chunk = data
                    .get(off..off + len)
                    .ok_or_else(|| anyhow!("R2T beyond the write"))?;
                let mut b = [0u8; BHS];
                b[0] = 0x05;
                b[1] = 0x80;
                put_dsl(&mut b, chunk.len());
                b[8..16].copy_from_slice(&(LUN << 48).to_be_bytes());
                put_u32(&mut b, 16, itt);
                put_u32(&mut b, 20, p.u32_at(20));
                put_u32(&mut b, 28, self.exp_stat_sn);
                put_u32(&mut b, 36, 0);
                put_u32(&mut b, 40, p.u32_at(40));
                let chunk = chunk.to_vec();
                self.send(&b, &chunk)?;
                Ok(None)
            }
            // NOP-In: answer a ping that wants an answer.
            0x20 => {
                self.max_cmd_sn = p.u32_at(32);
                let ttt = p.u32_at(20);
                if ttt != 0xFFFF_FFFF {
                    let mut b = [0u8; BHS];
                    b[0] = 0x40;
                    b[1] = 0x80;
                    put_u32(&mut b, 16, 0xFFFF_FFFF);
                    put_u32(&mut b, 20, ttt);
                    put_u32(&mut b, 24, self.cmd_sn);
                    put_u32(&mut b, 28, self.exp_stat_sn);
                    self.send(&b, &[])?;
                }
                Ok(None)
            }
            // Asynchronous message: nothing to do here.
            0x32 => Ok(None),
            0x3F => bail!("the target rejected a PDU (reason {:#04x})", p.bhs[2]),
            op => bail!("unexpected PDU opcode {op:#04x}"),
        }
    }

    /// READ CAPACITY(10): block size and count. A new session's first commands may
    /// meet a unit attention (power on, reset), so it is asked up to four times.
    fn read_capacity(&mut self) -> anyhow::Result<()> {
        let mut last = Err(anyhow!("READ CAPACITY not sent"));
        for _ in 0..4 {
            last = self.read_capacity_once();
            if last.is_ok() {
                break;
            }
        }
        last
    }

    fn read_capacity_once(&mut self) -> anyhow::Result<()> {
        let mut cdb = [0u8; 16];
        cdb[0] = 0x25;
        let itt = self.take_itt();
        let b = self.command(&cdb, itt, 8, &[]);
        self.send(&b, &[])?;
        let mut data = Vec::new();
        loop {
            let p = self.recv()?;
            if p.opcode() == 0x25 {
                data.extend_from_slice(&p.data);
            }
            if let Some((_, good)) = self.handle(&p, &BTreeMap::new())? {
                if !good || data.len() < 8 {
                    bail!("READ CAPACITY failed");
                }
                break;
            }
        }
        self.blocks = u64::from(u32::from_be_bytes([data[0], data[1], data[2], data[3]])) + 1;
        self.block_bytes = u32::from_be_bytes([data[4], data[5], data[6], data[7]]);
        Ok(())
    }

    /// `count` 4 KiB random reads or writes (`write`) at queue depth `qd`, 4 KiB
    /// aligned, from a seeded sequence.
    pub fn workload(
        &mut self,
        write: bool,
        qd: u32,
        count: u64,
        seed: u64,
    ) -> anyhow::Result<IscsiPoint> {
        const IO: u32 = 4096;
        let per_io = IO / self.block_bytes.max(1);
        let slots = (self.blocks / u64::from(per_io.max(1))).max(1);
        let mut rng = seed ^ 0x5DEE_CE66_D1CE_4E5B;
        let mut pending: BTreeMap<u32, Instant> = BTreeMap::new();
        let mut payloads: BTreeMap<u32, Vec<u8>> = BTreeMap::new();
        let mut lat_us: Vec<u64> = Vec::with_capacity(usize::try_from(count).unwrap_or(0));
        let (mut issued, mut errors) = (0u64, 0u64);
        let started = Instant::now();
        while lat_us.len() as u64 + errors < count {
            let mut queued = false;
            while issued < count
                && pending.len() < qd as usize
                && sn_le(self.cmd_sn, self.max_cmd_sn)
            {
                rng = rng
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                let lba = ((rng >> 17) % slots) * u64::from(per_io);
                let mut cdb = [0u8; 16];
                cdb[0] = if write { 0x8A } else { 0x88 };
                cdb[2..10].copy_from_slice(&lba.to_be_bytes());
                cdb[10..14].copy_from_slice(&per_io.to_be_bytes());
                let itt = self.take_itt();
                if write {
                    let data = vec![(issued & 0xFF) as u8; IO as usize];
                    let b = self.command(&cdb, itt, 0, &data);
                    let imm = usize::try_from(u32::from_be_bytes([0, b[5], b[6], b[7]]))?;
                    self.queue(&b, &data[..imm])?;
                    payloads.insert(itt, data);
                } else {
                    let b = self.command(&cdb, itt, IO, &[]);
                    self.queue(&b, &[])?;
                }
                pending.insert(itt, Instant::now());
                issued += 1;
                queued = true;
            }
            if queued {
                self.w.flush()?;
            }
            let p = self.recv()?;
            if let Some((itt, good)) = self.handle(&p, &payloads)? {
                payloads.remove(&itt);
                if let Some(t) = pending.remove(&itt) {
                    if good {
                        lat_us.push(u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX));
                    } else {
                        errors += 1;
                    }
                }
            }
        }
        let wall = started.elapsed().as_secs_f64();
        lat_us.sort_unstable();
        // Nearest-rank percentile, `per_mille` of 1000.
        let pct = |per_mille: usize| -> u64 {
            if lat_us.is_empty() {
                return 0;
            }
            let i = (lat_us.len() - 1) * per_mille / 1000;
            lat_us[i.min(lat_us.len() - 1)]
        };
        Ok(IscsiPoint {
            ios: lat_us.len() as u64,
            errors,
            iops: if wall > 0.0 {
                lat_us.len() as f64 / wall
            } else {
                0.0
            },
            p50_us: pct(500),
            p99_us: pct(990),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serial_numbers_wrap() {
        assert!(sn_le(5, 5));
        assert!(sn_le(5, 6));
        assert!(!sn_le(6, 5));
        assert!(sn_le(u32::MAX, 1));
    }

    #[test]
    fn text_keys_round_trip() {
        let t = text(&[("A", "1"), ("B", "x=y")]);
        let m = parse_text(&t);
        assert_eq!(m["A"], "1");
        assert_eq!(m["B"], "x=y");
    }
}
