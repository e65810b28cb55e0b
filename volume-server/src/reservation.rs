//! NVMe-style reservations on Multi-Attach io2 volumes (`EBS-REFERENCE.md` §4.1): registrations
//! per host (attached instance), the six reservation types, and who may read and write.
//!
//! # Design
//! The state is a plain record ([`ReservationRecord`]), persisted in the volume's catalog
//! record. While the volume is open, it also sits behind an async `RwLock` on the data path:
//! every I/O of the volume holds a read guard from its access check to its completion, and every
//! reservation change takes the write guard. A change therefore returns only after every I/O
//! checked against the old state has finished, and every later I/O is checked against the new
//! state. That is what makes preempt-and-abort a fence: when it returns, nothing the preempted
//! host sent before can still land, and nothing it sends after passes the check. (Plain preempt
//! gets the same drain; NVMe allows but does not require it.)

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The NVMe reservation types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReservationType {
    /// Only the holder writes; everyone reads.
    WriteExclusive,
    /// Only the holder reads or writes.
    ExclusiveAccess,
    /// Registrants write; everyone reads.
    WriteExclusiveRegistrantsOnly,
    /// Only registrants read or write.
    ExclusiveAccessRegistrantsOnly,
    /// Every registrant is a holder; everyone reads.
    WriteExclusiveAllRegistrants,
    /// Every registrant is a holder; only registrants read or write.
    ExclusiveAccessAllRegistrants,
}

impl ReservationType {
    /// From the NVMe number (1..=6).
    pub fn from_nvme(n: i32) -> Option<ReservationType> {
        Some(match n {
            1 => ReservationType::WriteExclusive,
            2 => ReservationType::ExclusiveAccess,
            3 => ReservationType::WriteExclusiveRegistrantsOnly,
            4 => ReservationType::ExclusiveAccessRegistrantsOnly,
            5 => ReservationType::WriteExclusiveAllRegistrants,
            6 => ReservationType::ExclusiveAccessAllRegistrants,
            _ => return None,
        })
    }

    /// The NVMe number.
    pub fn nvme(self) -> i32 {
        match self {
            ReservationType::WriteExclusive => 1,
            ReservationType::ExclusiveAccess => 2,
            ReservationType::WriteExclusiveRegistrantsOnly => 3,
            ReservationType::ExclusiveAccessRegistrantsOnly => 4,
            ReservationType::WriteExclusiveAllRegistrants => 5,
            ReservationType::ExclusiveAccessAllRegistrants => 6,
        }
    }

    fn all_registrants(self) -> bool {
        matches!(
            self,
            ReservationType::WriteExclusiveAllRegistrants
                | ReservationType::ExclusiveAccessAllRegistrants
        )
    }

    fn exclusive_access(self) -> bool {
        matches!(
            self,
            ReservationType::ExclusiveAccess
                | ReservationType::ExclusiveAccessRegistrantsOnly
                | ReservationType::ExclusiveAccessAllRegistrants
        )
    }
}

/// Why a reservation command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReservationError {
    /// NVMe "Reservation Conflict": wrong key, or someone else holds it.
    #[error("Reservation conflict: {0}")]
    Conflict(String),
    /// A malformed command (e.g. releasing with the wrong type).
    #[error("{0}")]
    Invalid(String),
}

/// The reservation state of one volume.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReservationRecord {
    /// NVMe PRGEN: bumped by register, unregister, replace, preempt and clear.
    pub generation: u32,
    /// Registered hosts and their keys.
    pub registrants: BTreeMap<String, u64>,
    /// The holder (for the all-registrants types: the host that acquired it).
    pub holder: Option<String>,
    /// The reservation type, when one is held.
    pub rtype: Option<ReservationType>,
}

fn conflict(msg: impl Into<String>) -> ReservationError {
    ReservationError::Conflict(msg.into())
}

impl ReservationRecord {
    /// Whether `host` holds the reservation.
    pub fn is_holder(&self, host: &str) -> bool {
        match self.rtype {
            Some(t) if t.all_registrants() => self.registrants.contains_key(host),
            Some(_) => self.holder.as_deref() == Some(host),
            None => false,
        }
    }

    /// Whether `host` may read (`write == false`) or write.
    pub fn allows(&self, host: &str, write: bool) -> bool {
        let Some(t) = self.rtype else { return true };
        if self.is_holder(host) {
            return true;
        }
        let registered = self.registrants.contains_key(host);
        match t {
            ReservationType::WriteExclusive => !write,
            ReservationType::ExclusiveAccess => false,
            _ if registered => true,
            _ => !write && !t.exclusive_access(),
        }
    }

    fn check_key(&self, host: &str, key: u64) -> Result<(), ReservationError> {
        match self.registrants.get(host) {
            Some(k) if *k == key => Ok(()),
            Some(_) => Err(conflict(format!(
                "{host} is registered with a different key"
            ))),
            None => Err(conflict(format!("{host} is not registered"))),
        }
    }

    fn release_reservation(&mut self) {
        self.holder = None;
        self.rtype = None;
    }

    /// Register (`key` is the new key), unregister or replace (`key` is the current key).
    pub fn register(
        &mut self,
        host: &str,
        action: &str,
        key: u64,
        new_key: u64,
    ) -> Result<(), ReservationError> {
        match action {
            "register" | "" => match self.registrants.get(host) {
                Some(k) if *k == key => Ok(()),
                Some(_) => Err(conflict(format!(
                    "{host} is already registered with another key"
                ))),
                None => {
                    self.registrants.insert(host.to_string(), key);
                    self.generation = self.generation.wrapping_add(1);
                    Ok(())
                }
            },
            "unregister" => {
                self.check_key(host, key)?;
                self.remove_host(host);
                Ok(())
            }
            "replace" => {
                self.check_key(host, key)?;
                self.registrants.insert(host.to_string(), new_key);
                self.generation = self.generation.wrapping_add(1);
                Ok(())
            }
            other => Err(ReservationError::Invalid(format!(
                "Unknown register action '{other}' (register, unregister, replace)"
            ))),
        }
    }

    /// Drops `host`'s registration (unregister, or its attachment went away).
    pub fn remove_host(&mut self, host: &str) {
        if self.registrants.remove(host).is_none() {
            return;
        }
        self.generation = self.generation.wrapping_add(1);
        match self.rtype {
            Some(t) if t.all_registrants() => {
                if self.registrants.is_empty() {
                    self.release_reservation();
                } else if self.holder.as_deref() == Some(host) {
                    self.holder = self.registrants.keys().next().cloned();
                }
            }
            Some(_) if self.holder.as_deref() == Some(host) => self.release_reservation(),
            _ => {}
        }
    }

    /// Acquire, preempt or preempt-and-abort. Returns the hosts whose registrations were removed.
    pub fn acquire(
        &mut self,
        host: &str,
        key: u64,
        rtype: ReservationType,
        action: &str,
        preempt_key: u64,
    ) -> Result<Vec<String>, ReservationError> {
        self.check_key(host, key)?;
        match action {
            "acquire" | "" => match self.rtype {
                None => {
                    self.holder = Some(host.to_string());
                    self.rtype = Some(rtype);
                    Ok(vec![])
                }
                Some(t) if t == rtype && self.is_holder(host) => Ok(vec![]),
                Some(_) => Err(conflict(
                    "the reservation is held by another host or with another type",
                )),
            },
            "preempt" | "preempt-abort" => {
                let holder_key = self
                    .holder
                    .as_ref()
                    .and_then(|h| self.registrants.get(h))
                    .copied();
                let all = self.rtype.is_some_and(ReservationType::all_registrants);
                let victims: Vec<String> = self
                    .registrants
                    .iter()
                    .filter(|(h, k)| {
                        h.as_str() != host && (**k == preempt_key || (all && preempt_key == 0))
                    })
                    .map(|(h, _)| h.clone())
                    .collect();
                let takes_over = self.rtype.is_none() && victims.is_empty()
                    || all && preempt_key == 0
                    || holder_key == Some(preempt_key);
                if victims.is_empty() && !takes_over {
                    return Err(conflict(format!(
                        "no registration has key {preempt_key:#x}"
                    )));
                }
                for v in &victims {
                    self.registrants.remove(v);
                }
                if takes_over {
                    self.holder = Some(host.to_string());
                    self.rtype = Some(rtype);
                }
                self.generation = self.generation.wrapping_add(1);
                Ok(victims)
            }
            other => Err(ReservationError::Invalid(format!(
                "Unknown acquire action '{other}' (acquire, preempt, preempt-abort)"
            ))),
        }
    }

    /// Release (by the holder, with the held type) or clear (everything).
    pub fn release(
        &mut self,
        host: &str,
        key: u64,
        rtype: Option<ReservationType>,
        clear: bool,
    ) -> Result<(), ReservationError> {
        self.check_key(host, key)?;
        if clear {
            self.registrants.clear();
            self.release_reservation();
            self.generation = self.generation.wrapping_add(1);
            return Ok(());
        }
        if !self.is_holder(host) {
            // NVMe: a release by a non-holder succeeds and changes nothing.
            return Ok(());
        }
        if rtype != self.rtype {
            return Err(ReservationError::Invalid(
                "the type does not match the reservation held".into(),
            ));
        }
        self.release_reservation();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::ReservationType as T;
    use super::*;

    fn with(regs: &[(&str, u64)]) -> ReservationRecord {
        let mut r = ReservationRecord::default();
        for (h, k) in regs {
            r.register(h, "register", *k, 0).unwrap();
        }
        r
    }

    #[test]
    fn access_per_type() {
        // (type, holder rw, registrant read/write, non-registrant read/write)
        let table = [
            (T::WriteExclusive, (true, false), (true, false)),
            (T::ExclusiveAccess, (false, false), (false, false)),
            (
                T::WriteExclusiveRegistrantsOnly,
                (true, true),
                (true, false),
            ),
            (
                T::ExclusiveAccessRegistrantsOnly,
                (true, true),
                (false, false),
            ),
            (T::WriteExclusiveAllRegistrants, (true, true), (true, false)),
            (
                T::ExclusiveAccessAllRegistrants,
                (true, true),
                (false, false),
            ),
        ];
        for (t, registrant, outsider) in table {
            let mut r = with(&[("a", 1), ("b", 2)]);
            r.acquire("a", 1, t, "acquire", 0).unwrap();
            assert!(r.allows("a", true) && r.allows("a", false), "{t:?} holder");
            assert_eq!(
                (r.allows("b", false), r.allows("b", true)),
                registrant,
                "{t:?} registrant"
            );
            assert_eq!(
                (r.allows("c", false), r.allows("c", true)),
                outsider,
                "{t:?} outsider"
            );
        }
        assert!(
            ReservationRecord::default().allows("anyone", true),
            "no reservation: open"
        );
    }

    #[test]
    fn keys_and_conflicts() {
        let mut r = with(&[("a", 1), ("b", 2)]);
        assert!(matches!(
            r.register("a", "register", 9, 0),
            Err(ReservationError::Conflict(_))
        ));
        r.register("a", "register", 1, 0).unwrap(); // same key: idempotent
        assert!(matches!(
            r.acquire("a", 7, T::WriteExclusive, "acquire", 0),
            Err(ReservationError::Conflict(_))
        ));
        assert!(matches!(
            r.acquire("c", 1, T::WriteExclusive, "acquire", 0),
            Err(ReservationError::Conflict(_))
        ));
        r.acquire("a", 1, T::WriteExclusive, "acquire", 0).unwrap();
        assert!(matches!(
            r.acquire("b", 2, T::WriteExclusive, "acquire", 0),
            Err(ReservationError::Conflict(_))
        ));
        assert!(matches!(
            r.release("a", 1, Some(T::ExclusiveAccess), false),
            Err(ReservationError::Invalid(_))
        ));
        r.release("b", 2, Some(T::WriteExclusive), false).unwrap(); // non-holder: no effect
        assert!(r.is_holder("a"));
        r.register("a", "replace", 1, 11).unwrap();
        assert!(matches!(
            r.release("a", 1, Some(T::WriteExclusive), false),
            Err(ReservationError::Conflict(_))
        ));
        r.release("a", 11, Some(T::WriteExclusive), false).unwrap();
        assert_eq!(r.rtype, None);
    }

    #[test]
    fn preempt_takes_over_and_unregisters() {
        let mut r = with(&[("a", 1), ("b", 2)]);
        r.acquire("a", 1, T::ExclusiveAccess, "acquire", 0).unwrap();
        let before = r.generation;
        let victims = r
            .acquire("b", 2, T::WriteExclusive, "preempt-abort", 1)
            .unwrap();
        assert_eq!(victims, vec!["a".to_string()]);
        assert!(r.is_holder("b"));
        assert_eq!(r.rtype, Some(T::WriteExclusive));
        assert!(!r.registrants.contains_key("a"));
        assert!(!r.allows("a", true) && r.allows("a", false));
        assert!(r.generation > before);
        assert!(matches!(
            r.acquire("b", 2, T::WriteExclusive, "preempt", 99),
            Err(ReservationError::Conflict(_))
        ));
    }

    #[test]
    fn unregistering_the_holder_releases_and_clear_resets() {
        let mut r = with(&[("a", 1), ("b", 2)]);
        r.acquire("a", 1, T::WriteExclusive, "acquire", 0).unwrap();
        r.register("a", "unregister", 1, 0).unwrap();
        assert_eq!((r.rtype, r.holder.clone()), (None, None));
        let mut r = with(&[("a", 1), ("b", 2)]);
        r.acquire("a", 1, T::WriteExclusiveAllRegistrants, "acquire", 0)
            .unwrap();
        assert!(r.is_holder("b"), "all registrants hold");
        r.remove_host("a");
        assert_eq!(
            r.rtype,
            Some(T::WriteExclusiveAllRegistrants),
            "AR survives while registrants remain"
        );
        r.release("b", 2, None, true).unwrap();
        assert!(r.registrants.is_empty() && r.rtype.is_none());
    }
}
