//! Compiles `fcsim/v1/*.proto` with protox (pure Rust) and tonic-prost-build, and writes
//! the encoded FileDescriptorSet for gRPC server reflection.

use std::path::PathBuf;

use prost::Message;

const PROTOS: &[&str] = &[
    "fcsim/v1/link.proto",
    "fcsim/v1/control.proto",
    "fcsim/v1/switch.proto",
    "fcsim/v1/host.proto",
    "fcsim/v1/array.proto",
    "fcsim/v1/virtualization.proto",
    "fcsim/v1/copy.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    for p in PROTOS {
        println!("cargo:rerun-if-changed={p}");
    }
    let fds = protox::compile(PROTOS, ["."])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("fcsim_descriptor.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure()
        .bytes(".fcsim.v1")
        .compile_fds(fds)?;
    Ok(())
}
