//! FCP exchanges (FCP-4): the initiator side that turns a SCSI command into FCP_CMND,
//! FCP_DATA and FCP_RSP information units, and the target side that assembles them
//! back into a command and answers it. Sans-IO: frames in, frames and completions out.
//!
//! Write data goes as first burst right after FCP_CMND (the PRLI both ends exchange
//! sets "WRITE FCP_XFER_RDY DISABLED"), so a write costs CMND + DATA + RSP and a read
//! CMND + DATA + RSP. One FCP_DATA message carries one information unit (a sequence)
//! of up to [`MAX_DATA_IU`] bytes; payloads are `Bytes` slices, never copied.
//!
//! Call order for both: `handle_frame` for every FCP frame of the port, `handle_timeout`
//! when `poll_timeout` passes, then drain `poll_transmit` (frames to send) and
//! `poll_completion` / `poll_command`.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use fcsim_fabric::FcId;
use fcsim_fabric::frame::{BaAcc, FcHeader, FcpCmnd, FcpRsp, Frame, Iu, fctl, ftype, rctl};

/// The largest FCP_DATA information unit sent as one message (one sequence).
pub const MAX_DATA_IU: usize = 256 * 1024;

/// SAM-5 single-level LUN: peripheral addressing below 256, flat addressing below 16384.
pub fn lun_to_bytes(lun: u32) -> [u8; 8] {
    let mut b = [0u8; 8];
    if lun < 256 {
        b[1] = lun as u8;
    } else {
        let l = lun.min(0x3FFF);
        b[0] = 0x40 | (l >> 8) as u8;
        b[1] = (l & 0xFF) as u8;
    }
    b
}

/// Inverse of [`lun_to_bytes`] for the two single-level forms; other forms are `None`.
pub fn lun_from_bytes(b: &[u8; 8]) -> Option<u32> {
    match b[0] >> 6 {
        0 if b[0] == 0 => Some(u32::from(b[1])),
        1 => Some((u32::from(b[0] & 0x3F) << 8) | u32::from(b[1])),
        _ => None,
    }
}

/// A SCSI command to send.
#[derive(Debug, Clone)]
pub struct IoRequest {
    /// Logical unit number.
    pub lun: u32,
    /// The CDB.
    pub cdb: Bytes,
    /// Data to write (empty for none).
    pub data_out: Bytes,
    /// Bytes of data expected back (0 for none).
    pub data_in_len: u32,
}

/// Why a command did not complete with a SCSI status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportError {
    /// No FCP_RSP within the exchange timeout (a zoned or dead path, a lost frame).
    Timeout,
    /// The port went offline with the exchange open.
    LinkDown,
}

/// The outcome of one command.
#[derive(Debug, Clone)]
pub struct IoResult {
    /// SCSI status (GOOD 00h, CHECK CONDITION 02h, …); meaningless when `transport` is set.
    pub status: u8,
    /// Sense data returned with CHECK CONDITION.
    pub sense: Bytes,
    /// Data read.
    pub data_in: Bytes,
    /// Residual byte count from FCP_RSP (underrun).
    pub resid: u32,
    /// Set when the command never got a SCSI status.
    pub transport: Option<TransportError>,
}

/// Identifies a submitted command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Tag(pub u64);

struct Exchange {
    tag: Tag,
    deadline: Duration,
    data_in: Vec<Bytes>,
    /// The initiator port's and the target's addresses (for ABTS).
    s_id: FcId,
    d_id: FcId,
}

/// The FCP initiator of one node (all its ports).
#[derive(Default)]
pub struct FcpInitiator {
    /// Open exchanges by (port, OX_ID).
    open: BTreeMap<(u32, u16), Exchange>,
    next_ox_id: BTreeMap<u32, u16>,
    next_tag: u64,
    out: VecDeque<(u32, Frame)>,
    done: VecDeque<(Tag, IoResult)>,
}

impl FcpInitiator {
    /// How long an exchange may stay open before it fails with `Timeout`
    /// (FC-FS E_D_TOV-scale; real HBAs wait 2 × R_A_TOV before ABTS).
    pub const EXCHANGE_TIMEOUT: Duration = Duration::from_millis(200);

    pub fn new() -> Self {
        Self::default()
    }

    fn ox_id(&mut self, port: u32) -> u16 {
        let n = self.next_ox_id.entry(port).or_insert(0);
        loop {
            *n = n.wrapping_add(1);
            if *n != 0xFFFF && !self.open.contains_key(&(port, *n)) {
                return *n;
            }
        }
    }

    /// Sends `req` from `s_id` on `port` to `d_id`; its result comes out of
    /// [`poll_completion`](Self::poll_completion) with the returned tag.
    pub fn submit(
        &mut self,
        port: u32,
        s_id: FcId,
        d_id: FcId,
        req: IoRequest,
        now: Duration,
    ) -> Tag {
        self.submit_within(port, s_id, d_id, req, now, Self::EXCHANGE_TIMEOUT)
    }

    /// [`submit`](Self::submit) with an explicit exchange timeout.
    pub fn submit_within(
        &mut self,
        port: u32,
        s_id: FcId,
        d_id: FcId,
        req: IoRequest,
        now: Duration,
        timeout: Duration,
    ) -> Tag {
        self.next_tag += 1;
        let tag = Tag(self.next_tag);
        let ox_id = self.ox_id(port);
        let write = !req.data_out.is_empty();
        let dl = if write {
            u32::try_from(req.data_out.len()).unwrap_or(u32::MAX)
        } else {
            req.data_in_len
        };
        let cmnd = FcpCmnd::new(
            lun_to_bytes(req.lun),
            &req.cdb,
            req.data_in_len > 0 && !write,
            write,
            dl,
        );
        let h = FcHeader::request(rctl::FCP_CMND, ftype::FCP, d_id, s_id, ox_id);
        self.out
            .push_back((port, Frame::from_iu(h, &Iu::FcpCmnd(cmnd))));
        // First burst: the data follows the command without waiting for FCP_XFER_RDY.
        let mut offset = 0usize;
        while offset < req.data_out.len() {
            let end = (offset + MAX_DATA_IU).min(req.data_out.len());
            let dh = FcHeader::request(rctl::FCP_DATA, ftype::FCP, d_id, s_id, ox_id);
            let rel = u32::try_from(offset).unwrap_or(u32::MAX);
            self.out.push_back((
                port,
                Frame::fcp_data(dh, rel, req.data_out.slice(offset..end)),
            ));
            offset = end;
        }
        self.open.insert(
            (port, ox_id),
            Exchange {
                tag,
                deadline: now + timeout,
                data_in: Vec::new(),
                s_id,
                d_id,
            },
        );
        tag
    }

    /// Takes an FCP frame that arrived on `port`. Returns false if it belongs to no open
    /// exchange of this initiator.
    pub fn handle_frame(&mut self, port: u32, frame: &Frame) -> bool {
        let key = (port, frame.header.ox_id);
        if frame.header.fc_type == ftype::BLS && frame.header.from_responder() {
            // BA_ACC / BA_RJT to an ABTS this initiator sent: the exchange is gone.
            return true;
        }
        if !self.open.contains_key(&key) || !frame.header.from_responder() {
            return false;
        }
        match frame.iu(None) {
            Ok(Iu::FcpData(d)) => {
                if let Some(x) = self.open.get_mut(&key) {
                    x.data_in.push(d);
                }
            }
            Ok(Iu::FcpRsp(rsp)) => {
                if let Some(x) = self.open.remove(&key) {
                    let data_in = concat(x.data_in);
                    self.done.push_back((
                        x.tag,
                        IoResult {
                            status: rsp.status,
                            sense: rsp.sense,
                            data_in,
                            resid: if rsp.resid_under { rsp.resid } else { 0 },
                            transport: None,
                        },
                    ));
                }
            }
            // FCP_XFER_RDY is not expected (first burst); anything else is ignored.
            _ => {}
        }
        true
    }

    /// Fails every exchange open on `port` (its link went down).
    pub fn port_down(&mut self, port: u32) {
        let keys: Vec<_> = self
            .open
            .range((port, 0)..=(port, u16::MAX))
            .map(|(k, _)| *k)
            .collect();
        for k in keys {
            if let Some(x) = self.open.remove(&k) {
                self.done
                    .push_back((x.tag, failed(TransportError::LinkDown)));
            }
        }
        self.out.retain(|(p, _)| *p != port);
    }

    pub fn handle_timeout(&mut self, now: Duration) {
        let expired: Vec<_> = self
            .open
            .iter()
            .filter(|(_, x)| x.deadline <= now)
            .map(|(k, _)| *k)
            .collect();
        for k in expired {
            if let Some(x) = self.open.remove(&k) {
                // Abort the exchange at the target (FC-FS-4 §15.3.1), so it drops
                // whatever it still holds of it; the BA_ACC needs no answer.
                let (port, ox_id) = k;
                let h = FcHeader::request(rctl::BA_ABTS, ftype::BLS, x.d_id, x.s_id, ox_id);
                self.out.push_back((port, Frame::from_iu(h, &Iu::Abts)));
                self.done
                    .push_back((x.tag, failed(TransportError::Timeout)));
            }
        }
    }

    pub fn poll_timeout(&self) -> Option<Duration> {
        self.open.values().map(|x| x.deadline).min()
    }

    pub fn poll_transmit(&mut self) -> Option<(u32, Frame)> {
        self.out.pop_front()
    }

    pub fn poll_completion(&mut self) -> Option<(Tag, IoResult)> {
        self.done.pop_front()
    }

    /// Exchanges still open.
    pub fn open_exchanges(&self) -> usize {
        self.open.len()
    }
}

fn failed(e: TransportError) -> IoResult {
    IoResult {
        status: 0,
        sense: Bytes::new(),
        data_in: Bytes::new(),
        resid: 0,
        transport: Some(e),
    }
}

/// Joins data IUs; a single IU is passed through without a copy.
fn concat(mut parts: Vec<Bytes>) -> Bytes {
    match parts.len() {
        0 => Bytes::new(),
        1 => parts.pop().unwrap_or_default(),
        _ => {
            let mut b = BytesMut::with_capacity(parts.iter().map(Bytes::len).sum());
            for p in parts {
                b.extend_from_slice(&p);
            }
            b.freeze()
        }
    }
}

/// A command the target side assembled, ready to execute.
#[derive(Debug, Clone)]
pub struct TargetCommand {
    /// Port it arrived on.
    pub port: u32,
    /// The initiator's FC_ID (S_ID of FCP_CMND).
    pub initiator: FcId,
    /// Logical unit number, `None` if the LUN field used an addressing method this
    /// target does not support.
    pub lun: Option<u32>,
    /// The CDB bytes.
    pub cdb: Bytes,
    /// Write data received (empty for none).
    pub data_out: Bytes,
    /// FCP_DL: bytes the initiator expects to transfer.
    pub fcp_dl: u32,
    /// Header of FCP_CMND, to address the reply.
    header: FcHeader,
}

impl TargetCommand {
    /// The initiator's exchange ID (for logs).
    pub fn ox_id(&self) -> u16 {
        self.header.ox_id
    }
}

struct PendingWrite {
    cmd: TargetCommand,
    parts: Vec<Bytes>,
    received: usize,
}

/// The FCP target of one node (all its ports).
#[derive(Default)]
pub struct FcpTarget {
    pending: BTreeMap<(u32, FcId, u16), PendingWrite>,
    ready: VecDeque<TargetCommand>,
    out: VecDeque<(u32, Frame)>,
    next_rx_id: u16,
}

impl FcpTarget {
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes an FCP frame from `port`. Returns false if it is not an FCP request IU.
    pub fn handle_frame(&mut self, port: u32, frame: &Frame) -> bool {
        let h = frame.header;
        let key = (port, h.s_id, h.ox_id);
        if h.fc_type == ftype::BLS && h.r_ctl == rctl::BA_ABTS && !h.from_responder() {
            // The initiator gave up on the exchange: forget what arrived of it.
            self.pending.remove(&key);
            let acc = BaAcc {
                seq_id_valid: false,
                seq_id: 0,
                ox_id: h.ox_id,
                rx_id: h.rx_id,
                low_seq_cnt: 0,
                high_seq_cnt: 0xFFFF,
            };
            let reply = h.reply(rctl::BA_ACC, h.rx_id);
            self.out
                .push_back((port, Frame::from_iu(reply, &Iu::BaAcc(acc))));
            return true;
        }
        if h.fc_type != ftype::FCP || h.from_responder() {
            return false;
        }
        match frame.iu(None) {
            Ok(Iu::FcpCmnd(c)) => {
                let cmd = TargetCommand {
                    port,
                    initiator: h.s_id,
                    lun: lun_from_bytes(&c.lun),
                    cdb: c.cdb.clone(),
                    data_out: Bytes::new(),
                    fcp_dl: c.fcp_dl,
                    header: h,
                };
                if c.wrdata && c.fcp_dl > 0 {
                    self.pending.insert(
                        key,
                        PendingWrite {
                            cmd,
                            parts: Vec::new(),
                            received: 0,
                        },
                    );
                } else {
                    self.ready.push_back(cmd);
                }
                true
            }
            Ok(Iu::FcpData(d)) => {
                if let Some(p) = self.pending.get_mut(&key) {
                    p.received += d.len();
                    p.parts.push(d);
                    if p.received >= p.cmd.fcp_dl as usize {
                        if let Some(mut p) = self.pending.remove(&key) {
                            p.cmd.data_out = concat(p.parts);
                            self.ready.push_back(p.cmd);
                        }
                    }
                }
                true
            }
            _ => false,
        }
    }

    /// Drops half-received writes on `port` (link down).
    pub fn port_down(&mut self, port: u32) {
        self.pending.retain(|(p, _, _), _| *p != port);
        self.out.retain(|(p, _)| *p != port);
    }

    /// The next fully received command.
    pub fn poll_command(&mut self) -> Option<TargetCommand> {
        self.ready.pop_front()
    }

    /// Answers `cmd`: `data_in` as FCP_DATA (if any), then FCP_RSP with `status` and
    /// `sense` and the residual against FCP_DL.
    pub fn complete(&mut self, cmd: &TargetCommand, status: u8, sense: Bytes, data_in: Bytes) {
        self.next_rx_id = self.next_rx_id.wrapping_add(1) % 0xFFFF;
        let rx_id = self.next_rx_id;
        let sent = data_in.len().min(cmd.fcp_dl as usize);
        let mut offset = 0;
        while offset < sent {
            let end = (offset + MAX_DATA_IU).min(sent);
            let h = cmd
                .header
                .reply(rctl::FCP_DATA, rx_id)
                .with_f_ctl(fctl::EXCHANGE_CONTEXT | fctl::END_SEQUENCE | fctl::RELATIVE_OFFSET);
            let rel = u32::try_from(offset).unwrap_or(u32::MAX);
            self.out.push_back((
                cmd.port,
                Frame::fcp_data(h, rel, data_in.slice(offset..end)),
            ));
            offset = end;
        }
        let mut rsp = FcpRsp::status(status);
        let moved = if cmd.data_out.is_empty() {
            sent
        } else {
            cmd.data_out.len()
        };
        let resid = (cmd.fcp_dl as usize).saturating_sub(moved);
        if resid > 0 && status == 0 {
            rsp.resid_under = true;
            rsp.resid = u32::try_from(resid).unwrap_or(u32::MAX);
        }
        rsp.sense = sense;
        let h = cmd.header.reply(rctl::FCP_RSP, rx_id);
        self.out
            .push_back((cmd.port, Frame::from_iu(h, &Iu::FcpRsp(rsp))));
    }

    pub fn poll_transmit(&mut self) -> Option<(u32, Frame)> {
        self.out.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(x: u32) -> FcId {
        FcId::new(x)
    }

    /// Moves frames from one side to the other through the FC-2 codec.
    fn wire(f: Frame) -> Frame {
        Frame::decode(f.encode()).expect("decodes")
    }

    #[test]
    fn lun_addressing_round_trips() {
        for lun in [0, 1, 255, 256, 4095, 16383] {
            assert_eq!(lun_from_bytes(&lun_to_bytes(lun)), Some(lun));
        }
        assert_eq!(lun_to_bytes(5)[..2], [0, 5]);
        assert_eq!(lun_to_bytes(300)[..2], [0x41, 0x2C]);
    }

    #[test]
    fn write_is_cmnd_data_rsp_and_read_returns_data() {
        let mut ini = FcpInitiator::new();
        let mut tgt = FcpTarget::new();
        let data = Bytes::from(vec![7u8; 4096]);
        let req = IoRequest {
            lun: 1,
            cdb: Bytes::from_static(&[0x2A, 0, 0, 0, 0, 8, 0, 0, 8, 0]),
            data_out: data.clone(),
            data_in_len: 0,
        };
        let tag = ini.submit(0, id(0x010100), id(0x020100), req, Duration::ZERO);
        let mut sent = 0;
        while let Some((_, f)) = ini.poll_transmit() {
            sent += 1;
            assert!(tgt.handle_frame(3, &wire(f)));
        }
        assert_eq!(sent, 2, "FCP_CMND + one FCP_DATA (first burst)");
        let cmd = tgt.poll_command().expect("assembled");
        assert_eq!(
            (cmd.lun, cmd.initiator, cmd.fcp_dl),
            (Some(1), id(0x010100), 4096)
        );
        assert_eq!(cmd.data_out, data);
        tgt.complete(&cmd, 0, Bytes::new(), Bytes::new());
        let (port, rsp) = tgt.poll_transmit().expect("FCP_RSP");
        assert_eq!(port, 3);
        assert!(ini.handle_frame(0, &wire(rsp)));
        let (t, r) = ini.poll_completion().expect("done");
        assert_eq!((t, r.status, r.transport), (tag, 0, None));

        let req = IoRequest {
            lun: 1,
            cdb: Bytes::from_static(&[0x28, 0, 0, 0, 0, 8, 0, 0, 8, 0]),
            data_out: Bytes::new(),
            data_in_len: 4096,
        };
        let tag = ini.submit(0, id(0x010100), id(0x020100), req, Duration::ZERO);
        while let Some((_, f)) = ini.poll_transmit() {
            tgt.handle_frame(3, &wire(f));
        }
        let cmd = tgt.poll_command().expect("read command");
        assert!(cmd.data_out.is_empty());
        tgt.complete(&cmd, 0, Bytes::new(), data.clone());
        while let Some((_, f)) = tgt.poll_transmit() {
            ini.handle_frame(0, &wire(f));
        }
        let (t, r) = ini.poll_completion().expect("done");
        assert_eq!(t, tag);
        assert_eq!(r.data_in, data);
    }

    #[test]
    fn large_transfers_split_into_data_ius() {
        let mut ini = FcpInitiator::new();
        let mut tgt = FcpTarget::new();
        let data = Bytes::from(
            (0..MAX_DATA_IU * 2 + 10)
                .map(|i| i as u8)
                .collect::<Vec<_>>(),
        );
        let req = IoRequest {
            lun: 0,
            cdb: Bytes::from_static(&[0x8A; 16]),
            data_out: data.clone(),
            data_in_len: 0,
        };
        ini.submit(0, id(1), id(2), req, Duration::ZERO);
        let mut n = 0;
        while let Some((_, f)) = ini.poll_transmit() {
            n += 1;
            tgt.handle_frame(0, &wire(f));
        }
        assert_eq!(n, 4);
        assert_eq!(tgt.poll_command().expect("assembled").data_out, data);
    }

    #[test]
    fn timeout_and_link_down_fail_exchanges() {
        let mut ini = FcpInitiator::new();
        let req = IoRequest {
            lun: 0,
            cdb: Bytes::from_static(&[0; 6]),
            data_out: Bytes::new(),
            data_in_len: 0,
        };
        let a = ini.submit(0, id(1), id(2), req.clone(), Duration::ZERO);
        let b = ini.submit(1, id(3), id(2), req, Duration::ZERO);
        ini.port_down(1);
        assert_eq!(
            ini.poll_completion().map(|(t, r)| (t, r.transport)),
            Some((b, Some(TransportError::LinkDown)))
        );
        assert_eq!(ini.poll_timeout(), Some(FcpInitiator::EXCHANGE_TIMEOUT));
        ini.handle_timeout(FcpInitiator::EXCHANGE_TIMEOUT);
        assert_eq!(
            ini.poll_completion().map(|(t, r)| (t, r.transport)),
            Some((a, Some(TransportError::Timeout)))
        );
        assert_eq!(ini.open_exchanges(), 0);
    }

    #[test]
    fn stray_frames_are_not_consumed() {
        let mut ini = FcpInitiator::new();
        let h =
            FcHeader::request(rctl::FCP_RSP, ftype::FCP, id(1), id(2), 77).reply(rctl::FCP_RSP, 5);
        let f = Frame::from_iu(h, &Iu::FcpRsp(FcpRsp::status(0)));
        assert!(!ini.handle_frame(0, &f));
    }
}
