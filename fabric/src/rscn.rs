//! State Change Registration and the choice of RSCN recipients on one switch
//! (FC-LS-3 §4.2.27 SCR, §4.2.26 RSCN; fabric controller FF FF FD).
//!
//! An N_Port registers with SCR; when something changes, the fabric controller sends an
//! RSCN naming the affected address — not what changed, the N_Port must query the name
//! server again. RSCNs do not cross zone boundaries: a port is told only about ports it
//! may see. Each switch holds the registrations of its own N_Ports; switch-to-switch
//! propagation (SW-RSCN) is the driver's business, and every switch then picks its own
//! local recipients here.

use std::collections::BTreeMap;

use crate::fcid::{DomainId, FcId};

/// Caller errors of the SCR table.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RscnError {
    #[error("FC_ID {fc_id} is not an N_Port of this switch's domain {domain}")]
    ForeignPort { fc_id: FcId, domain: DomainId },
}

/// SCR registration function (FC-LS-3 Table "SCR function").
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ScrFunction {
    /// 0x01: RSCNs for events the fabric detects (logins, logouts, zoning, switches).
    FabricDetected,
    /// 0x02: RSCNs that other N_Ports originate.
    NportDetected,
    /// 0x03: both.
    Full,
}

impl ScrFunction {
    /// Decodes the SCR function byte; 0xFF ("clear registration") and unknown codes
    /// give `None` (the driver deregisters on 0xFF and rejects the rest).
    pub fn from_code(code: u8) -> Option<Self> {
        match code {
            0x01 => Some(ScrFunction::FabricDetected),
            0x02 => Some(ScrFunction::NportDetected),
            0x03 => Some(ScrFunction::Full),
            _ => None,
        }
    }

    pub fn code(self) -> u8 {
        match self {
            ScrFunction::FabricDetected => 0x01,
            ScrFunction::NportDetected => 0x02,
            ScrFunction::Full => 0x03,
        }
    }

    fn wants(self, source: Detection) -> bool {
        matches!(
            (self, source),
            (ScrFunction::Full, _)
                | (ScrFunction::FabricDetected, Detection::Fabric)
                | (ScrFunction::NportDetected, Detection::Nport)
        )
    }
}

/// Who detected the change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detection {
    /// The fabric (login, logout, port offline, zoning, reachability).
    Fabric,
    /// An N_Port, which sent an RSCN to the fabric controller.
    Nport,
}

/// The affected address of an RSCN page (FC-LS-3 RSCN payload; address format in the
/// low two bits of the page's first byte).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RscnPage {
    /// Format 0x0: one N_Port.
    Port(FcId),
    /// Format 0x1: every port with this domain and area (e.g. a switch port with NPIV).
    Area { domain: DomainId, area: u8 },
    /// Format 0x2: every port of one domain (a switch joined or left).
    Domain(DomainId),
    /// Format 0x3: the whole fabric (e.g. a zoning change).
    Fabric,
}

impl RscnPage {
    /// Address format code 0–3.
    pub fn format(self) -> u8 {
        match self {
            RscnPage::Port(_) => 0x0,
            RscnPage::Area { .. } => 0x1,
            RscnPage::Domain(_) => 0x2,
            RscnPage::Fabric => 0x3,
        }
    }

    /// The 24-bit affected address carried in the page (unused bytes zero).
    pub fn affected(self) -> FcId {
        match self {
            RscnPage::Port(id) => id,
            RscnPage::Area { domain, area } => FcId::from_parts(domain.get(), area, 0),
            RscnPage::Domain(d) => FcId::from_parts(d.get(), 0, 0),
            RscnPage::Fabric => FcId::UNIDENTIFIED,
        }
    }

    /// Does the page cover `fc_id`?
    pub fn covers(self, fc_id: FcId) -> bool {
        match self {
            RscnPage::Port(id) => id == fc_id,
            RscnPage::Area { domain, area } => {
                fc_id.domain() == domain.get() && fc_id.area() == area
            }
            RscnPage::Domain(d) => fc_id.domain() == d.get(),
            RscnPage::Fabric => true,
        }
    }
}

/// One RSCN to send: the page, and the local N_Ports that get it (ascending FC_ID).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RscnDelivery {
    /// What the RSCN names.
    pub page: RscnPage,
    /// Local registered N_Ports to send it to.
    pub recipients: Vec<FcId>,
}

/// The SCR table of one switch.
///
/// Call order: [`ScrTable::new`]; on SCR from a local N_Port call
/// [`register`](Self::register) (function 0xFF → [`deregister`](Self::deregister)); on
/// logout call `deregister`. For each state change ask one of the `recipients*`
/// methods, passing a visibility closure backed by zoning, and send an RSCN with the
/// returned page to each recipient.
#[derive(Debug, Clone)]
pub struct ScrTable {
    /// This switch's domain; registrants are all in it.
    domain: DomainId,
    /// Registered N_Ports and what they registered for.
    regs: BTreeMap<FcId, ScrFunction>,
}

impl ScrTable {
    pub fn new(domain: DomainId) -> Self {
        ScrTable {
            domain,
            regs: BTreeMap::new(),
        }
    }

    /// Registers (or re-registers) local N_Port `fc_id`.
    pub fn register(&mut self, fc_id: FcId, function: ScrFunction) -> Result<(), RscnError> {
        if fc_id.domain() != self.domain.get() || fc_id.is_well_known() {
            return Err(RscnError::ForeignPort {
                fc_id,
                domain: self.domain,
            });
        }
        self.regs.insert(fc_id, function);
        Ok(())
    }

    /// Removes a registration; returns whether there was one.
    pub fn deregister(&mut self, fc_id: FcId) -> bool {
        self.regs.remove(&fc_id).is_some()
    }

    /// Registrations in FC_ID order (Cisco `show rscn scr-table`).
    pub fn registrations(&self) -> impl Iterator<Item = (FcId, ScrFunction)> + '_ {
        self.regs.iter().map(|(&k, &v)| (k, v))
    }

    /// General rule: registrants for `source`, not covered by a port or area `page`
    /// (the affected ports themselves), and for whom `visible(recipient)` holds.
    pub fn recipients(
        &self,
        page: RscnPage,
        source: Detection,
        visible: impl Fn(FcId) -> bool,
    ) -> RscnDelivery {
        let recipients = self
            .regs
            .iter()
            .filter(|(_, f)| f.wants(source))
            .map(|(&id, _)| id)
            .filter(|&id| match page {
                RscnPage::Port(_) | RscnPage::Area { .. } => !page.covers(id),
                RscnPage::Domain(_) | RscnPage::Fabric => true,
            })
            .filter(|&id| visible(id))
            .collect();
        RscnDelivery { page, recipients }
    }

    /// A fabric-detected change of one port (login, logout): everyone registered who may
    /// see `affected` (`visible(recipient)` — zoning between recipient and affected),
    /// except `affected` itself.
    pub fn recipients_for_port(
        &self,
        affected: FcId,
        visible: impl Fn(FcId) -> bool,
    ) -> RscnDelivery {
        self.recipients(RscnPage::Port(affected), Detection::Fabric, visible)
    }

    /// A domain became unreachable or appeared: those that could see a port in it.
    pub fn recipients_for_domain(
        &self,
        domain: DomainId,
        visible: impl Fn(FcId) -> bool,
    ) -> RscnDelivery {
        self.recipients(RscnPage::Domain(domain), Detection::Fabric, visible)
    }

    /// A fabric-wide event (zoning change): every fabric-detected registrant.
    pub fn recipients_all(&self) -> RscnDelivery {
        self.recipients(RscnPage::Fabric, Detection::Fabric, |_| true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(area: u8) -> FcId {
        FcId::from_parts(1, area, 0)
    }
    fn table() -> ScrTable {
        let mut t = ScrTable::new(DomainId::new(1).unwrap());
        t.register(id(1), ScrFunction::Full).unwrap();
        t.register(id(2), ScrFunction::FabricDetected).unwrap();
        t.register(id(3), ScrFunction::NportDetected).unwrap();
        t.register(id(4), ScrFunction::FabricDetected).unwrap();
        t
    }

    #[test]
    fn only_registered_visible_others_get_port_rscn() {
        let t = table();
        // id(4) is zoned away from the affected port; id(3) wants only N_Port-detected.
        let d = t.recipients_for_port(id(2), |r| r != id(4));
        assert_eq!(d.page, RscnPage::Port(id(2)));
        assert_eq!(d.recipients, vec![id(1)], "not the affected port itself");
        let d = t.recipients_for_port(id(9), |_| true);
        assert_eq!(d.recipients, vec![id(1), id(2), id(4)]);
    }

    #[test]
    fn nport_detected_goes_to_nport_and_full() {
        let t = table();
        let d = t.recipients(RscnPage::Port(id(7)), Detection::Nport, |_| true);
        assert_eq!(d.recipients, vec![id(1), id(3)]);
    }

    #[test]
    fn fabric_and_domain_pages() {
        let mut t = table();
        assert_eq!(t.recipients_all().recipients, vec![id(1), id(2), id(4)]);
        let lost = DomainId::new(7).unwrap();
        let d = t.recipients_for_domain(lost, |r| r == id(2));
        assert_eq!(
            (d.page.format(), d.page.affected()),
            (2, FcId::from_parts(7, 0, 0))
        );
        assert_eq!(d.recipients, vec![id(2)]);
        assert!(t.deregister(id(2)));
        assert!(!t.deregister(id(2)));
        assert_eq!(t.recipients_all().recipients, vec![id(1), id(4)]);
    }

    #[test]
    fn area_page_excludes_ports_behind_it() {
        let mut t = table();
        t.register(FcId::from_parts(1, 1, 1), ScrFunction::Full)
            .unwrap();
        let page = RscnPage::Area {
            domain: DomainId::new(1).unwrap(),
            area: 1,
        };
        assert_eq!(page.format(), 1);
        let d = t.recipients(page, Detection::Fabric, |_| true);
        assert_eq!(d.recipients, vec![id(2), id(4)]);
    }

    #[test]
    fn codes_and_foreign_registration() {
        assert_eq!(ScrFunction::from_code(3), Some(ScrFunction::Full));
        assert_eq!(ScrFunction::from_code(0xFF), None);
        assert_eq!(RscnPage::Fabric.format(), 3);
        assert_eq!(RscnPage::Port(id(1)).format(), 0);
        let mut t = table();
        assert!(matches!(
            t.register(FcId::from_parts(2, 0, 0), ScrFunction::Full),
            Err(RscnError::ForeignPort { .. })
        ));
    }
}
