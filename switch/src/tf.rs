//! The function table TF (seed 003 §3.4, Figs. 13(a), 19(c)(d)): one row per external
//! array with a can/cannot per support function, where the row came from and when.
//!
//! Rows are learned from the array's VPD pages (8Fh: it is a third-party copy manager;
//! C0h: the copy functions it runs), set by hand (an override beats discovery), or fetched
//! from a peer switch (table acquisition, §3.7). A function absent from a row is "cannot"
//! (the list-only form of para. 0017). The offload decision reads only [`FunctionTable::can`].

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use fcsim_devices::copysvc::PairMode;
use fcsim_fabric::{Wwnn, Wwpn};
use serde::{Deserialize, Serialize};

/// A support function the switch may delegate, and the array function names that
/// must all be present in the array's row for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SupportFunction {
    /// Direct backup: EXTENDED COPY block → stream, array to tape (Figs. 12–14).
    DirectBackup,
    /// Logical volume copy: EXTENDED COPY block → block (Figs. 18–21, claim 9).
    VolumeCopy,
    /// Mirroring two virtual LUs (embodiment 3, Fig. 22).
    Mirroring,
    /// Copy pairs (DESIGN.md §7): a local pair of two LUs of the array,
    LocalPair,
    /// a synchronous remote pair from an LU of the array,
    RemoteSync,
    /// an asynchronous remote pair from an LU of the array.
    RemoteAsync,
}

impl SupportFunction {
    pub const ALL: [SupportFunction; 6] = [
        SupportFunction::DirectBackup,
        SupportFunction::VolumeCopy,
        SupportFunction::Mirroring,
        SupportFunction::LocalPair,
        SupportFunction::RemoteSync,
        SupportFunction::RemoteAsync,
    ];

    /// The array functions (VPD C0h names) the array must advertise. Support functions
    /// are delegated as EXTENDED COPY, so they need `xcopy`; pairs are created in band
    /// with the copy services' own command.
    pub fn requires(self) -> &'static [&'static str] {
        match self {
            SupportFunction::DirectBackup => &["xcopy", "direct-backup"],
            SupportFunction::VolumeCopy => &["xcopy"],
            SupportFunction::Mirroring => &["xcopy", "local-pair"],
            SupportFunction::LocalPair => &["local-pair"],
            SupportFunction::RemoteSync => &["remote-sync"],
            SupportFunction::RemoteAsync => &["remote-async"],
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            SupportFunction::DirectBackup => "direct-backup",
            SupportFunction::VolumeCopy => "volume-copy",
            SupportFunction::Mirroring => "mirroring",
            SupportFunction::LocalPair => "local-pair",
            SupportFunction::RemoteSync => "remote-sync",
            SupportFunction::RemoteAsync => "remote-async",
        }
    }

    /// The function a pair of `mode` needs.
    pub fn pair(mode: PairMode) -> SupportFunction {
        match mode {
            PairMode::Local => SupportFunction::LocalPair,
            PairMode::Sync => SupportFunction::RemoteSync,
            PairMode::Async | PairMode::Relay => SupportFunction::RemoteAsync,
        }
    }
}

impl fmt::Display for SupportFunction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Where a row (or a cell) came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Provenance {
    /// Read from the array (INQUIRY VPD 8Fh/C0h).
    Discovered,
    /// Marked cannot because the array rejected a delegated command.
    Rejected,
    /// Set by an operator.
    Manual,
    /// Fetched from the named peer switch.
    Peer(String),
}

impl fmt::Display for Provenance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Provenance::Discovered => f.write_str("discovered"),
            Provenance::Rejected => f.write_str("rejected"),
            Provenance::Manual => f.write_str("manual"),
            Provenance::Peer(p) => write!(f, "peer:{p}"),
        }
    }
}

/// One array's row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionRow {
    /// Device ID: the array's name (or its WWNN when it is not known by name).
    pub device: String,
    /// The array's WWNN.
    pub wwnn: Wwnn,
    /// The array port the switch reaches it through.
    pub port: Wwpn,
    /// Array function names (VPD C0h) it advertised; absent = cannot.
    pub functions: Vec<String>,
    /// Where the row came from.
    pub provenance: Provenance,
    /// Fabric time it was learned.
    pub learned_at: Duration,
}

/// A manual override of one cell.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Override {
    pub can: bool,
    pub set_at: Duration,
}

/// The function table of one switch.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct FunctionTable {
    rows: BTreeMap<String, FunctionRow>,
    overrides: BTreeMap<(String, SupportFunction), Override>,
}

impl FunctionTable {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn rows(&self) -> &BTreeMap<String, FunctionRow> {
        &self.rows
    }

    pub fn row(&self, device: &str) -> Option<&FunctionRow> {
        self.rows.get(device)
    }

    /// Records what the array advertised (replaces the row; overrides stay).
    pub fn learn(&mut self, row: FunctionRow) {
        self.rows.insert(row.device.clone(), row);
    }

    /// The array rejected a delegated `f`: every array function it needs is struck from
    /// the row until the array is probed again.
    pub fn rejected(&mut self, device: &str, f: SupportFunction, now: Duration) {
        if let Some(r) = self.rows.get_mut(device) {
            r.functions.retain(|x| !f.requires().contains(&x.as_str()));
            r.provenance = Provenance::Rejected;
            r.learned_at = now;
        }
    }

    /// Sets (or with `None` clears) an operator's override of one cell.
    pub fn set_override(
        &mut self,
        device: &str,
        f: SupportFunction,
        can: Option<bool>,
        now: Duration,
    ) {
        let key = (device.to_string(), f);
        match can {
            Some(can) => {
                self.overrides.insert(key, Override { can, set_at: now });
            }
            None => {
                self.overrides.remove(&key);
            }
        }
    }

    /// Whether `device` can run `f`: the override if there is one, else whether its row
    /// lists every array function `f` needs. No row: cannot.
    pub fn can(&self, device: &str, f: SupportFunction) -> bool {
        if let Some(o) = self.overrides.get(&(device.to_string(), f)) {
            return o.can;
        }
        self.rows.get(device).is_some_and(|r| {
            f.requires()
                .iter()
                .all(|n| r.functions.iter().any(|x| x == n))
        })
    }

    /// The provenance and age of the cell `can` reads.
    pub fn source(&self, device: &str, f: SupportFunction) -> Option<(Provenance, Duration)> {
        if let Some(o) = self.overrides.get(&(device.to_string(), f)) {
            return Some((Provenance::Manual, o.set_at));
        }
        self.rows
            .get(device)
            .map(|r| (r.provenance.clone(), r.learned_at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(functions: &[&str]) -> FunctionRow {
        FunctionRow {
            device: "arr1".into(),
            wwnn: Wwnn::default(),
            port: Wwpn::default(),
            functions: functions.iter().map(|s| s.to_string()).collect(),
            provenance: Provenance::Discovered,
            learned_at: Duration::from_millis(3),
        }
    }

    #[test]
    fn absence_means_cannot_and_overrides_win() {
        let mut tf = FunctionTable::new();
        assert!(!tf.can("arr1", SupportFunction::VolumeCopy));
        tf.learn(row(&["xcopy"]));
        assert!(tf.can("arr1", SupportFunction::VolumeCopy));
        assert!(!tf.can("arr1", SupportFunction::DirectBackup));
        tf.set_override(
            "arr1",
            SupportFunction::DirectBackup,
            Some(true),
            Duration::ZERO,
        );
        assert!(tf.can("arr1", SupportFunction::DirectBackup));
        assert_eq!(
            tf.source("arr1", SupportFunction::DirectBackup).unwrap().0,
            Provenance::Manual
        );
        tf.set_override("arr1", SupportFunction::DirectBackup, None, Duration::ZERO);
        assert!(!tf.can("arr1", SupportFunction::DirectBackup));
    }

    #[test]
    fn a_rejection_strikes_the_functions_until_relearned() {
        let mut tf = FunctionTable::new();
        tf.learn(row(&["xcopy", "direct-backup"]));
        assert!(tf.can("arr1", SupportFunction::DirectBackup));
        tf.rejected(
            "arr1",
            SupportFunction::DirectBackup,
            Duration::from_secs(1),
        );
        assert!(!tf.can("arr1", SupportFunction::DirectBackup));
        assert!(!tf.can("arr1", SupportFunction::VolumeCopy));
        assert_eq!(tf.row("arr1").unwrap().provenance, Provenance::Rejected);
        tf.learn(row(&["xcopy", "direct-backup"]));
        assert!(tf.can("arr1", SupportFunction::DirectBackup));
    }
}
