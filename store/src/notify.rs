//! Change notices between server replicas on one PostgreSQL database (LISTEN/NOTIFY on channel `cmdop_live`):
//! a replica that commits output, attaches a client or ends a session says so, and the others wake their live
//! viewers, who then read the store. SQLite has one server process by construction and needs none of it.

use uuid::Uuid;

/// The NOTIFY channel.
pub const LIVE_CHANNEL: &str = "cmdop_live";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LiveChange {
    /// The transcript now ends at this offset.
    Output {
        total_bytes: u64,
    },
    ClientsChanged,
    Ended,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LiveNotice {
    /// The replica that made the change (each store has its own id), so that one's own notices can be skipped.
    pub origin: Uuid,
    pub session_id: Uuid,
    pub change: LiveChange,
}

impl LiveNotice {
    pub fn encode(&self) -> String {
        let (tag, n) = match self.change {
            LiveChange::Output { total_bytes } => ("o", total_bytes),
            LiveChange::ClientsChanged => ("c", 0),
            LiveChange::Ended => ("e", 0),
        };
        format!("{} {} {tag} {n}", self.origin.simple(), self.session_id.simple())
    }

    pub fn decode(payload: &str) -> Option<Self> {
        let mut parts = payload.split(' ');
        let origin = Uuid::parse_str(parts.next()?).ok()?;
        let session_id = Uuid::parse_str(parts.next()?).ok()?;
        let change = match (parts.next()?, parts.next()?.parse::<u64>().ok()?) {
            ("o", total_bytes) => LiveChange::Output { total_bytes },
            ("c", _) => LiveChange::ClientsChanged,
            ("e", _) => LiveChange::Ended,
            _ => return None,
        };
        Some(LiveNotice { origin, session_id, change })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices_round_trip_and_garbage_is_ignored() {
        for change in [LiveChange::Output { total_bytes: 1 << 33 }, LiveChange::ClientsChanged, LiveChange::Ended] {
            let n = LiveNotice { origin: Uuid::now_v7(), session_id: Uuid::now_v7(), change };
            assert_eq!(LiveNotice::decode(&n.encode()), Some(n));
        }
        assert_eq!(LiveNotice::decode("hello"), None);
        assert_eq!(LiveNotice::decode(""), None);
    }
}
