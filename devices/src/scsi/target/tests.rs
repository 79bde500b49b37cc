//! Target tests, one per command (good path and an error), citing SPC-5 / SBC-4.

use super::*;
use crate::scsi::cdb::*;
use crate::scsi::inquiry::{DeviceIdentification, ThirdPartyCopyPage, decode_copy_functions};
use crate::scsi::xcopy::{
    DeviceParams, OperatingParameters, ParameterList, Segment, TargetDescriptor,
};
use crate::store::MemStore;
use proptest::prelude::*;

const INI: Wwpn = Wwpn(Wwn(0x2100_0024_ff00_0001));
const OTHER_INI: Wwpn = Wwpn(Wwn(0x2100_0024_ff00_0002));
const TPORT: Wwpn = Wwpn(Wwn(0x5006_0e80_1000_0001));

fn cfg(lun: u16, blocks: u64, n: u64) -> LuConfig {
    LuConfig {
        lun,
        blocks,
        serial: format!("SN{lun:04}"),
        naa: Wwn::naa5(0x001B32, n).0,
        third_party_copy: true,
        copy_functions: CopyFunction::all(),
        max_transfer_blocks: 64,
        max_write_same_blocks: 128,
        ..LuConfig::default()
    }
}

fn target() -> ScsiTarget {
    let mut t = ScsiTarget::default();
    for (lun, n) in [(0u16, 1u64), (1, 2)] {
        let c = cfg(lun, 1000, n);
        let store = MemStore::new(c.block_size_bytes, c.blocks).expect("store");
        t.add_lu(LogicalUnit::new(c, Box::new(store)).expect("lu"))
            .expect("add");
    }
    t
}

fn all_access(_: NaaId) -> bool {
    true
}

fn nexus<'a>(lun: u16, visible: &'a [u16], may: &'a dyn Fn(NaaId) -> bool) -> Nexus<'a> {
    Nexus {
        initiator: INI,
        target_port: TPORT,
        relative_port: 1,
        lun,
        visible_luns: visible,
        may_access: may,
    }
}

/// A target whose power-on unit attention has already been consumed on LUNs 0 and 1.
fn ready_target() -> ScsiTarget {
    let mut t = target();
    for lun in [0, 1] {
        let r = t.execute(
            &nexus(lun, &[0, 1], &all_access),
            &TestUnitReady.encode(),
            None,
        );
        assert_eq!(r.sense.map(|s| s.asc_pair()), Some(asc::POWER_ON_RESET));
    }
    t
}

fn run(t: &mut ScsiTarget, lun: u16, cdb: &[u8], data: Option<Bytes>) -> ScsiResult {
    t.execute(&nexus(lun, &[0, 1], &all_access), cdb, data)
}

fn expect_sense(r: &ScsiResult, key: SenseKey, a: super::super::sense::Asc) {
    assert_eq!(r.status, Status::CHECK_CONDITION, "{r:?}");
    let s = r.sense.expect("sense");
    assert_eq!((s.key, s.asc_pair()), (key, a), "{s}");
}

// SAM-5 §5.14: POWER ON / RESET unit attention once per I_T_L nexus after a restart;
// INQUIRY neither reports nor clears it.
#[test]
fn unit_attention_once_per_initiator() {
    let mut t = target();
    let inq = Inquiry {
        evpd: false,
        page_code: 0,
        allocation_length: 96,
    }
    .encode();
    assert!(run(&mut t, 0, &inq, None).is_good());
    let r = run(&mut t, 0, &TestUnitReady.encode(), None);
    expect_sense(&r, SenseKey::UNIT_ATTENTION, asc::POWER_ON_RESET);
    assert!(run(&mut t, 0, &TestUnitReady.encode(), None).is_good());
    // Another initiator gets its own.
    let may = all_access;
    let mut n = nexus(0, &[0, 1], &may);
    n.initiator = OTHER_INI;
    let r = t.execute(&n, &TestUnitReady.encode(), None);
    expect_sense(&r, SenseKey::UNIT_ATTENTION, asc::POWER_ON_RESET);
    // After restart, again; REQUEST SENSE returns it as data and clears it.
    t.restart();
    let r = run(
        &mut t,
        0,
        &RequestSense {
            allocation_length: 18,
        }
        .encode(),
        None,
    );
    assert!(r.is_good());
    assert_eq!(
        Sense::decode(&r.data_in).map(|s| s.asc_pair()),
        Ok(asc::POWER_ON_RESET)
    );
    assert!(run(&mut t, 0, &TestUnitReady.encode(), None).is_good());
    // SPC-5 §5.14: REPORTED LUNS DATA HAS CHANGED after a LUN map change.
    t.notify_luns_changed();
    let r = run(&mut t, 0, &TestUnitReady.encode(), None);
    expect_sense(
        &r,
        SenseKey::UNIT_ATTENTION,
        asc::REPORTED_LUNS_DATA_CHANGED,
    );
}

// SPC-5 §6.47 TEST UNIT READY; NOT READY when the LU is offline.
#[test]
fn test_unit_ready_and_not_ready() {
    let mut t = ready_target();
    assert!(run(&mut t, 0, &TestUnitReady.encode(), None).is_good());
    t.lu_mut(0).expect("lu").set_ready(false);
    let r = run(&mut t, 0, &TestUnitReady.encode(), None);
    expect_sense(&r, SenseKey::NOT_READY, asc::LU_NOT_READY);
}

#[test]
fn unknown_opcode_and_short_cdb() {
    let mut t = ready_target();
    let r = run(&mut t, 0, &[0xC1, 0, 0, 0, 0, 0], None);
    expect_sense(
        &r,
        SenseKey::ILLEGAL_REQUEST,
        asc::INVALID_COMMAND_OPERATION_CODE,
    );
    let r = run(&mut t, 0, &[0x28, 0, 0], None);
    expect_sense(&r, SenseKey::ILLEGAL_REQUEST, asc::INVALID_FIELD_IN_CDB);
    let r = run(&mut t, 0, &[], None);
    expect_sense(&r, SenseKey::ILLEGAL_REQUEST, asc::INVALID_FIELD_IN_CDB);
}

// SPC-5 §6.7.2 standard INQUIRY data: 3PC set, version SPC-5, vendor FCSIM.
#[test]
fn inquiry_standard_and_missing_lun() {
    let mut t = ready_target();
    let r = run(
        &mut t,
        0,
        &Inquiry {
            evpd: false,
            page_code: 0,
            allocation_length: 255,
        }
        .encode(),
        None,
    );
    assert!(r.is_good());
    assert_eq!(r.residual, 255 - 36);
    let s = StandardInquiry::decode(&r.data_in).expect("decode");
    assert!(s.third_party_copy);
    assert_eq!((s.version, s.vendor.as_str()), (0x07, "FCSIM"));
    // A masked LUN reads as "no LU": qualifier 3, type 1Fh; other commands LU NOT SUPPORTED.
    let may = all_access;
    let n = nexus(1, &[0], &may);
    let r = t.execute(
        &n,
        &Inquiry {
            evpd: false,
            page_code: 0,
            allocation_length: 36,
        }
        .encode(),
        None,
    );
    assert_eq!(r.data_in[0], 0x7F);
    let r = t.execute(&n, &TestUnitReady.encode(), None);
    expect_sense(&r, SenseKey::ILLEGAL_REQUEST, asc::LU_NOT_SUPPORTED);
    // Allocation length truncates.
    let r = run(
        &mut t,
        0,
        &Inquiry {
            evpd: false,
            page_code: 0,
            allocation_length: 5,
        }
        .encode(),
        None,
    );
    assert_eq!(r.data_in.len(), 5);
    // Unknown VPD page.
    let r = run(
        &mut t,
        0,
        &Inquiry {
            evpd: true,
            page_code: 0x99,
            allocation_length: 255,
        }
        .encode(),
        None,
    );
    expect_sense(&r, SenseKey::ILLEGAL_REQUEST, asc::INVALID_FIELD_IN_CDB);
}

fn vpd(t: &mut ScsiTarget, page: u8) -> Bytes {
    let r = run(
        t,
        0,
        &Inquiry {
            evpd: true,
            page_code: page,
            allocation_length: 1024,
        }
        .encode(),
        None,
    );
    assert!(r.is_good(), "{r:?}");
    r.data_in
}

// SPC-5 §7.7.6 (83h), SPC-4 §7.8.17 (8Fh), SBC-4 §6.6.4 (B0h), vendor C0h.
#[test]
fn vpd_pages() {
    let mut t = ready_target();
    let pages = crate::scsi::inquiry::decode_supported_pages(&vpd(&mut t, 0x00)).expect("00h");
    assert_eq!(pages, vec![0x00, 0x80, 0x83, 0x8F, 0xB0, 0xC0]);
    assert_eq!(
        crate::scsi::inquiry::decode_unit_serial(&vpd(&mut t, 0x80)),
        Ok("SN0000".into())
    );
    let id = DeviceIdentification::decode(&vpd(&mut t, 0x83)).expect("83h");
    assert_eq!(id.lu_naa(), Some(NaaId::Short(Wwn::naa5(0x001B32, 1))));
    assert_eq!(id.target_port(), Some(TPORT.0));
    assert_eq!(id.relative_port(), Some(1));
    let tpc = ThirdPartyCopyPage::decode(&vpd(&mut t, 0x8F)).expect("8Fh");
    assert!(tpc.supports_command(0x83, 0x00));
    assert!(tpc.supports_command(0x84, 0x03));
    assert!(tpc.supported_descriptors.contains(&0x02));
    assert!(tpc.supported_descriptors.contains(&0xE4));
    let bl = BlockLimits::decode(&vpd(&mut t, 0xB0)).expect("B0h");
    assert_eq!(
        (bl.max_transfer_blocks, bl.max_write_same_blocks),
        (64, 128)
    );
    assert_eq!(
        decode_copy_functions(&vpd(&mut t, 0xC0)),
        Ok(CopyFunction::all())
    );
}

// SPC-5 §6.33 REPORT LUNS: the caller's (masked) list, 8-byte entries.
#[test]
fn report_luns_format() {
    let mut t = ready_target();
    let may = all_access;
    let visible = [1u16, 0, 300];
    let n = nexus(0, &visible, &may);
    let r = t.execute(
        &n,
        &ReportLuns {
            select_report: 0,
            allocation_length: 4096,
        }
        .encode(),
        None,
    );
    assert!(r.is_good());
    assert_eq!(&r.data_in[..8], &[0, 0, 0, 24, 0, 0, 0, 0]);
    assert_eq!(&r.data_in[8..16], &[0, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(&r.data_in[24..32], &[0x41, 0x2C, 0, 0, 0, 0, 0, 0]);
    assert_eq!(decode_report_luns(&r.data_in), Ok(vec![0, 1, 300]));
    // REPORT LUNS works on a LUN that is not present (here LUN 5).
    let n = nexus(5, &visible, &may);
    let r = t.execute(
        &n,
        &ReportLuns {
            select_report: 2,
            allocation_length: 16,
        }
        .encode(),
        None,
    );
    assert_eq!(r.data_in.len(), 16);
}

// SBC-4 §5.20 / §5.21 READ CAPACITY(10/16).
#[test]
fn read_capacity() {
    let mut t = ready_target();
    let r = run(&mut t, 0, &ReadCapacity10.encode(), None);
    assert_eq!(&r.data_in[..], &[0, 0, 0x03, 0xE7, 0, 0, 2, 0]);
    let r = run(
        &mut t,
        0,
        &ReadCapacity16 {
            allocation_length: 32,
        }
        .encode(),
        None,
    );
    assert_eq!(r.data_in.len(), 32);
    assert_eq!(
        &r.data_in[..12],
        &[0, 0, 0, 0, 0, 0, 0x03, 0xE7, 0, 0, 2, 0]
    );
    // READ CAPACITY(10) reports FFFFFFFFh when the last LBA does not fit.
    let mut big = ScsiTarget::default();
    let c = LuConfig {
        blocks: 1 << 33,
        ..cfg(0, 1 << 33, 9)
    };
    let store = MemStore::new(512, 1 << 33).expect("store");
    big.add_lu(LogicalUnit::new(c, Box::new(store)).expect("lu"))
        .expect("add");
    let _ = big.execute(&nexus(0, &[0], &all_access), &TestUnitReady.encode(), None);
    let r = big.execute(&nexus(0, &[0], &all_access), &ReadCapacity10.encode(), None);
    assert_eq!(&r.data_in[..4], &[0xFF; 4]);
    let r = big.execute(
        &nexus(0, &[0], &all_access),
        &ReadCapacity16 {
            allocation_length: 8,
        }
        .encode(),
        None,
    );
    assert_eq!(&r.data_in[..], &((1u64 << 33) - 1).to_be_bytes());
    // Obsolete PMI must be zero.
    let r = run(&mut t, 0, &[0x25, 0, 0, 0, 0, 0, 0, 0, 1, 0], None);
    expect_sense(&r, SenseKey::ILLEGAL_REQUEST, asc::INVALID_FIELD_IN_CDB);
}

fn pattern(blocks: usize, seed: u8) -> Bytes {
    Bytes::from(
        (0..blocks * 512)
            .map(|i| i.to_le_bytes()[0] ^ seed)
            .collect::<Vec<u8>>(),
    )
}

// SBC-4 §5.16/§5.17 READ, §5.40/§5.42 WRITE: data path, FUA, limits, LBA range.
#[test]
fn read_write_10_16() {
    let mut t = ready_target();
    let d = pattern(4, 0x5A);
    let w = Write10 {
        lba: 10,
        blocks: 4,
        dpo: false,
        fua: true,
    };
    assert!(run(&mut t, 0, &w.encode(), Some(d.clone())).is_good());
    let r = run(
        &mut t,
        0,
        &Read16 {
            lba: 10,
            blocks: 4,
            dpo: false,
            fua: false,
        }
        .encode(),
        None,
    );
    assert_eq!(r.data_in, d);
    let w = Write16 {
        lba: 999,
        blocks: 1,
        dpo: false,
        fua: false,
    };
    assert!(run(&mut t, 0, &w.encode(), Some(pattern(1, 1))).is_good());
    let r = run(
        &mut t,
        0,
        &Read10 {
            lba: 999,
            blocks: 1,
            dpo: false,
            fua: false,
        }
        .encode(),
        None,
    );
    assert_eq!(r.data_in, pattern(1, 1));
    // LBA past the end.
    let r = run(
        &mut t,
        0,
        &Read10 {
            lba: 999,
            blocks: 2,
            dpo: false,
            fua: false,
        }
        .encode(),
        None,
    );
    expect_sense(&r, SenseKey::ILLEGAL_REQUEST, asc::LBA_OUT_OF_RANGE);
    let before = run(
        &mut t,
        0,
        &Read16 {
            lba: 998,
            blocks: 2,
            dpo: false,
            fua: false,
        }
        .encode(),
        None,
    );
    let w = Write16 {
        lba: 999,
        blocks: 2,
        dpo: false,
        fua: false,
    };
    let r = run(&mut t, 0, &w.encode(), Some(pattern(2, 3)));
    expect_sense(&r, SenseKey::ILLEGAL_REQUEST, asc::LBA_OUT_OF_RANGE);
    let after = run(
        &mut t,
        0,
        &Read16 {
            lba: 998,
            blocks: 2,
            dpo: false,
            fua: false,
        }
        .encode(),
        None,
    );
    assert_eq!(before.data_in, after.data_in);
    // Transfer length over the block limits (64).
    let r = run(
        &mut t,
        0,
        &Read16 {
            lba: 0,
            blocks: 65,
            dpo: false,
            fua: false,
        }
        .encode(),
        None,
    );
    expect_sense(&r, SenseKey::ILLEGAL_REQUEST, asc::INVALID_FIELD_IN_CDB);
    assert_eq!(
        r.sense.and_then(|s| s.field_pointer).map(|f| f.byte),
        Some(10)
    );
    // Short data-out.
    let r = run(
        &mut t,
        0,
        &Write10 {
            lba: 0,
            blocks: 2,
            dpo: false,
            fua: false,
        }
        .encode(),
        Some(pattern(1, 0)),
    );
    expect_sense(&r, SenseKey::ABORTED_COMMAND, asc::DATA_PHASE_ERROR);
}

#[test]
fn read_only_lu_refuses_writes() {
    let mut t = ScsiTarget::default();
    let c = LuConfig {
        read_only: true,
        ..cfg(0, 100, 5)
    };
    t.add_lu(LogicalUnit::new(c, Box::new(MemStore::new(512, 100).expect("s"))).expect("lu"))
        .expect("add");
    let _ = t.execute(&nexus(0, &[0], &all_access), &TestUnitReady.encode(), None);
    let w = Write16 {
        lba: 0,
        blocks: 1,
        dpo: false,
        fua: false,
    };
    let r = t.execute(
        &nexus(0, &[0], &all_access),
        &w.encode(),
        Some(pattern(1, 0)),
    );
    expect_sense(&r, SenseKey::DATA_PROTECT, asc::WRITE_PROTECTED);
}

// SBC-4 §5.50 WRITE SAME(16): fills the range; limit is MAXIMUM WRITE SAME LENGTH.
#[test]
fn write_same_16() {
    let mut t = ready_target();
    let ws = WriteSame16 {
        lba: 100,
        blocks: 100,
        ndob: false,
    };
    assert!(run(&mut t, 0, &ws.encode(), Some(pattern(1, 7))).is_good());
    for lba in [100u64, 150, 199] {
        let r = run(
            &mut t,
            0,
            &Read16 {
                lba,
                blocks: 1,
                dpo: false,
                fua: false,
            }
            .encode(),
            None,
        );
        assert_eq!(r.data_in, pattern(1, 7));
    }
    let r = run(
        &mut t,
        0,
        &Read16 {
            lba: 200,
            blocks: 1,
            dpo: false,
            fua: false,
        }
        .encode(),
        None,
    );
    assert_eq!(r.data_in, Bytes::from(vec![0u8; 512]));
    let ws = WriteSame16 {
        lba: 0,
        blocks: 129,
        ndob: true,
    };
    let r = run(&mut t, 0, &ws.encode(), None);
    expect_sense(&r, SenseKey::ILLEGAL_REQUEST, asc::INVALID_FIELD_IN_CDB);
    let ws = WriteSame16 {
        lba: 990,
        blocks: 20,
        ndob: true,
    };
    let r = run(&mut t, 0, &ws.encode(), None);
    expect_sense(&r, SenseKey::ILLEGAL_REQUEST, asc::LBA_OUT_OF_RANGE);
}

// SBC-4 §5.32/§5.33 SYNCHRONIZE CACHE.
#[test]
fn synchronize_cache() {
    let mut t = ready_target();
    let s = SynchronizeCache10 {
        lba: 0,
        blocks: 0,
        immed: false,
    };
    assert!(run(&mut t, 0, &s.encode(), None).is_good());
    let s = SynchronizeCache16 {
        lba: 1000,
        blocks: 1,
        immed: false,
    };
    let r = run(&mut t, 0, &s.encode(), None);
    expect_sense(&r, SenseKey::ILLEGAL_REQUEST, asc::LBA_OUT_OF_RANGE);
}

// SPC-5 §6.13/§6.14 MODE SENSE, SBC-4 §6.5.5 caching page (WCE), SPC-5 §7.5.8 control.
#[test]
fn mode_sense() {
    let mut t = ready_target();
    let ms = ModeSense6 {
        dbd: false,
        pc: PageControl::Current,
        page_code: 0x3F,
        subpage_code: 0,
        allocation_length: 255,
    };
    let r = run(&mut t, 0, &ms.encode(), None);
    assert!(r.is_good());
    let d = r.data_in;
    assert_eq!(usize::from(d[0]) + 1, d.len());
    assert_eq!(d[3], 8); // block descriptor length
    assert_eq!(&d[4..8], &[0, 0, 0x03, 0xE8]); // 1000 blocks
    assert_eq!(&d[9..12], &[0, 2, 0]); // 512
    assert_eq!(d[12], 0x08);
    assert_eq!(d[14] & 0x04, 0x04); // WCE: write-back (write_through = false)
    assert_eq!(d[32], 0x0A);
    let ms = ModeSense10 {
        llbaa: true,
        dbd: false,
        pc: PageControl::Current,
        page_code: 0x08,
        subpage_code: 0,
        allocation_length: 512,
    };
    let r = run(&mut t, 0, &ms.encode(), None);
    let d = r.data_in;
    assert_eq!(d[4] & 1, 1);
    assert_eq!(&d[6..8], &[0, 16]);
    assert_eq!(d[8 + 16], 0x08);
    let bad = ModeSense6 {
        dbd: true,
        pc: PageControl::Current,
        page_code: 0x1C,
        subpage_code: 0,
        allocation_length: 255,
    };
    let r = run(&mut t, 0, &bad.encode(), None);
    expect_sense(&r, SenseKey::ILLEGAL_REQUEST, asc::INVALID_FIELD_IN_CDB);
    let saved = ModeSense6 {
        pc: PageControl::Saved,
        ..bad
    };
    let r = run(&mut t, 0, &saved.encode(), None);
    expect_sense(
        &r,
        SenseKey::ILLEGAL_REQUEST,
        asc::SAVING_PARAMETERS_NOT_SUPPORTED,
    );
}

#[test]
fn request_sense_no_sense() {
    let mut t = ready_target();
    let r = run(
        &mut t,
        0,
        &RequestSense {
            allocation_length: 252,
        }
        .encode(),
        None,
    );
    assert_eq!(r.data_in.len(), 18);
    assert_eq!(
        Sense::decode(&r.data_in).map(|s| s.key),
        Ok(SenseKey::NO_SENSE)
    );
}

fn naa(n: u64) -> NaaId {
    NaaId::Short(Wwn::naa5(0x001B32, n))
}

fn b2b_list(src: NaaId, dst: NaaId, blocks: u16, src_lba: u64, dst_lba: u64) -> ParameterList {
    let block = DeviceParams::Block {
        pad: false,
        block_bytes: 512,
    };
    ParameterList {
        list_id: 3,
        str_bit: false,
        list_id_usage: 0,
        priority: 0,
        targets: vec![
            TargetDescriptor {
                naa: src,
                relative_initiator_port: 0,
                params: block,
            },
            TargetDescriptor {
                naa: dst,
                relative_initiator_port: 0,
                params: block,
            },
        ],
        segments: vec![Segment::BlockToBlock {
            cat: false,
            dc: false,
            src: 0,
            dst: 1,
            blocks,
            src_lba,
            dst_lba,
        }],
        inline_data: Bytes::new(),
    }
}

fn xcopy(t: &mut ScsiTarget, may: &dyn Fn(NaaId) -> bool, list: &ParameterList) -> ScsiResult {
    let data = list.encode();
    let len = u32::try_from(data.len()).expect("len");
    t.execute(
        &nexus(0, &[0, 1], may),
        &ExtendedCopy {
            parameter_list_length: len,
        }
        .encode(),
        Some(data),
    )
}

// SPC-4 §6.3 EXTENDED COPY + §6.18 RECEIVE COPY RESULTS, local block→block.
#[test]
fn extended_copy_local_and_results() {
    let mut t = ready_target();
    let d = pattern(8, 0x33);
    assert!(
        run(
            &mut t,
            0,
            &Write16 {
                lba: 20,
                blocks: 8,
                dpo: false,
                fua: false
            }
            .encode(),
            Some(d.clone())
        )
        .is_good()
    );
    let r = xcopy(&mut t, &all_access, &b2b_list(naa(1), naa(2), 8, 20, 500));
    assert!(r.is_good());
    let job = r.copy_job.expect("job");
    assert_eq!(job.ops.len(), 1);
    let rcr = ReceiveCopyResults {
        service_action: cdb::RcrServiceAction::CopyStatus,
        list_id: 3,
        allocation_length: 64,
    };
    let st = run(&mut t, 0, &rcr.encode(), None);
    assert_eq!(
        CopyStatus::decode(&st.data_in).map(|s| s.status),
        Ok(CopyManagerStatus::InProgress)
    );
    let out = t.run_local_copy(&job);
    assert_eq!(
        (out.segments_processed, out.bytes, out.error),
        (1, 4096, None)
    );
    assert!(t.complete_copy(&job, &out).is_good());
    let r = run(
        &mut t,
        1,
        &Read16 {
            lba: 500,
            blocks: 8,
            dpo: false,
            fua: false,
        }
        .encode(),
        None,
    );
    assert_eq!(r.data_in, d);
    let st = CopyStatus::decode(&run(&mut t, 0, &rcr.encode(), None).data_in).expect("status");
    assert_eq!(
        (st.status, st.segments_processed, st.transfer_bytes()),
        (CopyManagerStatus::CompletedGood, 1, 4096)
    );
    // Unknown list identifier.
    let rcr9 = ReceiveCopyResults { list_id: 9, ..rcr };
    expect_sense(
        &run(&mut t, 0, &rcr9.encode(), None),
        SenseKey::ILLEGAL_REQUEST,
        asc::INVALID_FIELD_IN_CDB,
    );
    // Operating parameters.
    let op = ReceiveCopyResults {
        service_action: cdb::RcrServiceAction::OperatingParameters,
        list_id: 0,
        allocation_length: 256,
    };
    let r = run(&mut t, 0, &op.encode(), None);
    assert_eq!(
        OperatingParameters::decode(&r.data_in),
        Ok(OperatingParameters::default())
    );
}

// CVE-2020-28374: a copy naming an LU the initiator may not address is refused before
// any data moves, and looks like an unreachable LU.
#[test]
fn extended_copy_respects_access() {
    let mut t = ready_target();
    assert!(
        run(
            &mut t,
            1,
            &Write16 {
                lba: 0,
                blocks: 1,
                dpo: false,
                fua: false
            }
            .encode(),
            Some(pattern(1, 9))
        )
        .is_good()
    );
    let only_lu0 = |n: NaaId| n == naa(1);
    let before = run(
        &mut t,
        1,
        &Read16 {
            lba: 0,
            blocks: 1,
            dpo: false,
            fua: false,
        }
        .encode(),
        None,
    )
    .data_in;
    let r = xcopy(&mut t, &only_lu0, &b2b_list(naa(1), naa(2), 1, 0, 0));
    expect_sense(
        &r,
        SenseKey::COPY_ABORTED,
        asc::COPY_TARGET_DEVICE_NOT_REACHABLE,
    );
    assert!(r.copy_job.is_none());
    let after = run(
        &mut t,
        1,
        &Read16 {
            lba: 0,
            blocks: 1,
            dpo: false,
            fua: false,
        }
        .encode(),
        None,
    )
    .data_in;
    assert_eq!(before, after);
    // A nonexistent LU: same answer at execution time.
    let r = xcopy(&mut t, &all_access, &b2b_list(naa(1), naa(77), 1, 0, 0));
    let job = r.copy_job.expect("remote dst is the caller's business");
    let out = t.run_local_copy(&job);
    assert_eq!(
        out.error.map(|s| s.asc_pair()),
        Some(asc::COPY_TARGET_DEVICE_NOT_REACHABLE)
    );
    let r = t.complete_copy(&job, &out);
    expect_sense(
        &r,
        SenseKey::COPY_ABORTED,
        asc::COPY_TARGET_DEVICE_NOT_REACHABLE,
    );
}

#[test]
fn extended_copy_rejections_change_nothing() {
    let mut t = ready_target();
    let snapshot = |t: &mut ScsiTarget| {
        run(
            t,
            1,
            &Read16 {
                lba: 990,
                blocks: 10,
                dpo: false,
                fua: false,
            }
            .encode(),
            None,
        )
        .data_in
    };
    let before = snapshot(&mut t);
    // Range past the end of a local LU.
    let r = xcopy(&mut t, &all_access, &b2b_list(naa(1), naa(2), 20, 0, 990));
    expect_sense(&r, SenseKey::ILLEGAL_REQUEST, asc::LBA_OUT_OF_RANGE);
    // Segment index out of range.
    let mut l = b2b_list(naa(1), naa(2), 1, 0, 995);
    l.segments = vec![Segment::BlockToBlock {
        cat: false,
        dc: false,
        src: 0,
        dst: 5,
        blocks: 1,
        src_lba: 0,
        dst_lba: 995,
    }];
    let r = xcopy(&mut t, &all_access, &l);
    expect_sense(
        &r,
        SenseKey::ILLEGAL_REQUEST,
        asc::INVALID_FIELD_IN_PARAMETER_LIST,
    );
    // Wrong descriptor type.
    let mut raw = b2b_list(naa(1), naa(2), 1, 0, 995).encode().to_vec();
    raw[16] = 0xE5;
    let len = u32::try_from(raw.len()).expect("len");
    let r = run(
        &mut t,
        0,
        &ExtendedCopy {
            parameter_list_length: len,
        }
        .encode(),
        Some(Bytes::from(raw)),
    );
    expect_sense(
        &r,
        SenseKey::ILLEGAL_REQUEST,
        asc::UNSUPPORTED_TARGET_DESCRIPTOR_TYPE_CODE,
    );
    // Parameter list shorter than the CDB says.
    let r = run(
        &mut t,
        0,
        &ExtendedCopy {
            parameter_list_length: 200,
        }
        .encode(),
        Some(Bytes::from_static(&[0; 16])),
    );
    expect_sense(
        &r,
        SenseKey::ILLEGAL_REQUEST,
        asc::PARAMETER_LIST_LENGTH_ERROR,
    );
    assert_eq!(snapshot(&mut t), before);
    // An LU without 3PC does not know the command.
    let mut t2 = ScsiTarget::default();
    let c = LuConfig {
        third_party_copy: false,
        ..cfg(0, 100, 1)
    };
    t2.add_lu(LogicalUnit::new(c, Box::new(MemStore::new(512, 100).expect("s"))).expect("lu"))
        .expect("add");
    let _ = t2.execute(&nexus(0, &[0], &all_access), &TestUnitReady.encode(), None);
    let r = t2.execute(
        &nexus(0, &[0], &all_access),
        &ExtendedCopy {
            parameter_list_length: 0,
        }
        .encode(),
        None,
    );
    expect_sense(
        &r,
        SenseKey::ILLEGAL_REQUEST,
        asc::INVALID_COMMAND_OPERATION_CODE,
    );
}

#[test]
fn config_validation() {
    assert!(LuConfig::default().validate().is_ok());
    assert!(
        LuConfig {
            block_size_bytes: 520,
            ..LuConfig::default()
        }
        .validate()
        .is_err()
    );
    assert!(
        LuConfig {
            naa: 0x1000_0000_0000_0001,
            ..LuConfig::default()
        }
        .validate()
        .is_err()
    );
    assert!(
        LuConfig {
            serial: String::new(),
            ..LuConfig::default()
        }
        .validate()
        .is_err()
    );
    let c = LuConfig::default();
    assert!(matches!(
        LogicalUnit::new(c, Box::new(MemStore::new(512, 10).expect("s"))),
        Err(TargetError::GeometryMismatch { .. })
    ));
    let json = serde_json::to_string(&LuConfig::default()).expect("json");
    assert_eq!(
        serde_json::from_str::<LuConfig>(&json).expect("back"),
        LuConfig::default()
    );
    assert!(serde_json::from_str::<LuConfig>(r#"{"lun":0,"bogus":1}"#).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_cdbs_never_panic_execute(cdb in proptest::collection::vec(any::<u8>(), 0..24),
                                         data in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..2048)),
                                         lun in 0u16..3) {
        let mut t = target();
        let _ = t.execute(&nexus(lun, &[0, 1], &all_access), &cdb, data.clone().map(Bytes::from));
        let _ = t.execute(&nexus(lun, &[0, 1], &all_access), &cdb, data.map(Bytes::from));
    }

    // Data integrity: random WRITE/READ(10/16) through execute equal a Vec<u8> model.
    #[test]
    fn data_integrity_matches_model(ops in proptest::collection::vec((any::<bool>(), any::<bool>(), 0u64..1000, 0u32..70, any::<u8>()), 1..40)) {
        let mut t = ready_target();
        let mut model = vec![0u8; 1000 * 512];
        for (is_write, sixteen, lba, blocks, seed) in ops {
            let ok = lba + u64::from(blocks) <= 1000 && blocks <= 64;
            let lba32 = u32::try_from(lba).unwrap_or(0);
            let b16 = u16::try_from(blocks).unwrap_or(0);
            let (s, e) = (usize::try_from(lba).unwrap_or(0) * 512, (usize::try_from(lba).unwrap_or(0) + blocks as usize) * 512);
            if is_write {
                let data = pattern(blocks as usize, seed);
                let cdb = if sixteen { Write16 { lba, blocks, dpo: false, fua: seed & 1 == 1 }.encode() } else { Write10 { lba: lba32, blocks: b16, dpo: false, fua: false }.encode() };
                let r = run(&mut t, 0, &cdb, Some(data.clone()));
                prop_assert_eq!(r.is_good(), ok);
                if ok { model[s..e].copy_from_slice(&data); }
            } else {
                let cdb = if sixteen { Read16 { lba, blocks, dpo: false, fua: false }.encode() } else { Read10 { lba: lba32, blocks: b16, dpo: false, fua: false }.encode() };
                let r = run(&mut t, 0, &cdb, None);
                prop_assert_eq!(r.is_good(), ok);
                if ok { prop_assert_eq!(&r.data_in[..], &model[s..e]); }
            }
        }
    }
}

// LUN masking is enforced before anything executes: a WRITE from an initiator the LU
// is masked from gets LOGICAL UNIT NOT SUPPORTED (25h/00h) and the data stays as it was.
#[test]
fn write_to_a_masked_lu_never_changes_data() {
    let mut t = ready_target();
    let before = run(
        &mut t,
        1,
        &Read16 {
            lba: 0,
            blocks: 8,
            dpo: false,
            fua: false,
        }
        .encode(),
        None,
    )
    .data_in;
    let w = Write16 {
        lba: 0,
        blocks: 8,
        dpo: false,
        fua: false,
    }
    .encode();
    let masked = t.execute(&nexus(1, &[0], &all_access), &w, Some(pattern(8, 9)));
    expect_sense(&masked, SenseKey::ILLEGAL_REQUEST, asc::LU_NOT_SUPPORTED);
    let after = run(
        &mut t,
        1,
        &Read16 {
            lba: 0,
            blocks: 8,
            dpo: false,
            fua: false,
        }
        .encode(),
        None,
    )
    .data_in;
    assert_eq!(before, after);
    // The same WRITE from an initiator that may see the LU does land (the check can fail).
    let ok = run(&mut t, 1, &w, Some(pattern(8, 9)));
    assert_eq!(ok.status, Status::GOOD);
    let landed = run(
        &mut t,
        1,
        &Read16 {
            lba: 0,
            blocks: 8,
            dpo: false,
            fua: false,
        }
        .encode(),
        None,
    )
    .data_in;
    assert_ne!(before, landed);
}
