//! The Fibre Channel fabric (FC-FS / FC-LS / FC-GS / FC-SW subset).
//!
//! Start here: [`wwn`] and [`fcid`] (identities), then [`frame`] (the FC-2 codec).
pub mod fcid;
pub mod fspf;
pub mod login;
pub mod nameserver;
pub mod rscn;
pub mod wwn;
pub mod zoning;

pub use fcid::{DomainId, FcId};
pub use wwn::{Wwn, Wwnn, Wwpn};
pub mod runtime;
