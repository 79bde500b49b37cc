//! Bodies of the fcsim fuzz targets.
//!
//! Each `fuzz_targets/<name>.rs` is a one-line libFuzzer wrapper around the function of
//! the same name here, so the stable smoke test (`tests/smoke.rs`) runs exactly what
//! `cargo fuzz run <name>` runs. Every function must return normally for every input:
//! a panic — an fcsim decoder panicking, or one of the round-trip assertions below
//! failing — is a finding.

use bytes::Bytes;
use fcsim_devices::scsi::cdb::Command;
use fcsim_devices::scsi::inquiry::NaaId;
use fcsim_devices::scsi::target::{LogicalUnit, LuConfig, Nexus, ScsiTarget};
use fcsim_devices::scsi::xcopy::{OperatingParameters, ParameterList, descriptor_type};
use fcsim_devices::store::MemStore;
use fcsim_devices::tape::TapeCommand;
use fcsim_fabric::frame::ct::ns_cmd;
use fcsim_fabric::frame::{ElsCode, Frame, HEADER_LEN, Iu, NsRequest, NsResponse};
use fcsim_fabric::swils::SwIls;
use fcsim_fabric::{Wwn, Wwpn};

/// Every named ELS code, plus one unknown, as `Frame::iu` hints.
const ELS_HINTS: [Option<ElsCode>; 12] = [
    None,
    Some(ElsCode::LsRjt),
    Some(ElsCode::Acc),
    Some(ElsCode::Plogi),
    Some(ElsCode::Flogi),
    Some(ElsCode::Logo),
    Some(ElsCode::Prli),
    Some(ElsCode::Prlo),
    Some(ElsCode::Fdisc),
    Some(ElsCode::Rscn),
    Some(ElsCode::Scr),
    Some(ElsCode::Unsupported(0xEE)),
];

/// `Frame::decode`, then `Frame::iu` under every hint.
///
/// Asserts: decode fails only on input shorter than a header; a decoded frame
/// re-encodes to exactly the input bytes; an IU that decodes re-encodes (via
/// `Frame::from_iu`) to a frame that decodes to the same IU.
pub fn frame_decode(data: &[u8]) {
    let wire = Bytes::copy_from_slice(data);
    let frame = match Frame::decode(wire.clone()) {
        Ok(f) => f,
        Err(e) => {
            assert!(data.len() < HEADER_LEN, "decode failed on a full header: {e}");
            return;
        }
    };
    assert_eq!(frame.encode(), wire, "frame re-encode differs from the input");
    for hint in ELS_HINTS {
        let Ok(iu) = frame.iu(hint) else { continue };
        // `from_iu` may move the IU to its canonical R_CTL (the decoder accepts, e.g.,
        // an ELS request under the reply R_CTL); the IU itself must survive.
        let again = Frame::from_iu(frame.header, &iu);
        let back = Frame::decode(again.encode())
            .expect("re-encoded frame decodes")
            .iu(hint)
            .expect("re-encoded IU decodes");
        assert_eq!(back, iu, "IU re-encode round trip (hint {hint:?})");
        match &iu {
            Iu::Ct(ct) => {
                let _ = NsRequest::from_ct(ct);
                for cmd in [ns_cmd::GA_NXT, ns_cmd::GPN_ID, ns_cmd::GID_PN, ns_cmd::GID_FT] {
                    let _ = NsResponse::from_ct(ct, cmd);
                }
            }
            Iu::SwIls(p) => swils_decode(p),
            _ => {}
        }
    }
}

/// `SwIls::decode`; a message that decodes re-encodes to one that decodes the same.
pub fn swils_decode(data: &[u8]) {
    let Ok(msg) = SwIls::decode(Bytes::copy_from_slice(data)) else {
        return;
    };
    let back = SwIls::decode(msg.encode()).expect("re-encoded SW_ILS decodes");
    assert_eq!(back, msg, "SW_ILS re-encode round trip");
}

/// `Command::parse`; a parsed command's `encode` parses back to the same command.
pub fn cdb_parse(data: &[u8]) {
    let Ok(cmd) = Command::parse(data) else {
        return;
    };
    assert_eq!(cmd.opcode(), data[0], "opcode changed");
    let _ = cmd.parameter_list_length();
    let _ = cmd.data_out_blocks();
    let enc = cmd.encode();
    match Command::parse(&enc) {
        Ok(back) => assert_eq!(back, cmd, "CDB re-encode round trip"),
        Err(s) => panic!("encoded {cmd:?} as {enc:02x?}, which does not parse: {s:?}"),
    }
}

/// Limits with every count and length at its maximum and every descriptor implemented,
/// so that the fuzzer gets past the limit checks into the descriptor parsers.
fn permissive_limits() -> OperatingParameters {
    OperatingParameters {
        max_target_descriptors: u16::MAX,
        max_segment_descriptors: u16::MAX,
        max_descriptor_list_length: u32::MAX,
        max_segment_length: u32::MAX,
        max_inline_data_length: u32::MAX,
        implemented_descriptors: vec![
            descriptor_type::BLOCK_TO_STREAM,
            descriptor_type::STREAM_TO_BLOCK,
            descriptor_type::BLOCK_TO_BLOCK,
            descriptor_type::STREAM_TO_STREAM,
            descriptor_type::IDENTIFICATION,
        ],
        ..OperatingParameters::default()
    }
}

/// `ParameterList::parse`. The first byte picks the limits: default (0), permissive (1)
/// or decoded from the input (2: `OperatingParameters` bytes, then the list). A parsed
/// list re-encodes to one that parses the same; decoded limits round-trip too.
pub fn xcopy_parse(data: &[u8]) {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let (limits, list) = match sel % 3 {
        0 => (OperatingParameters::default(), rest),
        1 => (permissive_limits(), rest),
        _ => {
            let Ok(limits) = OperatingParameters::decode(rest) else {
                return;
            };
            let enc = limits.encode();
            assert_eq!(
                OperatingParameters::decode(&enc).as_ref(),
                Ok(&limits),
                "operating parameters round trip"
            );
            (limits, &rest[enc.len()..])
        }
    };
    let Ok(parsed) = ParameterList::parse(list, &limits) else {
        return;
    };
    let enc = parsed.encode();
    match ParameterList::parse(&enc, &limits) {
        Ok(back) => assert_eq!(back, parsed, "parameter list re-encode round trip"),
        Err(s) => panic!("re-encoded parameter list {enc:02x?} does not parse: {s:?}"),
    }
}

/// `TapeCommand::parse`.
pub fn tape_cdb_parse(data: &[u8]) {
    match TapeCommand::parse(data) {
        Ok(cmd) => {
            let _ = cmd.is_media_access();
            if let TapeCommand::Unsupported(op) = cmd {
                assert_eq!(op, data[0]);
            }
        }
        Err(_) => {}
    }
}

const LU_BLOCKS: u64 = 64;
const LU_NAA: u64 = 0x5001_B320_0000_0001;

/// `ScsiTarget::execute` on a target with one small MemStore LU (LUN 0, 64 × 512 B,
/// third-party copy on). Input: a flags byte, a CDB length byte (mod 33), the CDB,
/// and the rest as data-out.
///
/// Flags: bit 0 LU not ready; bit 1 read-only; bit 2 address LUN 1 (not present);
/// bit 3 LUN 0 masked; bit 4 EXTENDED COPY access refused; bit 5 no data-out;
/// bit 6 clear the POWER ON unit attention first; bit 7 write-through.
/// The command runs twice (the second sees the state the first left); an accepted
/// EXTENDED COPY is run locally and completed.
pub fn scsi_execute(data: &[u8]) {
    let [flags, cdb_len, rest @ ..] = data else {
        return;
    };
    let cdb_len = usize::from(*cdb_len % 33).min(rest.len());
    let (cdb, data_out) = rest.split_at(cdb_len);
    let data_out = (flags & 0x20 == 0).then(|| Bytes::copy_from_slice(data_out));

    let config = LuConfig {
        blocks: LU_BLOCKS,
        naa: LU_NAA,
        third_party_copy: true,
        read_only: flags & 0x02 != 0,
        write_through: flags & 0x80 != 0,
        max_transfer_blocks: 32,
        max_write_same_blocks: 48,
        ..LuConfig::default()
    };
    let store = MemStore::new(config.block_size_bytes, config.blocks).expect("store");
    let mut lu = LogicalUnit::new(config, Box::new(store)).expect("LU");
    lu.set_ready(flags & 0x01 == 0);
    let mut target = ScsiTarget::default();
    target.add_lu(lu).expect("add LU");

    let refuse = flags & 0x10 != 0;
    let may_access = move |naa: NaaId| !refuse && naa == NaaId::Short(Wwn(LU_NAA));
    let visible: &[u16] = if flags & 0x08 != 0 { &[] } else { &[0] };
    let nexus = Nexus {
        initiator: Wwpn(Wwn(0x1000_0000_C9AA_0001)),
        target_port: Wwpn(Wwn(0x5001_B320_0001_0001)),
        relative_port: 1,
        lun: u16::from(flags & 0x04 != 0),
        visible_luns: visible,
        may_access: &may_access,
    };
    if flags & 0x40 != 0 {
        let _ = target.execute(&nexus, &[0, 0, 0, 0, 0, 0], None);
    }
    for _ in 0..2 {
        let r = target.execute(&nexus, cdb, data_out.clone());
        assert_eq!(r.is_good(), r.sense.is_none(), "status and sense disagree: {r:?}");
        if let Some(job) = r.copy_job {
            let outcome = target.run_local_copy(&job);
            let _ = target.complete_copy(&job, &outcome);
        }
    }
    // The copy manager's report must still be well formed afterwards.
    let rcr = [0x84, 0x03, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0];
    let _ = target.execute(&nexus, &rcr, None);
}
