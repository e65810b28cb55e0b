//! EC2's short transitional states of volumes and attachments, as clients see them: a new
//! volume is `creating`, a new attachment `attaching` and a removed one `detaching` (its
//! volume still `in-use`) for the transition time (`--transition-time`) after the call that
//! made them, then `available`, `attached` and gone. The work itself is done when the call
//! returns: the volume's file exists, the attachment serves I/O, a detached one is fenced. The
//! states trail the work so that waiters and pollers written for AWS see the sequence they see
//! there; calls made meanwhile are not refused because of them (a script that does not wait
//! works as it did). A crash forgets the trailing `detaching` entries: they are not state.

use std::collections::HashMap;

use super::{ControlPlane, State, now_ms};
use crate::catalog::{AttachmentRecord, AttachmentState, VolumeRecord, VolumeState};

/// Attachments removed less than the transition time ago, by volume id: (attachment shown
/// `detaching`, until when in ms).
pub(super) type RecentDetaches = HashMap<String, Vec<(AttachmentRecord, u64)>>;

impl ControlPlane {
    /// The transition time in ms.
    fn transition_ms(&self) -> u64 {
        self.cfg.transition_time.as_millis() as u64
    }

    /// `v` as a client sees it now.
    pub(super) fn presented(&self, st: &State, v: &VolumeRecord) -> VolumeRecord {
        let now = now_ms();
        let t = self.transition_ms();
        let mut p = v.clone();
        if p.state == VolumeState::Available && now < v.create_time_ms.saturating_add(t) {
            p.state = VolumeState::Creating;
        }
        for a in &mut p.attachments {
            *a = self.presented_attachment(a, now);
        }
        if let Some(gone) = st.recent_detaches.get(&v.volume_id) {
            for (a, until) in gone {
                if now < *until {
                    p.attachments.push(a.clone());
                    if matches!(p.state, VolumeState::Available | VolumeState::Creating) {
                        p.state = VolumeState::InUse;
                    }
                }
            }
        }
        p
    }

    /// Attachment `a` as a client sees it at `now`: `attaching` for the transition time.
    pub(super) fn presented_attachment(&self, a: &AttachmentRecord, now: u64) -> AttachmentRecord {
        let mut p = a.clone();
        if p.state == AttachmentState::Attached
            && now < a.attach_time_ms.saturating_add(self.transition_ms())
        {
            p.state = AttachmentState::Attaching;
        }
        p
    }

    /// Shows `a`, just removed from `volume_id`, as `detaching` for the transition time;
    /// forgets the entries whose time is up. The state a DetachVolume answers.
    pub(super) fn note_detached(
        &self,
        st: &mut State,
        volume_id: &str,
        a: &AttachmentRecord,
    ) -> AttachmentState {
        let now = now_ms();
        st.recent_detaches.retain(|_, gone| {
            gone.retain(|(_, until)| now < *until);
            !gone.is_empty()
        });
        let t = self.transition_ms();
        if t == 0 {
            return AttachmentState::Detached;
        }
        let mut shown = a.clone();
        shown.state = AttachmentState::Detaching;
        st.recent_detaches
            .entry(volume_id.to_string())
            .or_default()
            .push((shown, now + t));
        AttachmentState::Detaching
    }

    /// Forgets the trailing `detaching` entries of `volume_id` (attached again, or deleted).
    pub(super) fn forget_detached(&self, st: &mut State, volume_id: &str) {
        st.recent_detaches.remove(volume_id);
    }
}
