//! The live hub: tells viewers of a session that something new was committed, and keeps the recent tail of each
//! watched session in memory so that viewers at the tail need not read the store.
//!
//! Publishing never waits: the writer pushes into a bounded tail and bumps a `watch` value. Each viewer keeps its
//! own cursor; one that fell behind the tail reads the store instead, so a slow viewer costs nobody else anything.
//! Independent of HTTP: tested without a socket. Across replicas (PostgreSQL) the hub is poked by notifications
//! from the database with no tail, and viewers read the store.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use cmdop_store::notify::{LiveChange, LiveNotice};
use cmdop_store::{AppendOutcome, TranscriptWrite};
use tokio::sync::{broadcast, mpsc, watch};
use uuid::Uuid;

/// How much recent output each watched session keeps in memory.
pub const DEFAULT_TAIL_BYTES: usize = 1024 * 1024;

/// What a viewer learns from a change notification; the details are in the tail or the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FeedState {
    /// Offset after the last committed byte (or declared gap).
    pub total_bytes: u64,
    /// Bumped when clients attach or detach.
    pub clients_version: u64,
    /// Bumped when a resize or gap is committed without new bytes (so viewers look).
    pub events_version: u64,
    /// The session has ended.
    pub ended: bool,
}

/// Committed data in order, as kept in a feed's tail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TailItem {
    Bytes { offset: u64, bytes: Arc<[u8]> },
    Gap { at_offset: u64, bytes_lost: u64 },
    Resize { offset: u64, cols: u16, rows: u16 },
}

impl TailItem {
    pub fn start(&self) -> u64 {
        match self {
            TailItem::Bytes { offset, .. } | TailItem::Resize { offset, .. } => *offset,
            TailItem::Gap { at_offset, .. } => *at_offset,
        }
    }

    fn len(&self) -> usize {
        match self {
            TailItem::Bytes { bytes, .. } => bytes.len(),
            _ => 0,
        }
    }

    pub fn end(&self) -> u64 {
        match self {
            TailItem::Bytes { offset, bytes } => offset + bytes.len() as u64,
            TailItem::Gap { at_offset, bytes_lost } => at_offset + bytes_lost,
            TailItem::Resize { offset, .. } => *offset,
        }
    }
}

#[derive(Debug, Default)]
struct Tail {
    items: VecDeque<TailItem>,
    bytes: usize,
    /// Every committed item from this offset on is in `items` (`None`: nothing contiguous yet).
    covers_from: Option<u64>,
}

impl Tail {
    /// Where the next item continues the tail.
    fn end(&self) -> Option<u64> {
        self.items.back().map(TailItem::end).or(self.covers_from)
    }
}

/// One watched session.
#[derive(Debug)]
pub struct Feed {
    state: watch::Sender<FeedState>,
    tail: Mutex<Tail>,
    tail_limit: usize,
    /// The latest `clients` event its viewers sent, as text, with the `clients_version` it is at least as new as:
    /// one store read per change for all the session's viewers, not one per viewer (a thousand viewers joining
    /// one by one were a million reads).
    clients_event: Mutex<Option<(u64, Arc<str>)>>,
}

impl Feed {
    /// The shared `clients` event if one is known for `version` or later.
    pub fn clients_event(&self, version: u64) -> Option<Arc<str>> {
        match &*self.clients_event.lock().expect("clients lock") {
            Some((v, text)) if *v >= version => Some(text.clone()),
            _ => None,
        }
    }

    /// Keeps a `clients` event read from the store after `version` was seen, unless a newer one is kept.
    pub fn keep_clients_event(&self, version: u64, text: Arc<str>) {
        let mut kept = self.clients_event.lock().expect("clients lock");
        if kept.as_ref().is_none_or(|(v, _)| *v <= version) {
            *kept = Some((version, text));
        }
    }

    pub fn subscribe(&self) -> watch::Receiver<FeedState> {
        self.state.subscribe()
    }

    /// The committed items from `cursor` on if the tail still holds all of them; `None` means "read the store".
    pub fn tail_from(&self, cursor: u64) -> Option<Vec<TailItem>> {
        let tail = self.tail.lock().expect("tail lock");
        match tail.covers_from {
            Some(from) if from <= cursor => {
                // Items are contiguous, so "not yet seen" holds from some index on: find it by bisection
                // rather than scanning the whole tail under the lock the writer needs.
                let seen = |i: &TailItem| match i {
                    TailItem::Resize { offset, .. } => *offset < cursor,
                    other => other.end() <= cursor,
                };
                let first = tail.items.partition_point(seen);
                Some(tail.items.range(first..).cloned().collect())
            }
            _ => None,
        }
    }

    fn push(&self, writes: &[TranscriptWrite], outcome: &AppendOutcome) {
        let mut tail = self.tail.lock().expect("tail lock");
        let mut only_events = true;
        for w in writes {
            let end = tail.end();
            // Resends of what the tail holds are skipped; a new item continues the tail, or (should the tail
            // not reach it) restarts it: the store remains the truth for whatever came before.
            let item = match w {
                TranscriptWrite::Output(c) => {
                    only_events = false;
                    let stop = c.offset + c.bytes.len() as u64;
                    match end {
                        Some(e) if stop <= e => continue,
                        Some(e) if c.offset <= e => {
                            TailItem::Bytes { offset: e, bytes: c.bytes[(e - c.offset) as usize..].into() }
                        }
                        _ => TailItem::Bytes { offset: c.offset, bytes: c.bytes.as_slice().into() },
                    }
                }
                TranscriptWrite::Gap { at_offset, bytes_lost } => match end {
                    Some(e) if at_offset + bytes_lost <= e => continue,
                    _ => TailItem::Gap { at_offset: *at_offset, bytes_lost: *bytes_lost },
                },
                TranscriptWrite::Resize { offset, cols, rows, .. } => match end {
                    Some(e) if *offset < e => continue,
                    _ => TailItem::Resize { offset: *offset, cols: *cols, rows: *rows },
                },
            };
            let start = item.start();
            if end != Some(start) {
                tail.items.clear();
                tail.bytes = 0;
                tail.covers_from = Some(start);
            }
            tail.bytes += item.len();
            tail.items.push_back(item);
        }
        while tail.bytes > self.tail_limit {
            let Some(front) = tail.items.pop_front() else { break };
            tail.bytes -= front.len();
            tail.covers_from = Some(front.end());
        }
        drop(tail);
        self.state.send_modify(|s| {
            s.total_bytes = s.total_bytes.max(outcome.total_bytes);
            if only_events {
                s.events_version += 1;
            }
        });
    }
}

/// Sessions being watched, by id. Feeds live while a viewer holds them.
#[derive(Debug)]
pub struct Hub {
    feeds: Mutex<HashMap<Uuid, Weak<Feed>>>,
    tail_limit: usize,
    /// Where changes go for the other replicas (PostgreSQL), with this replica's id.
    relay: OnceLock<(Uuid, mpsc::UnboundedSender<LiveNotice>)>,
    /// Sessions that started, ended or changed clients, for the sessions list (watched or not).
    changes: broadcast::Sender<Uuid>,
}

/// Session changes the list's followers may fall behind by before they are told to reload.
const CHANGES_BACKLOG: usize = 1024;

impl Default for Hub {
    fn default() -> Self {
        Hub::new(DEFAULT_TAIL_BYTES)
    }
}

impl Hub {
    pub fn new(tail_limit: usize) -> Self {
        let (changes, _) = broadcast::channel(CHANGES_BACKLOG);
        Hub { feeds: Mutex::new(HashMap::new()), tail_limit, relay: OnceLock::new(), changes }
    }

    /// From now on, changes are also told to the other replicas through `relay`.
    pub fn set_relay(&self, origin: Uuid, relay: mpsc::UnboundedSender<LiveNotice>) {
        let _ = self.relay.set((origin, relay));
    }

    fn tell_replicas(&self, session_id: Uuid, change: LiveChange) {
        if let Some((origin, relay)) = self.relay.get() {
            let _ = relay.send(LiveNotice { origin: *origin, session_id, change });
        }
    }

    /// The feed of a session, created if nobody watches it yet. `total_bytes` seeds its state.
    pub fn watch(&self, session_id: Uuid, total_bytes: u64) -> Arc<Feed> {
        let mut feeds = self.feeds.lock().expect("hub lock");
        if let Some(feed) = feeds.get(&session_id).and_then(Weak::upgrade) {
            return feed;
        }
        feeds.retain(|_, f| f.strong_count() > 0);
        let (state, _) = watch::channel(FeedState { total_bytes, ..FeedState::default() });
        let feed = Arc::new(Feed {
            state,
            tail: Mutex::new(Tail::default()),
            tail_limit: self.tail_limit,
            clients_event: Mutex::new(None),
        });
        feeds.insert(session_id, Arc::downgrade(&feed));
        feed
    }

    fn feed(&self, session_id: Uuid) -> Option<Arc<Feed>> {
        self.feeds.lock().expect("hub lock").get(&session_id).and_then(Weak::upgrade)
    }

    /// After a commit: new transcript data. Costs nothing for sessions nobody watches.
    pub fn committed(&self, session_id: Uuid, writes: &[TranscriptWrite], outcome: &AppendOutcome) {
        self.tell_replicas(session_id, LiveChange::Output { total_bytes: outcome.total_bytes });
        if let Some(feed) = self.feed(session_id) {
            feed.push(writes, outcome);
        }
    }

    /// Another replica committed up to `total_bytes` (no data: viewers read the store).
    pub fn poked(&self, session_id: Uuid, total_bytes: u64) {
        if let Some(feed) = self.feed(session_id) {
            feed.state.send_modify(|s| {
                s.total_bytes = s.total_bytes.max(total_bytes);
                s.events_version += 1;
            });
        }
    }

    pub fn clients_changed(&self, session_id: Uuid) {
        self.tell_replicas(session_id, LiveChange::ClientsChanged);
        self.remote_clients_changed(session_id);
    }

    /// The session ended. Viewers read the clients again at the end anyway: no separate clients change needed.
    pub fn ended(&self, session_id: Uuid) {
        self.tell_replicas(session_id, LiveChange::Ended);
        self.remote_ended(session_id);
    }

    /// Ids of sessions that started (a recorder attaches when one starts), ended, or whose clients changed.
    pub fn session_changes(&self) -> broadcast::Receiver<Uuid> {
        self.changes.subscribe()
    }

    /// Another replica changed the clients (local viewers only; not told back).
    pub fn remote_clients_changed(&self, session_id: Uuid) {
        let _ = self.changes.send(session_id);
        if let Some(feed) = self.feed(session_id) {
            feed.state.send_modify(|s| s.clients_version += 1);
        }
    }

    /// Another replica ended the session.
    pub fn remote_ended(&self, session_id: Uuid) {
        let _ = self.changes.send(session_id);
        if let Some(feed) = self.feed(session_id) {
            feed.state.send_modify(|s| s.ended = true);
        }
    }

    /// How many sessions are watched right now.
    pub fn watched(&self) -> usize {
        self.feeds.lock().expect("hub lock").values().filter(|f| f.strong_count() > 0).count()
    }
}

#[cfg(test)]
mod tests {
    use cmdop_store::OutputChunk;

    use super::*;

    fn out(offset: u64, bytes: &[u8]) -> TranscriptWrite {
        TranscriptWrite::Output(OutputChunk { offset, t_ms: 0, bytes: bytes.to_vec() })
    }

    fn outcome(total: u64) -> AppendOutcome {
        AppendOutcome { total_bytes: total, retained_from: 0, truncated_bytes: 0 }
    }

    fn bytes_of(items: &[TailItem]) -> Vec<u8> {
        items
            .iter()
            .flat_map(|i| match i {
                TailItem::Bytes { bytes, .. } => bytes.to_vec(),
                _ => Vec::new(),
            })
            .collect()
    }

    #[test]
    fn unwatched_sessions_cost_nothing_and_watched_ones_get_the_tail() {
        let hub = Hub::new(1024);
        let id = Uuid::now_v7();
        hub.committed(id, &[out(0, b"lost to nobody")], &outcome(14));
        let feed = hub.watch(id, 14);
        let mut rx = feed.subscribe();
        assert_eq!(feed.tail_from(14), None, "nothing is in the tail yet: read the store");
        hub.committed(id, &[out(14, b"hello "), out(20, b"world")], &outcome(25));
        assert!(rx.has_changed().unwrap());
        assert_eq!(rx.borrow_and_update().total_bytes, 25);
        assert_eq!(bytes_of(&feed.tail_from(14).unwrap()), b"hello world");
        assert_eq!(bytes_of(&feed.tail_from(20).unwrap()), b"world");
        assert_eq!(feed.tail_from(13), None, "before the tail: the store");
    }

    #[test]
    fn resends_are_not_duplicated_and_the_tail_stays_bounded() {
        let hub = Hub::new(10);
        let id = Uuid::now_v7();
        let feed = hub.watch(id, 0);
        hub.committed(id, &[out(0, b"abcdef")], &outcome(6));
        hub.committed(id, &[out(3, b"defgh")], &outcome(8));
        assert_eq!(bytes_of(&feed.tail_from(0).unwrap()), b"abcdefgh");
        hub.committed(id, &[out(8, b"ijklmnop")], &outcome(16));
        // Over 10 bytes: the oldest item went, and the tail says it no longer covers offset 0.
        assert_eq!(feed.tail_from(0), None);
        assert_eq!(bytes_of(&feed.tail_from(6).unwrap()), b"ghijklmnop");
    }

    #[test]
    fn gaps_and_resizes_keep_their_place() {
        let hub = Hub::new(1024);
        let id = Uuid::now_v7();
        let feed = hub.watch(id, 0);
        hub.committed(
            id,
            &[
                out(0, b"ab"),
                TranscriptWrite::Gap { at_offset: 2, bytes_lost: 5 },
                TranscriptWrite::Resize { offset: 7, t_ms: 1, cols: 100, rows: 30 },
                out(7, b"cd"),
            ],
            &outcome(9),
        );
        let items = feed.tail_from(2).unwrap();
        assert_eq!(items[0], TailItem::Gap { at_offset: 2, bytes_lost: 5 });
        assert_eq!(items[1], TailItem::Resize { offset: 7, cols: 100, rows: 30 });
        assert_eq!(bytes_of(&items), b"cd");
    }

    #[test]
    fn list_followers_hear_of_starts_ends_and_clients_of_any_session() {
        let hub = Hub::default();
        let mut changes = hub.session_changes();
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        hub.clients_changed(a);
        hub.committed(b, &[out(0, b"output is not a list change")], &outcome(27));
        hub.ended(b);
        hub.remote_clients_changed(b);
        let heard: Vec<Uuid> = std::iter::from_fn(|| changes.try_recv().ok()).collect();
        assert_eq!(heard, vec![a, b, b]);
    }

    #[test]
    fn a_shared_clients_event_serves_its_version_and_older_ones_only() {
        let hub = Hub::default();
        let feed = hub.watch(Uuid::now_v7(), 0);
        assert_eq!(feed.clients_event(0), None, "nobody has read the clients yet");
        feed.keep_clients_event(2, "two".into());
        assert_eq!(feed.clients_event(1).as_deref(), Some("two"), "read after version 1 was seen");
        assert_eq!(feed.clients_event(2).as_deref(), Some("two"));
        assert_eq!(feed.clients_event(3), None, "a newer change needs a new read");
        // A slow reader of an older version does not replace a newer list.
        feed.keep_clients_event(1, "one".into());
        assert_eq!(feed.clients_event(2).as_deref(), Some("two"));
        feed.keep_clients_event(3, "three".into());
        assert_eq!(feed.clients_event(3).as_deref(), Some("three"));
    }

    #[test]
    fn feeds_go_away_with_their_viewers() {
        let hub = Hub::default();
        let id = Uuid::now_v7();
        let feed = hub.watch(id, 0);
        assert_eq!(hub.watched(), 1);
        assert!(Arc::ptr_eq(&feed, &hub.watch(id, 0)));
        drop(feed);
        assert_eq!(hub.watched(), 0);
    }
}
