//! Tape drive tests, citing SSC-4 / SPC-4 clauses.

use super::*;
use proptest::prelude::*;

fn drive() -> TapeDrive {
    TapeDrive::new(TapeConfig::default()).unwrap()
}

fn drive_with_capacity(cap: u64, ew: u64) -> TapeDrive {
    TapeDrive::new(TapeConfig {
        capacity_bytes: Some(cap),
        early_warning_bytes: Some(ew),
        ..TapeConfig::default()
    })
    .unwrap()
}

fn len3(n: u32) -> [u8; 3] {
    let b = n.to_be_bytes();
    [b[1], b[2], b[3]]
}

fn write(d: &mut TapeDrive, fixed: bool, len: u32, data: &[u8]) -> TapeResult {
    let l = len3(len);
    d.execute(
        &[0x0A, u8::from(fixed), l[0], l[1], l[2], 0],
        Some(Bytes::copy_from_slice(data)),
    )
}

fn read(d: &mut TapeDrive, fixed: bool, sili: bool, len: u32) -> TapeResult {
    let l = len3(len);
    let b1 = u8::from(fixed) | (u8::from(sili) << 1);
    d.execute(&[0x08, b1, l[0], l[1], l[2], 0], None)
}

fn filemarks(d: &mut TapeDrive, n: u32) -> TapeResult {
    let l = len3(n);
    d.execute(&[0x10, 0, l[0], l[1], l[2], 0], None)
}

fn rewind(d: &mut TapeDrive) -> TapeResult {
    d.execute(&[0x01, 0, 0, 0, 0, 0], None)
}

fn space(d: &mut TapeDrive, code: u8, count: i32) -> TapeResult {
    let c = count.to_be_bytes();
    d.execute(&[0x11, code, c[1], c[2], c[3], 0], None)
}

fn set_block_length(d: &mut TapeDrive, bl: u32) -> TapeResult {
    let l = len3(bl);
    let params = [0, 0, 0, 8, 0, 0, 0, 0, 0, l[0], l[1], l[2]];
    d.execute(
        &[0x15, 0x10, 0, 0, 12, 0],
        Some(Bytes::copy_from_slice(&params)),
    )
}

fn read_position(d: &mut TapeDrive) -> (u8, u32, u32) {
    let r = d.execute(&[0x34, 0, 0, 0, 0, 0, 0, 0, 0, 0], None);
    assert!(r.is_good());
    assert_eq!(r.data_in.len(), 20);
    let p = &r.data_in;
    (
        p[0],
        u32::from_be_bytes([p[4], p[5], p[6], p[7]]),
        u32::from_be_bytes([p[8], p[9], p[10], p[11]]),
    )
}

fn sense(r: &TapeResult) -> TapeSense {
    assert_eq!(r.status, CHECK_CONDITION, "expected CHECK CONDITION: {r:?}");
    r.sense.expect("CHECK CONDITION carries sense")
}

fn pattern(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| u8::try_from(i % 251).unwrap().wrapping_mul(31) ^ seed)
        .collect()
}

// ---- SSC-4 §8.8 WRITE(6) / §8.4 READ(6) round trips ----

#[test]
fn variable_mode_round_trip_ssc4_8_4_8_8() {
    let mut d = drive();
    let a = pattern(100, 1);
    let b = pattern(7, 2);
    assert!(write(&mut d, false, 100, &a).is_good());
    assert!(write(&mut d, false, 7, &b).is_good());
    assert_eq!(d.records().count(), 2);
    assert!(rewind(&mut d).is_good());
    let r = read(&mut d, false, false, 100);
    assert!(r.is_good());
    assert_eq!(&r.data_in[..], &a[..]);
    let r = read(&mut d, false, false, 7);
    assert_eq!(&r.data_in[..], &b[..]);
    assert_eq!(d.contents(), Bytes::from([a, b].concat()));
}

#[test]
fn fixed_mode_round_trip_ssc4_8_4_8_8() {
    let mut d = drive();
    assert!(set_block_length(&mut d, 512).is_good());
    assert_eq!(d.block_length(), 512);
    let data = pattern(512 * 4, 9);
    assert!(write(&mut d, true, 4, &data).is_good());
    assert_eq!(
        d.records().count(),
        4,
        "each fixed block is one logical block"
    );
    assert_eq!(d.bytes_written(), 2048);
    rewind(&mut d);
    let r = read(&mut d, true, false, 3);
    assert!(r.is_good());
    assert_eq!(&r.data_in[..], &data[..1536]);
    let r = read(&mut d, true, false, 1);
    assert_eq!(&r.data_in[..], &data[1536..]);
}

#[test]
fn fixed_bit_with_variable_mode_is_invalid_field_ssc4_8_8() {
    let mut d = drive();
    let s = sense(&write(&mut d, true, 1, &[0; 512]));
    assert_eq!(s.key, SenseKey::IllegalRequest);
    assert_eq!(s.asc_ascq(), asc::INVALID_FIELD_IN_CDB);
    let s = sense(&read(&mut d, true, false, 1));
    assert_eq!(s.asc_ascq(), asc::INVALID_FIELD_IN_CDB);
}

#[test]
fn variable_read_short_record_sets_ili_with_positive_residue_ssc4_8_4() {
    let mut d = drive();
    write(&mut d, false, 10, &pattern(10, 0));
    write(&mut d, false, 10, &pattern(10, 1));
    rewind(&mut d);
    let r = read(&mut d, false, false, 64);
    let s = sense(&r);
    assert_eq!(s.key, SenseKey::NoSense);
    assert!(s.ili);
    assert_eq!(s.information, Some(54));
    assert_eq!(r.data_in.len(), 10);
    // SILI suppresses the short-record indication.
    let r = read(&mut d, false, true, 64);
    assert!(r.is_good());
    assert_eq!(r.data_in.len(), 10);
}

#[test]
fn variable_read_long_record_sets_ili_with_negative_residue_ssc4_8_4() {
    let mut d = drive();
    write(&mut d, false, 10, &pattern(10, 0));
    rewind(&mut d);
    let r = read(&mut d, false, true, 4);
    let s = sense(&r);
    assert!(s.ili);
    assert_eq!(s.information, Some(-6));
    assert_eq!(r.data_in.len(), 4);
    assert_eq!(d.position(), 1, "positioned after the overlength block");
}

// ---- filemarks on READ (SSC-4 §8.4) ----

#[test]
fn read_of_filemark_is_no_sense_with_filemark_bit_ssc4_8_4() {
    let mut d = drive();
    write(&mut d, false, 5, b"hello");
    assert!(filemarks(&mut d, 1).is_good());
    write(&mut d, false, 5, b"world");
    rewind(&mut d);
    assert_eq!(&read(&mut d, false, false, 5).data_in[..], b"hello");
    let s = sense(&read(&mut d, false, false, 5));
    assert_eq!(s.key, SenseKey::NoSense);
    assert!(s.filemark);
    assert_eq!(s.asc_ascq(), asc::FILEMARK_DETECTED);
    assert_eq!(s.information, Some(5));
    assert_eq!(d.position(), 2, "positioned after the filemark");
    assert_eq!(&read(&mut d, false, false, 5).data_in[..], b"world");
    let s = sense(&read(&mut d, false, false, 5));
    assert_eq!(s.key, SenseKey::BlankCheck);
    assert_eq!(s.asc_ascq(), asc::END_OF_DATA);
    assert_eq!(s.information, Some(5));
}

#[test]
fn fixed_read_stops_at_filemark_with_residue_ssc4_8_4() {
    let mut d = drive();
    set_block_length(&mut d, 4);
    write(&mut d, true, 2, &pattern(8, 3));
    filemarks(&mut d, 1);
    rewind(&mut d);
    let r = read(&mut d, true, false, 5);
    let s = sense(&r);
    assert!(s.filemark);
    assert_eq!(s.information, Some(3));
    assert_eq!(&r.data_in[..], &pattern(8, 3)[..]);
}

// ---- READ POSITION (SSC-4 §7.7), REWIND (SSC-4 §7.10) ----

#[test]
fn read_position_tracks_writes_and_rewind_ssc4_7_7() {
    let mut d = drive();
    let (flags, first, last) = read_position(&mut d);
    assert_eq!(flags & 0x80, 0x80, "BOP at the start");
    assert_eq!((first, last), (0, 0));
    write(&mut d, false, 3, b"abc");
    write(&mut d, false, 3, b"def");
    filemarks(&mut d, 1);
    let (flags, first, last) = read_position(&mut d);
    assert_eq!(flags & 0x80, 0);
    assert_eq!((first, last), (3, 3));
    assert!(rewind(&mut d).is_good());
    let (flags, first, _) = read_position(&mut d);
    assert_eq!(flags & 0x80, 0x80);
    assert_eq!(first, 0);
    assert_eq!(&read(&mut d, false, false, 3).data_in[..], b"abc");
    assert_eq!(read_position(&mut d).1, 1);
}

#[test]
fn write_in_the_middle_makes_new_end_of_data_ssc4_8_8() {
    let mut d = drive();
    for rec in [b"aa", b"bb", b"cc"] {
        write(&mut d, false, 2, rec);
    }
    rewind(&mut d);
    assert!(space(&mut d, 0, 1).is_good());
    write(&mut d, false, 2, b"XX");
    assert_eq!(d.contents(), Bytes::from_static(b"aaXX"));
    assert_eq!(d.records().count(), 2);
}

// ---- SPACE(6) (SSC-4 §8.6) ----

#[test]
fn space_blocks_and_filemarks_ssc4_8_6() {
    let mut d = drive();
    write(&mut d, false, 1, b"a");
    write(&mut d, false, 1, b"b");
    filemarks(&mut d, 1);
    write(&mut d, false, 1, b"c");
    filemarks(&mut d, 1);
    rewind(&mut d);
    // Forward over blocks into a filemark: residue 1, positioned after it.
    let s = sense(&space(&mut d, 0, 3));
    assert!(s.filemark);
    assert_eq!(s.information, Some(1));
    assert_eq!(d.position(), 3);
    // Backward over one filemark: positioned on its BOP side.
    assert!(space(&mut d, 1, -1).is_good());
    assert_eq!(d.position(), 2);
    // Backward over blocks to BOP: EOM with 00/04.
    let s = sense(&space(&mut d, 0, -5));
    assert!(s.eom);
    assert_eq!(s.asc_ascq(), asc::BEGINNING_OF_PARTITION_MEDIUM);
    assert_eq!(s.information, Some(3));
    assert_eq!(d.position(), 0);
    // Forward two filemarks: after the second.
    assert!(space(&mut d, 1, 2).is_good());
    assert_eq!(d.position(), 5);
    // Past end-of-data.
    let s = sense(&space(&mut d, 1, 1));
    assert_eq!(s.key, SenseKey::BlankCheck);
    assert_eq!(s.asc_ascq(), asc::END_OF_DATA);
    rewind(&mut d);
    assert!(space(&mut d, 3, 0).is_good());
    assert_eq!(d.position(), 5);
}

// ---- end of medium (SSC-4 §4.2 early warning, §8.8 WRITE(6)) ----

#[test]
fn write_into_early_warning_reports_eom_and_writes_data_ssc4_8_8() {
    let mut d = drive_with_capacity(1000, 100);
    assert!(
        write(&mut d, false, 900, &pattern(900, 0)).is_good(),
        "ends at the EW point"
    );
    let r = write(&mut d, false, 10, &pattern(10, 1));
    let s = sense(&r);
    assert_eq!(s.key, SenseKey::NoSense);
    assert!(s.eom);
    assert_eq!(s.asc_ascq(), asc::END_OF_PARTITION_MEDIUM);
    assert_eq!(s.information, Some(0));
    assert_eq!(d.bytes_written(), 910, "the data IS written");
    // Filemarks in the zone report EOM too (SSC-4 §8.9).
    let s = sense(&filemarks(&mut d, 1));
    assert!(s.eom);
    assert_eq!(d.records().count(), 3);
}

#[test]
fn default_early_warning_is_one_percent() {
    let mut d = TapeDrive::new(TapeConfig {
        capacity_bytes: Some(10_000),
        ..TapeConfig::default()
    })
    .unwrap();
    assert!(write(&mut d, false, 9_900, &pattern(9_900, 0)).is_good());
    assert!(sense(&write(&mut d, false, 1, b"x")).eom);
}

#[test]
fn variable_write_past_physical_end_is_volume_overflow_nothing_written_ssc4_8_8() {
    let mut d = drive_with_capacity(1000, 100);
    write(&mut d, false, 950, &pattern(950, 0));
    let s = sense(&write(&mut d, false, 80, &pattern(80, 1)));
    assert_eq!(s.key, SenseKey::VolumeOverflow);
    assert!(s.eom);
    assert_eq!(s.asc_ascq(), asc::END_OF_PARTITION_MEDIUM);
    assert_eq!(s.information, Some(80));
    assert_eq!(d.bytes_written(), 950);
    assert_eq!(d.position(), 1);
    // A smaller record still fits (and is in early warning).
    assert!(sense(&write(&mut d, false, 50, &pattern(50, 2))).eom);
    assert_eq!(d.bytes_written(), 1000);
    let (flags, _, _) = read_position(&mut d);
    assert_eq!(flags & 0x40, 0x40, "EOP when full at end-of-data");
}

#[test]
fn fixed_write_past_physical_end_writes_whole_blocks_that_fit_ssc4_8_8() {
    let mut d = drive_with_capacity(1000, 100);
    set_block_length(&mut d, 100);
    write(&mut d, true, 8, &pattern(800, 0));
    let s = sense(&write(&mut d, true, 5, &pattern(500, 1)));
    assert_eq!(s.key, SenseKey::VolumeOverflow);
    assert!(s.eom);
    assert_eq!(s.information, Some(3), "3 of 5 blocks not written");
    assert_eq!(d.bytes_written(), 1000);
    assert_eq!(d.records().count(), 10);
}

// ---- injected write error ----

#[test]
fn injected_write_error_leaves_medium_ending_at_error_point() {
    let mut d = drive();
    write(&mut d, false, 100, &pattern(100, 0));
    d.inject_write_error(250);
    assert!(write(&mut d, false, 200, &pattern(200, 1)).is_good());
    let s = sense(&write(&mut d, false, 200, &pattern(200, 2)));
    assert_eq!(s.key, SenseKey::MediumError);
    assert_eq!(s.asc_ascq(), asc::WRITE_ERROR);
    assert_eq!(s.information, Some(150));
    assert_eq!(d.bytes_written(), 350, "ends exactly at the error point");
    let expected = [pattern(100, 0), pattern(200, 1), pattern(50, 2)].concat();
    assert_eq!(d.contents(), Bytes::from(expected));
    // One-shot: the next write succeeds.
    assert!(write(&mut d, false, 10, &pattern(10, 3)).is_good());
}

#[test]
fn injected_write_error_in_fixed_mode_counts_blocks() {
    let mut d = drive();
    set_block_length(&mut d, 10);
    d.inject_write_error(25);
    let s = sense(&write(&mut d, true, 4, &pattern(40, 0)));
    assert_eq!(s.key, SenseKey::MediumError);
    assert_eq!(s.information, Some(2), "the torn block and the last one");
    assert_eq!(d.bytes_written(), 25);
}

// ---- offline / unload (SPC-4 NOT READY, SSC-4 §7.3) ----

#[test]
fn offline_is_not_ready_for_media_access_but_inquiry_works() {
    let mut d = drive();
    d.set_offline(true);
    assert!(d.is_offline());
    for cdb in [
        vec![0x00, 0, 0, 0, 0, 0],
        vec![0x01, 0, 0, 0, 0, 0],
        vec![0x08, 0, 0, 0, 1, 0],
        vec![0x10, 0, 0, 0, 1, 0],
        vec![0x11, 0, 0, 0, 1, 0],
        vec![0x34, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    ] {
        let s = sense(&d.execute(&cdb, None));
        assert_eq!(s.key, SenseKey::NotReady, "cdb {cdb:02x?}");
        assert_eq!(s.asc_ascq(), asc::LU_NOT_READY);
    }
    let s = sense(&write(&mut d, false, 1, b"x"));
    assert_eq!(s.key, SenseKey::NotReady);
    let r = d.execute(&[0x12, 0, 0, 0, 96, 0], None);
    assert!(r.is_good());
    assert_eq!(r.data_in[0], PERIPHERAL_TYPE_SEQUENTIAL);
    // REQUEST SENSE reports the state (SPC-4).
    let r = d.execute(&[0x03, 0, 0, 0, 18, 0], None);
    assert!(r.is_good());
    let s = TapeSense::decode(&r.data_in).unwrap();
    assert_eq!(s.key, SenseKey::NotReady);
    d.set_offline(false);
    assert!(d.execute(&[0x00, 0, 0, 0, 0, 0], None).is_good());
}

#[test]
fn unloaded_medium_is_not_present_until_loaded_ssc4_7_3() {
    let mut d = drive();
    write(&mut d, false, 1, b"x");
    assert!(d.execute(&[0x1B, 0, 0, 0, 0, 0], None).is_good());
    assert!(!d.is_loaded());
    let s = sense(&d.execute(&[0x00, 0, 0, 0, 0, 0], None));
    assert_eq!(s.asc_ascq(), asc::MEDIUM_NOT_PRESENT);
    assert!(d.execute(&[0x1B, 0, 0, 0, 1, 0], None).is_good());
    assert_eq!(d.position(), 0);
    assert_eq!(&read(&mut d, false, false, 1).data_in[..], b"x");
}

// ---- INQUIRY (SPC-4), READ BLOCK LIMITS (SSC-4 §7.6), MODE SENSE(6) ----

#[test]
fn inquiry_standard_and_vpd_pages() {
    let mut d = drive();
    let r = d.execute(&[0x12, 0, 0, 0, 255, 0], None);
    assert_eq!(r.data_in.len(), 36);
    assert_eq!(r.data_in[0], 0x01);
    assert_eq!(r.data_in[1] & 0x80, 0x80, "RMB: removable medium");
    assert_eq!(&r.data_in[8..16], b"FCSIM   ");
    assert_eq!(&r.data_in[16..32], b"VTAPE           ");
    let r = d.execute(&[0x12, 1, 0x00, 0, 255, 0], None);
    assert_eq!(&r.data_in[4..], &[0x00, 0x80, 0x83]);
    let r = d.execute(&[0x12, 1, 0x80, 0, 255, 0], None);
    assert_eq!(&r.data_in[4..], d.config().serial.as_bytes());
    let r = d.execute(&[0x12, 1, 0x83, 0, 255, 0], None);
    assert_eq!(&r.data_in[4..8], &[0x01, 0x03, 0x00, 8]);
    assert_eq!(&r.data_in[8..16], &d.config().lu_naa.to_bytes());
    assert_eq!(r.data_in[8] >> 4, 5, "NAA 5");
    // Allocation length cuts the data.
    assert_eq!(d.execute(&[0x12, 0, 0, 0, 5, 0], None).data_in.len(), 5);
    let s = sense(&d.execute(&[0x12, 1, 0xB0, 0, 255, 0], None));
    assert_eq!(s.asc_ascq(), asc::INVALID_FIELD_IN_CDB);
    let s = sense(&d.execute(&[0x12, 0, 0x80, 0, 255, 0], None));
    assert_eq!(s.asc_ascq(), asc::INVALID_FIELD_IN_CDB);
}

#[test]
fn read_block_limits_ssc4_7_6() {
    let mut d = drive();
    let r = d.execute(&[0x05, 0, 0, 0, 0, 0], None);
    assert_eq!(&r.data_in[..], &[0, 0xff, 0xff, 0xff, 0, 1]);
}

#[test]
fn mode_sense_reports_block_descriptor_after_mode_select() {
    let mut d = drive();
    let r = d.execute(&[0x1A, 0, 0, 0, 255, 0], None);
    assert_eq!(&r.data_in[..], &[11, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0]);
    assert!(set_block_length(&mut d, 0x1_0000).is_good());
    let r = d.execute(&[0x1A, 0, 0x3f, 0, 255, 0], None);
    assert_eq!(&r.data_in[9..12], &[1, 0, 0]);
    let r = d.execute(&[0x1A, 0x08, 0, 0, 255, 0], None);
    assert_eq!(&r.data_in[..], &[3, 0, 0, 0], "DBD: no block descriptor");
    assert!(set_block_length(&mut d, 0).is_good());
    assert_eq!(d.block_length(), 0);
    let s = sense(&d.execute(&[0x1A, 0, 0x02, 0, 255, 0], None));
    assert_eq!(s.asc_ascq(), asc::INVALID_FIELD_IN_CDB);
    let s = sense(&d.execute(
        &[0x15, 0x10, 0, 0, 12, 0],
        Some(Bytes::from_static(&[0; 4])),
    ));
    assert_eq!(s.asc_ascq(), asc::PARAMETER_LIST_LENGTH_ERROR);
}

// ---- ILLEGAL REQUEST for bad CDBs (SPC-4) ----

#[test]
fn unknown_opcode_and_short_cdb_are_illegal_request() {
    let mut d = drive();
    for cdb in [&[][..], &[0x2A, 0, 0, 0, 0, 0, 0, 0, 0, 0][..], &[0xFF][..]] {
        let s = sense(&d.execute(cdb, None));
        assert_eq!(s.key, SenseKey::IllegalRequest);
        assert_eq!(s.asc_ascq(), asc::INVALID_COMMAND_OPERATION_CODE);
    }
    for cdb in [&[0x08, 0, 0][..], &[0x34, 0, 0, 0][..]] {
        let s = sense(&d.execute(cdb, None));
        assert_eq!(s.asc_ascq(), asc::INVALID_FIELD_IN_CDB);
    }
    // SILI with FIXED (SSC-4 §8.4), unsupported SPACE code (SSC-4 §8.6).
    let s = sense(&d.execute(&[0x08, 0x03, 0, 0, 1, 0], None));
    assert_eq!(s.asc_ascq(), asc::INVALID_FIELD_IN_CDB);
    let s = sense(&d.execute(&[0x11, 0x04, 0, 0, 1, 0], None));
    assert_eq!(s.asc_ascq(), asc::INVALID_FIELD_IN_CDB);
    // The sense stays available to one REQUEST SENSE.
    let r = d.execute(&[0x03, 0, 0, 0, 18, 0], None);
    let s = TapeSense::decode(&r.data_in).unwrap();
    assert_eq!(s.asc_ascq(), asc::INVALID_FIELD_IN_CDB);
    let r = d.execute(&[0x03, 0, 0, 0, 18, 0], None);
    assert_eq!(
        TapeSense::decode(&r.data_in).unwrap().key,
        SenseKey::NoSense
    );
}

// ---- sense layout (SPC-4 §4.5.3) ----

#[test]
fn sense_encodes_fixed_format() {
    let s = TapeSense::new(SenseKey::VolumeOverflow, asc::END_OF_PARTITION_MEDIUM)
        .with_eom()
        .with_information(-2);
    let b = s.encode();
    assert_eq!(b.len(), 18);
    assert_eq!(b[0], 0xF0);
    assert_eq!(b[2], 0x4D);
    assert_eq!(&b[3..7], &[0xff, 0xff, 0xff, 0xfe]);
    assert_eq!(b[7], 10);
    assert_eq!((b[12], b[13]), (0x00, 0x02));
    assert_eq!(TapeSense::decode(&b), Some(s));
}

// ---- image ----

#[test]
fn image_round_trip_and_rejects_garbage() {
    let mut d = drive();
    write(&mut d, false, 3, b"abc");
    filemarks(&mut d, 2);
    write(&mut d, false, 1, b"z");
    let image = d.to_image();
    assert_eq!(&image[..8], IMAGE_MAGIC);
    let e = TapeDrive::from_image(TapeConfig::default(), &image).unwrap();
    assert_eq!(
        e.records().collect::<Vec<_>>(),
        d.records().collect::<Vec<_>>()
    );
    assert_eq!(e.position(), 0);
    assert!(TapeDrive::from_image(TapeConfig::default(), b"nope").is_err());
    assert!(TapeDrive::from_image(TapeConfig::default(), &image[..image.len() - 1]).is_err());
    let small = TapeConfig {
        capacity_bytes: Some(2),
        ..TapeConfig::default()
    };
    assert!(matches!(
        TapeDrive::from_image(small, &image),
        Err(TapeError::ImageExceedsCapacity { .. })
    ));
}

#[test]
fn config_validate_and_json() {
    assert!(TapeConfig::default().validate().is_ok());
    let bad = TapeConfig {
        early_warning_bytes: Some(5),
        ..TapeConfig::default()
    };
    assert!(bad.validate().is_err());
    let json = serde_json::to_string(&TapeConfig::default()).unwrap();
    let back: TapeConfig = serde_json::from_str(&json).unwrap();
    assert_eq!(back, TapeConfig::default());
    assert!(serde_json::from_str::<TapeConfig>(r#"{"bogus":1}"#).is_err());
}

// ---- properties ----

#[derive(Debug, Clone)]
enum Op {
    Data(Vec<u8>),
    Filemarks(u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => proptest::collection::vec(any::<u8>(), 1..64).prop_map(Op::Data),
        1 => (1u8..4).prop_map(Op::Filemarks),
    ]
}

/// Arbitrary bytes, mostly behind a known opcode so the command paths are exercised.
fn cdb() -> impl Strategy<Value = Vec<u8>> {
    let known = prop::sample::select(vec![
        0x00u8, 0x01, 0x03, 0x05, 0x08, 0x0A, 0x10, 0x11, 0x12, 0x15, 0x1A, 0x1B, 0x34,
    ]);
    prop_oneof![
        1 => proptest::collection::vec(any::<u8>(), 0..16),
        4 => (known, proptest::collection::vec(any::<u8>(), 0..12)).prop_map(|(op, mut rest)| {
            rest.insert(0, op);
            rest
        }),
    ]
}

proptest! {
    #[test]
    fn arbitrary_cdbs_never_panic(
        cmds in proptest::collection::vec(
            (cdb(),
             proptest::option::of(proptest::collection::vec(any::<u8>(), 0..64))),
            1..20),
        fixed_len in 0u32..8,
        cap in proptest::option::of(0u64..256),
    ) {
        let mut d = TapeDrive::new(TapeConfig {
            capacity_bytes: cap,
            block_length_bytes: fixed_len,
            ..TapeConfig::default()
        }).unwrap();
        for (cdb, data) in cmds {
            let r = d.execute(&cdb, data.map(Bytes::from));
            prop_assert_eq!(r.sense.is_some(), r.status == CHECK_CONDITION);
            prop_assert!(d.position() <= d.records().count() as u64);
            if let Some(c) = cap {
                prop_assert!(d.bytes_written() <= c);
            }
        }
    }

    #[test]
    fn writes_and_filemarks_read_back(ops in proptest::collection::vec(op(), 0..30)) {
        let mut d = drive();
        let mut expected = Vec::new();
        for op in &ops {
            match op {
                Op::Data(v) => {
                    prop_assert!(write(&mut d, false, u32::try_from(v.len()).unwrap(), v).is_good());
                    expected.push(Record::Data(Bytes::from(v.clone())));
                }
                Op::Filemarks(n) => {
                    prop_assert!(filemarks(&mut d, u32::from(*n)).is_good());
                    expected.extend(std::iter::repeat_n(Record::Filemark, usize::from(*n)));
                }
            }
        }
        prop_assert_eq!(d.records().cloned().collect::<Vec<_>>(), expected.clone());
        // Image round trip preserves the medium.
        let mut d = TapeDrive::from_image(TapeConfig::default(), &d.to_image()).unwrap();
        let mut got = Vec::new();
        loop {
            let r = read(&mut d, false, true, 0xFF_FFFF);
            match r.sense {
                None => got.push(Record::Data(r.data_in)),
                Some(s) if s.filemark => got.push(Record::Filemark),
                Some(s) => {
                    prop_assert_eq!(s.key, SenseKey::BlankCheck);
                    break;
                }
            }
        }
        prop_assert_eq!(got, expected);
    }
}
