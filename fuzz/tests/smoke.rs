//! Stable-toolchain smoke run of every fuzz target body: a few thousand pseudo-random
//! inputs each (xorshift, fixed seeds, no `rand`), biased towards zero bytes and known
//! leading bytes so that inputs get past the first length and reserved-field checks.
//!
//! `cargo test --release` in `fuzz/`; `FCSIM_SMOKE_ITERS=N` changes the count per target.

/// xorshift64*.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % u64::try_from(n.max(1)).unwrap()).unwrap()
    }
    fn byte(&mut self) -> u8 {
        self.next().to_le_bytes()[0]
    }
    /// `len` bytes, each zero with probability `zero_in_8` / 8.
    fn bytes(&mut self, len: usize, zero_in_8: usize) -> Vec<u8> {
        (0..len)
            .map(|_| {
                if self.below(8) < zero_in_8 {
                    0
                } else {
                    self.byte()
                }
            })
            .collect()
    }
}

fn iters() -> usize {
    std::env::var("FCSIM_SMOKE_ITERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5000)
}

/// Runs `body` on `iters()` inputs: `max_len` random bytes at most, and with probability
/// 3/4 the first `prefix.len()` bytes replaced by one of the `prefixes`.
fn run(seed: u64, max_len: usize, prefixes: &[&[u8]], body: fn(&[u8])) {
    let mut rng = Rng(seed);
    for _ in 0..iters() {
        let len = rng.below(max_len + 1);
        let zeros = rng.below(8);
        let mut input = rng.bytes(len, zeros);
        if !prefixes.is_empty() && rng.below(4) != 0 {
            let p = prefixes[rng.below(prefixes.len())];
            let n = p.len().min(input.len());
            input[..n].copy_from_slice(&p[..n]);
        }
        body(&input);
    }
}

#[test]
fn frame_decode() {
    // R_CTL, D_ID ×3, CS_CTL, S_ID ×3, TYPE for each routing the codec knows.
    const ROUTES: [[u8; 9]; 12] = [
        [0x22, 0, 0, 0, 0, 0, 0, 0, 0x01],
        [0x23, 0, 0, 0, 0, 0, 0, 0, 0x01],
        [0x02, 0, 0, 0, 0, 0, 0, 0, 0x20],
        [0x03, 0, 0, 0, 0, 0, 0, 0, 0x20],
        [0x06, 0, 0, 0, 0, 0, 0, 0, 0x08],
        [0x05, 0, 0, 0, 0, 0, 0, 0, 0x08],
        [0x01, 0, 0, 0, 0, 0, 0, 0, 0x08],
        [0x07, 0, 0, 0, 0, 0, 0, 0, 0x08],
        [0x81, 0, 0, 0, 0, 0, 0, 0, 0x00],
        [0x84, 0, 0, 0, 0, 0, 0, 0, 0x00],
        [0x85, 0, 0, 0, 0, 0, 0, 0, 0x00],
        [0x02, 0, 0, 0, 0, 0, 0, 0, 0x22],
    ];
    let prefixes: Vec<&[u8]> = ROUTES.iter().map(|r| &r[..]).collect();
    run(0x0F1A_3E00_0000_0001, 400, &prefixes, fcsim_fuzz::frame_decode);
}

#[test]
fn swils_decode() {
    let prefixes: [&[u8]; 5] = [
        &[0x14, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 1],
        &[0x12, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 1],
        &[0x7F, 0, 0, 1],
        &[0x7F, 0, 0, 2],
        &[0x02, 0, 0, 0],
    ];
    run(0x5111_5000_0000_0002, 300, &prefixes, fcsim_fuzz::swils_decode);
}

#[test]
fn cdb_parse() {
    let ops: [&[u8]; 18] = [
        &[0x00], &[0x03], &[0x12], &[0x1A], &[0x25], &[0x28], &[0x2A], &[0x35], &[0x5A],
        &[0x83], &[0x84], &[0x88], &[0x8A], &[0x91], &[0x93], &[0x9E, 0x10], &[0xA0],
        &[0x84, 0x03],
    ];
    run(0xCDB0_0000_0000_0003, 20, &ops, fcsim_fuzz::cdb_parse);
}

#[test]
fn xcopy_parse() {
    // Selector, then a header: list id, flags, one CSCD (32 bytes), 28 bytes of segments.
    let prefixes: [&[u8]; 3] = [
        &[0, 0, 0, 0, 32, 0, 0, 0, 0, 0, 0, 0, 28, 0, 0, 0, 0, 0xE4, 0x00, 0, 0, 0x01, 0x03, 0, 8],
        &[1, 0, 0, 0, 64, 0, 0, 0, 0, 0, 0, 0, 24, 0, 0, 0, 0, 0xE4, 0x01, 0, 0, 0x01, 0x03, 0, 8],
        &[2],
    ];
    run(0x8C09_0000_0000_0004, 200, &prefixes, fcsim_fuzz::xcopy_parse);
}

#[test]
fn tape_cdb_parse() {
    let ops: [&[u8]; 13] = [
        &[0x00], &[0x01], &[0x03], &[0x05], &[0x08], &[0x0A], &[0x10], &[0x11], &[0x12],
        &[0x15], &[0x1A], &[0x1B], &[0x34],
    ];
    run(0x7A9E_0000_0000_0005, 20, &ops, fcsim_fuzz::tape_cdb_parse);
}

#[test]
fn scsi_execute() {
    // Flags (clear the power-on UA), CDB length, opcode.
    let prefixes: [&[u8]; 16] = [
        &[0x40, 6, 0x00], &[0x40, 6, 0x03], &[0x40, 6, 0x12], &[0x40, 6, 0x1A],
        &[0x40, 10, 0x25], &[0x40, 10, 0x28], &[0x40, 10, 0x2A], &[0x40, 10, 0x35],
        &[0x40, 10, 0x5A], &[0x40, 16, 0x83], &[0x40, 16, 0x84], &[0x40, 16, 0x88],
        &[0x40, 16, 0x8A], &[0x40, 16, 0x91], &[0x40, 16, 0x93], &[0x40, 12, 0xA0],
    ];
    run(0x5C51_0000_0000_0006, 1200, &prefixes, fcsim_fuzz::scsi_execute);
}
