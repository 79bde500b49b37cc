//! The Fibre Channel fabric (FC-FS / FC-LS / FC-GS / FC-SW subset), and the node runtime
//! every fcsim node uses.
//!
//! Start here: [`wwn`] and [`fcid`] (identities), then [`frame`] (the FC-2 codec) and
//! [`capture`] (the pcap format Wireshark reads, and the cutting of long IUs into frames).
//! Sans-IO cores: [`login`] (F_Port login server), [`nameserver`] (dNS), [`zoning`],
//! [`fspf`] (routing), [`rscn`] (state change registration), [`nport`] (an end node's
//! N_Port logins). Node glue: [`runtime`] (network, clock, ports, simulation),
//! [`switch`] (the plain FC switch node), [`endnode`] (a minimal host/array N_Port node).
pub mod capture;
pub mod endnode;
pub mod fcid;
pub mod frame;
pub mod fspf;
pub mod login;
pub mod nameserver;
pub mod nport;
pub mod rscn;
pub mod runtime;
pub mod swils;
pub mod switch;
pub mod wwn;
pub mod zoning;

pub use fcid::{DomainId, FcId};
pub use wwn::{Wwn, Wwnn, Wwpn};
