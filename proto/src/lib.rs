//! The `fcsim.v1` gRPC API (**API Boundary**): the generated prost messages and tonic
//! services, plus the encoded descriptor set that every server hands to gRPC reflection.
//!
//! Start here: `fcsim/v1/link.proto` (the cable between two node ports), then
//! `control.proto` (the orchestrator endpoint) and `switch.proto` (switch views).
//! Proto types never appear in the signatures of the sans-IO cores; node code converts.

/// Generated code for package `fcsim.v1`.
#[allow(clippy::all, clippy::pedantic)]
pub mod v1 {
    tonic::include_proto!("fcsim.v1");
}

/// The encoded `FileDescriptorSet` of every fcsim proto, for `tonic-reflection`.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/fcsim_descriptor.bin"));
