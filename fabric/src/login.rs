//! The F_Port login server of one switch (well-known address FF FF FE): FLOGI, FDISC
//! (NPIV) and LOGO, and the FC_ID assignment that goes with them (FC-LS-3 §4.2.13
//! FLOGI, §4.2.14 FDISC, §4.2.9 LOGO; address layout FC-FS-4 §13).
//!
//! Addressing rule: the switch of domain `D` gives the base (FLOGI) login on switch port
//! `p` the FC_ID `D·p·00` (area = switch port), and the `n`-th NPIV login (FDISC) on that
//! port `D·p·n`, `n = 1, 2, …`, lowest free first.

use std::collections::BTreeMap;

use crate::fcid::{DomainId, FcId};
use crate::wwn::{Wwnn, Wwpn};

/// Caller errors of the login server: the driver asked about a port this switch does
/// not have.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LoginError {
    #[error("switch port {port} does not exist (this switch has {port_count} ports)")]
    NoSuchPort { port: u8, port_count: u16 },
}

/// How an N_Port logged in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LoginKind {
    /// The physical N_Port's base login (FLOGI), FC_ID `D·p·00`.
    Flogi,
    /// A virtual N_Port behind the base login (FDISC / NPIV), FC_ID `D·p·n`, `n ≥ 1`.
    Fdisc,
}

/// One fabric login held by the switch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Login {
    /// The address assigned at login; its domain is this switch's, its area the port.
    pub fc_id: FcId,
    /// Switch (F_)port the N_Port is attached to.
    pub port: u8,
    /// Port name presented in the FLOGI/FDISC; unique on this switch.
    pub wwpn: Wwpn,
    /// Node name presented in the FLOGI/FDISC.
    pub wwnn: Wwnn,
    /// Base or virtual login.
    pub kind: LoginKind,
}

/// A login that ended (LOGO, port offline, or replaced by a re-FLOGI). The driver
/// deregisters it from the name server and sends RSCNs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedOut {
    /// The address that is no longer valid.
    pub fc_id: FcId,
    /// The port name that held it.
    pub wwpn: Wwpn,
    /// Switch port it was on.
    pub port: u8,
}

impl From<&Login> for LoggedOut {
    fn from(l: &Login) -> Self {
        LoggedOut {
            fc_id: l.fc_id,
            wwpn: l.wwpn,
            port: l.port,
        }
    }
}

/// Why a FLOGI/FDISC is refused; sent as LS_RJT (see [`LoginReject::ls_rjt_codes`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginReject {
    /// The WWPN is already logged in elsewhere on this switch (another port, or as
    /// another login on this port).
    DuplicateWwpn { existing: FcId },
    /// FLOGI on a port whose base login belongs to another WWPN.
    PortInUse { existing: Wwpn },
    /// FDISC on a port without a base (FLOGI) login.
    NoBaseLogin,
    /// All 255 NPIV addresses of the port are taken.
    NpivExhausted,
}

impl LoginReject {
    /// `(reason code, reason explanation)` of the LS_RJT (FC-LS-3 §4.3.3 tables): 0x09
    /// "unable to perform command request" with explanation 0x0D "invalid N_Port/F_Port
    /// name" (duplicate WWPN), 0x1E "N_Port login required" (FDISC before FLOGI), 0x29
    /// "insufficient resources" (NPIV exhausted); 0x03 "logical error" for a busy port.
    pub fn ls_rjt_codes(self) -> (u8, u8) {
        match self {
            LoginReject::DuplicateWwpn { .. } => (0x09, 0x0D),
            LoginReject::PortInUse { .. } => (0x03, 0x00),
            LoginReject::NoBaseLogin => (0x09, 0x1E),
            LoginReject::NpivExhausted => (0x09, 0x29),
        }
    }
}

/// Result of a FLOGI or FDISC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlogiOutcome {
    /// Send ACC carrying `fc_id`. `replaced` lists logins this one implicitly ended (a
    /// re-FLOGI of the same WWPN on the same port ends the old base login and every NPIV
    /// login behind it); the driver deregisters those before registering the new one.
    Accept {
        fc_id: FcId,
        replaced: Vec<LoggedOut>,
    },
    /// Send LS_RJT.
    Reject { reason: LoginReject },
}

/// The F_Port login server of one switch (domain `D`).
///
/// Call order: construct with [`FabricLogin::new`]; on each FLOGI / FDISC / LOGO
/// received from an N_Port call [`handle_flogi`](Self::handle_flogi) /
/// [`handle_fdisc`](Self::handle_fdisc) / [`handle_logo`](Self::handle_logo) and send the
/// ACC or LS_RJT it returns; when a switch port loses light call
/// [`port_offline`](Self::port_offline). Every returned [`LoggedOut`] (and every
/// `Accept`) is a name-server and RSCN event for the driver. No time or I/O is involved.
#[derive(Debug, Clone)]
pub struct FabricLogin {
    /// This switch's domain: the first byte of every FC_ID it assigns.
    domain: DomainId,
    /// Number of switch ports; valid ports are `0..port_count`.
    port_count: u16,
    /// Every login, keyed by assigned address (so iteration is FC_ID order).
    logins: BTreeMap<FcId, Login>,
    /// Index WWPN → FC_ID; always the inverse of `logins`.
    by_wwpn: BTreeMap<Wwpn, FcId>,
}

impl FabricLogin {
    /// A login server for switch `domain` with ports `0..port_count` (at most 256).
    pub fn new(domain: DomainId, port_count: u16) -> Self {
        FabricLogin {
            domain,
            port_count: port_count.min(256),
            logins: BTreeMap::new(),
            by_wwpn: BTreeMap::new(),
        }
    }

    /// This switch's domain.
    pub fn domain(&self) -> DomainId {
        self.domain
    }

    /// All logins in FC_ID order.
    pub fn logins(&self) -> impl Iterator<Item = &Login> {
        self.logins.values()
    }

    /// The login holding `fc_id`.
    pub fn by_fc_id(&self, fc_id: FcId) -> Option<&Login> {
        self.logins.get(&fc_id)
    }

    /// The login of `wwpn`.
    pub fn by_wwpn(&self, wwpn: Wwpn) -> Option<&Login> {
        self.by_wwpn.get(&wwpn).and_then(|id| self.logins.get(id))
    }

    /// Logins on switch port `port`, base login first, then NPIV logins in order.
    pub fn on_port(&self, port: u8) -> impl Iterator<Item = &Login> {
        let lo = FcId::from_parts(self.domain.get(), port, 0);
        let hi = FcId::from_parts(self.domain.get(), port, 0xFF);
        self.logins.range(lo..=hi).map(|(_, l)| l)
    }

    fn check_port(&self, port: u8) -> Result<(), LoginError> {
        if u16::from(port) < self.port_count {
            Ok(())
        } else {
            Err(LoginError::NoSuchPort {
                port,
                port_count: self.port_count,
            })
        }
    }

    fn base_fc_id(&self, port: u8) -> FcId {
        FcId::from_parts(self.domain.get(), port, 0)
    }

    fn insert(&mut self, login: Login) {
        self.by_wwpn.insert(login.wwpn, login.fc_id);
        self.logins.insert(login.fc_id, login);
    }

    fn remove(&mut self, fc_id: FcId) -> Option<Login> {
        let l = self.logins.remove(&fc_id)?;
        self.by_wwpn.remove(&l.wwpn);
        Some(l)
    }

    /// FLOGI from the N_Port on `port` (FC-LS-3 §4.2.13).
    ///
    /// Accepts with `D·port·00` unless the WWPN is logged in elsewhere on this switch or
    /// the port already carries another WWPN's base login. A re-FLOGI of the same WWPN on
    /// the same port replaces the old login (and drops its NPIV logins).
    pub fn handle_flogi(
        &mut self,
        port: u8,
        wwpn: Wwpn,
        wwnn: Wwnn,
    ) -> Result<FlogiOutcome, LoginError> {
        self.check_port(port)?;
        let base = self.base_fc_id(port);
        if let Some(existing) = self.logins.get(&base) {
            if existing.wwpn != wwpn {
                return Ok(FlogiOutcome::Reject {
                    reason: LoginReject::PortInUse {
                        existing: existing.wwpn,
                    },
                });
            }
        } else if let Some(&existing) = self.by_wwpn.get(&wwpn) {
            return Ok(FlogiOutcome::Reject {
                reason: LoginReject::DuplicateWwpn { existing },
            });
        }
        // Either a fresh port, or a re-FLOGI of the base WWPN: implicit logout of all.
        let replaced = self.drop_port(port);
        self.insert(Login {
            fc_id: base,
            port,
            wwpn,
            wwnn,
            kind: LoginKind::Flogi,
        });
        Ok(FlogiOutcome::Accept {
            fc_id: base,
            replaced,
        })
    }

    /// FDISC from a virtual N_Port behind the base login on `port` (FC-LS-3 §4.2.14).
    ///
    /// Accepts with the lowest free `D·port·n`, `n ≥ 1`. A repeated FDISC of a WWPN
    /// already logged in as NPIV on the same port is accepted with the same FC_ID.
    pub fn handle_fdisc(
        &mut self,
        port: u8,
        wwpn: Wwpn,
        wwnn: Wwnn,
    ) -> Result<FlogiOutcome, LoginError> {
        self.check_port(port)?;
        if !self.logins.contains_key(&self.base_fc_id(port)) {
            return Ok(FlogiOutcome::Reject {
                reason: LoginReject::NoBaseLogin,
            });
        }
        if let Some(&existing) = self.by_wwpn.get(&wwpn) {
            let l = &self.logins[&existing];
            if l.port == port && l.kind == LoginKind::Fdisc {
                let l = self
                    .logins
                    .get_mut(&existing)
                    .expect("indexed login exists");
                l.wwnn = wwnn;
                return Ok(FlogiOutcome::Accept {
                    fc_id: existing,
                    replaced: Vec::new(),
                });
            }
            return Ok(FlogiOutcome::Reject {
                reason: LoginReject::DuplicateWwpn { existing },
            });
        }
        let free = (1..=0xFFu8)
            .map(|n| FcId::from_parts(self.domain.get(), port, n))
            .find(|id| !self.logins.contains_key(id));
        let Some(fc_id) = free else {
            return Ok(FlogiOutcome::Reject {
                reason: LoginReject::NpivExhausted,
            });
        };
        self.insert(Login {
            fc_id,
            port,
            wwpn,
            wwnn,
            kind: LoginKind::Fdisc,
        });
        Ok(FlogiOutcome::Accept {
            fc_id,
            replaced: Vec::new(),
        })
    }

    /// LOGO from `fc_id` (FC-LS-3 §4.2.9). Logging out a base N_Port also logs out every
    /// NPIV login on its port. Returns what ended (empty if `fc_id` was not logged in).
    pub fn handle_logo(&mut self, fc_id: FcId) -> Vec<LoggedOut> {
        match self.logins.get(&fc_id) {
            None => Vec::new(),
            Some(l) if l.kind == LoginKind::Flogi => {
                let port = l.port;
                self.drop_port(port)
            }
            Some(_) => self.remove(fc_id).iter().map(LoggedOut::from).collect(),
        }
    }

    /// Switch port `port` went offline: every login on it ends, in FC_ID order.
    pub fn port_offline(&mut self, port: u8) -> Result<Vec<LoggedOut>, LoginError> {
        self.check_port(port)?;
        Ok(self.drop_port(port))
    }

    fn drop_port(&mut self, port: u8) -> Vec<LoggedOut> {
        let ids: Vec<FcId> = self.on_port(port).map(|l| l.fc_id).collect();
        ids.into_iter()
            .filter_map(|id| self.remove(id))
            .map(|l| LoggedOut::from(&l))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wwn::Wwn;

    fn p(n: u64) -> Wwpn {
        Wwpn(Wwn(0x1000_0000_c900_0000 | n))
    }
    fn n(n: u64) -> Wwnn {
        Wwnn(Wwn(0x2000_0000_c900_0000 | n))
    }
    fn srv() -> FabricLogin {
        FabricLogin::new(DomainId::new(3).unwrap(), 16)
    }
    fn accepted(o: FlogiOutcome) -> FcId {
        match o {
            FlogiOutcome::Accept { fc_id, .. } => fc_id,
            FlogiOutcome::Reject { reason } => panic!("rejected: {reason:?}"),
        }
    }

    /// FC-LS-3 §4.2.13: FLOGI assigns D·port·00.
    #[test]
    fn flogi_assigns_domain_port_00() {
        let mut s = srv();
        let id = accepted(s.handle_flogi(5, p(1), n(1)).unwrap());
        assert_eq!(id, FcId::from_parts(3, 5, 0));
        assert_eq!(s.by_wwpn(p(1)).unwrap().fc_id, id);
        assert_eq!(s.by_fc_id(id).unwrap().kind, LoginKind::Flogi);
    }

    /// FC-LS-3 §4.2.14: FDISC assigns D·port·n, n = 1, 2, …, lowest free first.
    #[test]
    fn fdisc_increments_and_reuses_lowest_free() {
        let mut s = srv();
        accepted(s.handle_flogi(2, p(1), n(1)).unwrap());
        let a = accepted(s.handle_fdisc(2, p(2), n(2)).unwrap());
        let b = accepted(s.handle_fdisc(2, p(3), n(3)).unwrap());
        assert_eq!(a, FcId::from_parts(3, 2, 1));
        assert_eq!(b, FcId::from_parts(3, 2, 2));
        assert_eq!(s.handle_logo(a).len(), 1);
        assert_eq!(accepted(s.handle_fdisc(2, p(4), n(4)).unwrap()), a);
        // Same WWPN again on the same port: same address, idempotent.
        assert_eq!(accepted(s.handle_fdisc(2, p(3), n(3)).unwrap()), b);
    }

    #[test]
    fn fdisc_without_base_login_rejected() {
        let mut s = srv();
        let o = s.handle_fdisc(1, p(9), n(9)).unwrap();
        assert_eq!(
            o,
            FlogiOutcome::Reject {
                reason: LoginReject::NoBaseLogin
            }
        );
        assert_eq!(LoginReject::NoBaseLogin.ls_rjt_codes(), (0x09, 0x1E));
    }

    #[test]
    fn duplicate_wwpn_rejected_anywhere_on_switch() {
        let mut s = srv();
        let id = accepted(s.handle_flogi(1, p(1), n(1)).unwrap());
        accepted(s.handle_flogi(2, p(2), n(2)).unwrap());
        let o = s.handle_flogi(3, p(1), n(1)).unwrap();
        assert_eq!(
            o,
            FlogiOutcome::Reject {
                reason: LoginReject::DuplicateWwpn { existing: id }
            }
        );
        let o = s.handle_fdisc(2, p(1), n(1)).unwrap();
        assert_eq!(
            o,
            FlogiOutcome::Reject {
                reason: LoginReject::DuplicateWwpn { existing: id }
            }
        );
    }

    #[test]
    fn port_with_other_base_login_rejects_flogi() {
        let mut s = srv();
        accepted(s.handle_flogi(1, p(1), n(1)).unwrap());
        let o = s.handle_flogi(1, p(2), n(2)).unwrap();
        assert_eq!(
            o,
            FlogiOutcome::Reject {
                reason: LoginReject::PortInUse { existing: p(1) }
            }
        );
    }

    /// A re-FLOGI of the same WWPN on the same port replaces the old login and drops
    /// the NPIV logins behind it.
    #[test]
    fn re_flogi_replaces_old_login() {
        let mut s = srv();
        let base = accepted(s.handle_flogi(4, p(1), n(1)).unwrap());
        let v = accepted(s.handle_fdisc(4, p(2), n(2)).unwrap());
        match s.handle_flogi(4, p(1), n(1)).unwrap() {
            FlogiOutcome::Accept { fc_id, replaced } => {
                assert_eq!(fc_id, base);
                let ids: Vec<FcId> = replaced.iter().map(|l| l.fc_id).collect();
                assert_eq!(ids, vec![base, v]);
            }
            o => panic!("{o:?}"),
        }
        assert!(s.by_wwpn(p(2)).is_none());
        assert_eq!(s.logins().count(), 1);
    }

    #[test]
    fn logo_of_base_logs_out_npiv_and_port_offline_clears_port() {
        let mut s = srv();
        let base = accepted(s.handle_flogi(4, p(1), n(1)).unwrap());
        accepted(s.handle_fdisc(4, p(2), n(2)).unwrap());
        accepted(s.handle_flogi(5, p(3), n(3)).unwrap());
        assert_eq!(s.handle_logo(base).len(), 2);
        assert!(s.handle_logo(base).is_empty());
        let gone = s.port_offline(5).unwrap();
        assert_eq!(
            gone,
            vec![LoggedOut {
                fc_id: FcId::from_parts(3, 5, 0),
                wwpn: p(3),
                port: 5
            }]
        );
        assert_eq!(s.logins().count(), 0);
    }

    #[test]
    fn unknown_port_is_an_error() {
        let mut s = srv();
        assert_eq!(
            s.handle_flogi(16, p(1), n(1)),
            Err(LoginError::NoSuchPort {
                port: 16,
                port_count: 16
            })
        );
    }
}
