//! The Fibre Channel fabric (FC-FS / FC-LS / FC-GS / FC-SW subset).
//!
//! Start here: [`wwn`] and [`fcid`] (identities), then [`frame`] (the FC-2 codec).
pub mod fcid;
pub mod frame;
pub mod wwn;

pub use fcid::{DomainId, FcId};
pub use wwn::{Wwn, Wwnn, Wwpn};
