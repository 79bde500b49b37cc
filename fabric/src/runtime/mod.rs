//! The node runtime: the seams (network, clock) and the port drivers every node uses,
//! identical in simulation, embedded live and processes modes.
pub mod actor;
pub mod clock;
pub mod domain;
pub mod linkmodel;
pub mod net;
pub mod ports;
pub mod server;
pub mod sim;

pub use clock::FabricClock;
pub use domain::spawn;
pub use net::Net;
pub use ports::{LinkAdmin, LinkService, PeerSpec, PortEvent, PortHub};
