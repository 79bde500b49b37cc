#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| fcsim_fuzz::tape_cdb_parse(data));
