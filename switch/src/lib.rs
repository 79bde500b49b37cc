//! The intelligent switch (seed 003, DESIGN.md §6): virtual targets and virtual LUs over
//! external arrays, the mapping table TM, the function table TF, the switch cache, and
//! support functions (direct backup, volume copy, mirroring) delegated to capable arrays
//! or done by the switch.
//!
//! An intelligent switch is a fabric switch plus a virtualization engine whose N_Ports sit
//! on the switch's internal ports (as a virtualization blade's data-path processors do):
//! they are the virtual targets the hosts log in to and the virtual initiators that reach
//! the arrays and tapes.
//!
//! Start here: [`engine::Engine`] (the FC-4 layer of the engine's ports), then [`ops`].
//! The sans-IO cores are [`tm::MappingTable`], [`tf::FunctionTable`] and
//! [`cache::SwitchCache`]; TB is [`fcsim_devices::bitmap::DiffBitmap`].

pub mod cache;
pub mod engine;
pub mod ops;
pub mod pairs;
pub mod peer;
pub mod service;
pub mod tf;
pub mod tm;

pub use engine::{EngineConfig, KnownDevice, KnownLu, OffloadMode};
pub use service::run_engine;
