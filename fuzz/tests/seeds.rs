//! Seed corpus: well-formed inputs built with fcsim's own encoders, so that the fuzzer
//! starts past the first length and code checks. Writes `corpus/<target>/seed-*`.
//!
//! `cargo test --test seeds -- --ignored` in `fuzz/` (the normal test run only checks
//! that every seed is accepted by its target body without a panic).

use std::path::Path;

use bytes::Bytes;
use fcsim_devices::scsi::cdb::{
    Command, ExtendedCopy, Inquiry, ModeSense6, ModeSense10, PageControl, RcrServiceAction,
    Read10, Read16, ReadCapacity10, ReadCapacity16, ReceiveCopyResults, ReportLuns,
    RequestSense, SynchronizeCache10, SynchronizeCache16, TestUnitReady, Write10, Write16,
    WriteSame16,
};
use fcsim_devices::scsi::inquiry::NaaId;
use fcsim_devices::scsi::xcopy::{
    DeviceParams, OperatingParameters, ParameterList, Segment, TargetDescriptor,
};
use fcsim_fabric::fspf::{Lsr, LsrLink};
use fcsim_fabric::frame::{
    AccPayload, Els, FcHeader, FcpCmnd, Frame, Iu, NsRequest, ServiceParams, ftype, rctl,
};
use fcsim_fabric::swils::SwIls;
use fcsim_fabric::{DomainId, FcId, Wwn, Wwnn, Wwpn};

/// Must match `LU_NAA` in src/lib.rs so that seeded EXTENDED COPYs reach the LU.
const LU_NAA: u64 = 0x5001_B320_0000_0001;

fn frames() -> Vec<Bytes> {
    let h = FcHeader::request(0, 0, FcId::new(0xFF_FFFE), FcId::new(0x01_0100), 7);
    let sp = ServiceParams::plogi(Wwpn(Wwn(0x1000_0000_0000_0001)), Wwnn(Wwn(0x2000_0000_0000_0001)));
    let mut out = vec![
        Frame::els(h, &Els::Flogi(sp)),
        Frame::els(h, &Els::Plogi(sp)),
        Frame::els(h, &Els::Acc(AccPayload::Login(sp))),
        Frame::els(h, &Els::Acc(AccPayload::Plain)),
        Frame::ct(h, &NsRequest::GidFt { domain_scope: 0, area_scope: 0, fc4_type: 8 }.to_ct()),
        Frame::ct(h, &NsRequest::GpnId { port_id: FcId::new(0x01_0200) }.to_ct()),
        Frame::from_iu(
            h,
            &Iu::FcpCmnd(FcpCmnd::new([0; 8], &Read10 { lba: 0, blocks: 1, dpo: false, fua: false }.encode(), true, false, 512)),
        ),
        Frame::fcp_data(h, 0, Bytes::from_static(&[0xAB; 64])),
        Frame::new(FcHeader { r_ctl: rctl::UNSOLICITED_CONTROL, fc_type: ftype::SW_ILS, ..h }, swils()[0].clone()),
    ];
    out.push(Frame::from_iu(h, &Iu::Abts));
    out.iter().map(Frame::encode).collect()
}

fn swils() -> Vec<Bytes> {
    let d = |n| DomainId::new(n).unwrap();
    vec![
        SwIls::Hello {
            origin: d(1),
            recipient: Some(d(2)),
            origin_port: 3,
            switch_wwn: Wwnn(Wwn(0x1000_0000_0000_0042)),
            switch_name: "sw1".into(),
        }
        .encode(),
        SwIls::Lsu {
            origin: d(1),
            lsrs: vec![Lsr {
                domain: d(1),
                incarnation: 9,
                links: vec![LsrLink { neighbor: d(2), out_port: 1, cost: 500 }],
            }],
        }
        .encode(),
    ]
}

fn cdbs() -> Vec<Command> {
    vec![
        Command::TestUnitReady(TestUnitReady),
        Command::Inquiry(Inquiry { evpd: false, page_code: 0, allocation_length: 96 }),
        Command::Inquiry(Inquiry { evpd: true, page_code: 0x83, allocation_length: 255 }),
        Command::ReportLuns(ReportLuns { select_report: 0, allocation_length: 64 }),
        Command::RequestSense(RequestSense { allocation_length: 18 }),
        Command::ModeSense6(ModeSense6 { dbd: false, pc: PageControl::Current, page_code: 0x3F, subpage_code: 0, allocation_length: 255 }),
        Command::ModeSense10(ModeSense10 { llbaa: true, dbd: false, pc: PageControl::Current, page_code: 0x08, subpage_code: 0, allocation_length: 255 }),
        Command::ReadCapacity10(ReadCapacity10),
        Command::ReadCapacity16(ReadCapacity16 { allocation_length: 32 }),
        Command::Read10(Read10 { lba: 1, blocks: 2, dpo: false, fua: false }),
        Command::Read16(Read16 { lba: 1, blocks: 2, dpo: false, fua: false }),
        Command::Write10(Write10 { lba: 1, blocks: 1, dpo: false, fua: true }),
        Command::Write16(Write16 { lba: 1, blocks: 1, dpo: false, fua: false }),
        Command::WriteSame16(WriteSame16 { lba: 0, blocks: 4, ndob: false }),
        Command::SynchronizeCache10(SynchronizeCache10 { lba: 0, blocks: 0, immed: false }),
        Command::SynchronizeCache16(SynchronizeCache16 { lba: 0, blocks: 0, immed: false }),
        Command::ReceiveCopyResults(ReceiveCopyResults { service_action: RcrServiceAction::OperatingParameters, list_id: 0, allocation_length: 255 }),
        Command::ReceiveCopyResults(ReceiveCopyResults { service_action: RcrServiceAction::CopyStatus, list_id: 1, allocation_length: 255 }),
    ]
}

fn xcopy_list() -> Bytes {
    let disk = |naa| TargetDescriptor {
        naa: NaaId::Short(Wwn(naa)),
        relative_initiator_port: 0,
        params: DeviceParams::Block { pad: false, block_bytes: 512 },
    };
    ParameterList {
        list_id: 1,
        str_bit: false,
        list_id_usage: 0,
        priority: 0,
        targets: vec![
            disk(LU_NAA),
            TargetDescriptor {
                naa: NaaId::Short(Wwn(0x5001_B320_0000_0002)),
                relative_initiator_port: 0,
                params: DeviceParams::Stream { pad: false, fixed: false, block_bytes: 0 },
            },
        ],
        segments: vec![
            Segment::BlockToBlock { cat: false, dc: false, src: 0, dst: 0, blocks: 4, src_lba: 0, dst_lba: 8 },
            Segment::BlockToStream { cat: false, src: 0, dst: 1, stream_transfer_length: 512, blocks: 2, lba: 0 },
        ],
        inline_data: Bytes::new(),
    }
    .encode()
}

/// (target, input) pairs.
fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let mut v: Vec<(&str, Vec<u8>)> = Vec::new();
    v.extend(frames().into_iter().map(|b| ("frame_decode", b.to_vec())));
    v.extend(swils().into_iter().map(|b| ("swils_decode", b.to_vec())));
    for c in cdbs() {
        let cdb = c.encode();
        v.push(("cdb_parse", cdb.to_vec()));
        // Clear the power-on UA, then the command with a block of data-out.
        let mut e = vec![0x40, u8::try_from(cdb.len()).unwrap()];
        e.extend_from_slice(&cdb);
        e.extend_from_slice(&[0x5A; 512]);
        v.push(("scsi_execute", e));
    }
    let list = xcopy_list();
    v.push(("xcopy_parse", [&[0u8][..], &list].concat()));
    v.push(("xcopy_parse", [&[1u8][..], &list].concat()));
    v.push(("xcopy_parse", [&[2u8][..], &OperatingParameters::default().encode(), &list].concat()));
    let xcopy = ExtendedCopy { parameter_list_length: u32::try_from(list.len()).unwrap() }.encode();
    let mut e = vec![0x40, 16];
    e.extend_from_slice(&xcopy);
    e.extend_from_slice(&list);
    v.push(("scsi_execute", e));
    for cdb in [
        &[0x00, 0, 0, 0, 0, 0][..],
        &[0x08, 0x01, 0, 0, 1, 0],
        &[0x0A, 0x00, 0, 2, 0, 0],
        &[0x11, 0x01, 0xFF, 0xFF, 0xFE, 0],
        &[0x1A, 0x08, 0x3F, 0, 0xFF, 0],
        &[0x34, 0x00, 0, 0, 0, 0, 0, 0, 0x14, 0],
    ] {
        v.push(("tape_cdb_parse", cdb.to_vec()));
    }
    v
}

fn body(target: &str) -> fn(&[u8]) {
    match target {
        "frame_decode" => fcsim_fuzz::frame_decode,
        "swils_decode" => fcsim_fuzz::swils_decode,
        "cdb_parse" => fcsim_fuzz::cdb_parse,
        "xcopy_parse" => fcsim_fuzz::xcopy_parse,
        "tape_cdb_parse" => fcsim_fuzz::tape_cdb_parse,
        "scsi_execute" => fcsim_fuzz::scsi_execute,
        other => panic!("unknown target {other}"),
    }
}

#[test]
fn seeds_run_clean() {
    for (target, input) in seeds() {
        body(target)(&input);
    }
    // The seeds are well formed: each parses.
    assert!(ParameterList::parse(&xcopy_list(), &OperatingParameters::default()).is_ok());
}

#[test]
#[ignore = "writes corpus/<target>/seed-* for cargo fuzz"]
fn write_seed_corpus() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    for (i, (target, input)) in seeds().into_iter().enumerate() {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("seed-{i:03}")), input).unwrap();
    }
}
