//! A stream's server-sent events for its viewers (the WHEP extension,
//! draft-ietf-wish-whep §4.9.1 and the events draft): `active` when a source goes live,
//! `inactive` when it leaves, `layers` with its simulcast layers, `viewercount`, and
//! `reconnect` when the server goes away.
//!
//! Each stream keeps a broadcast of its events and the latest state, so an event
//! stream opened later starts with what is true now (a live source, its layers, the
//! viewer count) before what happens next. A viewer's subscriptions belong to its
//! session and end with it ([`Subscriptions`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::{broadcast, watch};

use crate::core::LayerInfo;
use crate::model::SessionId;

/// The event types wishd sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// A source is live (`{}`).
    Active,
    /// The source left (`{}`); never the first event of a stream that had none.
    Inactive,
    /// The video's layers (`{"<m-line>": [{rid, bitrate, width, height}, …]}`).
    Layers,
    /// Viewers of the stream (`{"viewercount": n}`).
    Viewercount,
    /// The server is going away; connect again (`{}` or `{"url": …}`).
    Reconnect,
}

impl EventKind {
    /// Every type, as the 201's `events` attribute lists them.
    pub const ALL: [EventKind; 5] = [
        EventKind::Active,
        EventKind::Inactive,
        EventKind::Layers,
        EventKind::Reconnect,
        EventKind::Viewercount,
    ];

    /// The name on the wire.
    pub fn name(self) -> &'static str {
        match self {
            EventKind::Active => "active",
            EventKind::Inactive => "inactive",
            EventKind::Layers => "layers",
            EventKind::Viewercount => "viewercount",
            EventKind::Reconnect => "reconnect",
        }
    }

    /// The type named `name`, if wishd sends it.
    pub fn parse(name: &str) -> Option<EventKind> {
        EventKind::ALL.into_iter().find(|k| k.name() == name)
    }
}

/// What an event says; `layers` is written per viewer (its video's m-line names it).
#[derive(Debug, Clone)]
pub(crate) enum EventData {
    /// `{}`.
    Empty,
    /// A JSON object, written once for every viewer.
    Json(Arc<str>),
    /// The video's layers, best first.
    Layers(Arc<[LayerInfo]>),
}

/// One event of a stream.
#[derive(Debug, Clone)]
pub(crate) struct Event {
    pub(crate) kind: EventKind,
    pub(crate) data: EventData,
}

impl Event {
    /// The event as one SSE message (`event:` and exactly one `data:` line), for a
    /// viewer whose video is on m-line `media_id`.
    pub(crate) fn to_sse(&self, media_id: &str) -> String {
        let data = match &self.data {
            EventData::Empty => "{}".to_owned(),
            EventData::Json(j) => j.to_string(),
            EventData::Layers(layers) => layers_json(media_id, layers),
        };
        format!("event: {}\ndata: {data}\n\n", self.kind.name())
    }
}

/// `{"<media_id>": [layer, …]}`: each layer with its rid (a source without simulcast
/// has one, `spatialLayerId` 0), its bit rate and its picture size when known.
fn layers_json(media_id: &str, layers: &[LayerInfo]) -> String {
    let list: Vec<serde_json::Value> = layers
        .iter()
        .map(|l| {
            let mut o = serde_json::Map::new();
            match &l.rid {
                Some(rid) => o.insert("rid".into(), rid.as_ref().into()),
                None => o.insert("spatialLayerId".into(), 0.into()),
            };
            o.insert("bitrate".into(), l.bitrate.into());
            if let Some((w, h)) = l.size {
                o.insert("width".into(), w.into());
                o.insert("height".into(), h.into());
            }
            serde_json::Value::Object(o)
        })
        .collect();
    serde_json::json!({ media_id: list }).to_string()
}

/// What a new event stream is told first.
#[derive(Debug, Default)]
struct State {
    live: bool,
    layers: Option<Arc<[LayerInfo]>>,
    layers_sent: Option<Instant>,
    viewers: Option<usize>,
}

/// Layers are sent again at least this often while they change only a little.
const LAYERS_EVERY: Duration = Duration::from_secs(5);

/// A layer's bit rate is news when it moved by more than this share.
const BITRATE_NEWS: f64 = 0.2;

/// Whether `new` says something `old` did not: another set of layers, another state
/// or picture size, or a bit rate that moved by more than [`BITRATE_NEWS`].
fn layers_changed(old: &[LayerInfo], new: &[LayerInfo]) -> bool {
    old.len() != new.len()
        || old.iter().zip(new).any(|(a, b)| {
            a.index != b.index
                || a.rid != b.rid
                || a.size != b.size
                || a.active != b.active
                || (a.bitrate as f64 - b.bitrate as f64).abs()
                    > BITRATE_NEWS * a.bitrate.max(1) as f64
        })
}

/// The events of one stream.
#[derive(Debug)]
pub(crate) struct StreamEvents {
    tx: broadcast::Sender<Event>,
    state: Mutex<State>,
}

impl Default for StreamEvents {
    fn default() -> Self {
        // Enough for a burst of changes; a viewer that lags is sent the state again.
        let (tx, _) = broadcast::channel(32);
        StreamEvents {
            tx,
            state: Mutex::new(State::default()),
        }
    }
}

impl StreamEvents {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn send(&self, kind: EventKind, data: EventData) {
        // No receiver is no error: nobody listens yet.
        let _ = self.tx.send(Event { kind, data });
    }

    /// Whether the source is live (as last set by [`StreamEvents::set_live`]).
    pub(crate) fn live(&self) -> bool {
        self.state().live
    }

    /// The source went live (true) or left (false); only changes are sent.
    pub(crate) fn set_live(&self, live: bool) {
        let mut s = self.state();
        if s.live == live {
            return;
        }
        s.live = live;
        if !live {
            s.layers = None;
            s.layers_sent = None;
        }
        drop(s);
        let kind = if live {
            EventKind::Active
        } else {
            EventKind::Inactive
        };
        self.send(kind, EventData::Empty);
    }

    /// The video's layers at `now` (best first); sent when they changed enough
    /// ([`layers_changed`]) or [`LAYERS_EVERY`] after the last.
    pub(crate) fn set_layers(&self, layers: Vec<LayerInfo>, now: Instant) {
        let mut s = self.state();
        let due = s
            .layers_sent
            .is_none_or(|t| now.saturating_duration_since(t) >= LAYERS_EVERY);
        if !due
            && s.layers
                .as_deref()
                .is_some_and(|old| !layers_changed(old, &layers))
        {
            return;
        }
        let layers: Arc<[LayerInfo]> = Arc::from(layers);
        s.layers = Some(layers.clone());
        s.layers_sent = Some(now);
        drop(s);
        self.send(EventKind::Layers, EventData::Layers(layers));
    }

    /// The stream's viewer count, as last set.
    pub(crate) fn viewers(&self) -> usize {
        self.state().viewers.unwrap_or(0)
    }

    /// The stream's viewer count; sent when it changed.
    pub(crate) fn set_viewers(&self, n: usize) {
        let mut s = self.state();
        if s.viewers == Some(n) {
            return;
        }
        s.viewers = Some(n);
        drop(s);
        let json = format!("{{\"viewercount\":{n}}}");
        self.send(EventKind::Viewercount, EventData::Json(Arc::from(json)));
    }

    /// Tells every viewer to connect again (the server is shutting down).
    pub(crate) fn reconnect(&self) {
        self.send(EventKind::Reconnect, EventData::Empty);
    }

    /// A receiver of what happens from now on, and the events that describe the
    /// stream now (sent first, so a stream opened late knows where things stand).
    pub(crate) fn subscribe(&self) -> (broadcast::Receiver<Event>, Vec<Event>) {
        let s = self.state();
        let rx = self.tx.subscribe();
        let mut now = Vec::new();
        if s.live {
            now.push(Event {
                kind: EventKind::Active,
                data: EventData::Empty,
            });
        }
        if let Some(layers) = &s.layers {
            now.push(Event {
                kind: EventKind::Layers,
                data: EventData::Layers(layers.clone()),
            });
        }
        if let Some(n) = s.viewers {
            now.push(Event {
                kind: EventKind::Viewercount,
                data: EventData::Json(Arc::from(format!("{{\"viewercount\":{n}}}"))),
            });
        }
        (rx, now)
    }
}

/// One event stream a viewer opened.
#[derive(Debug)]
struct Subscription {
    session: SessionId,
    kinds: Vec<EventKind>,
    /// Set to true when the stream is deleted or its session ends.
    closed: watch::Sender<bool>,
}

/// What an open event stream needs: which types, and when to stop.
#[derive(Debug)]
pub(crate) struct Listening {
    pub(crate) kinds: Vec<EventKind>,
    pub(crate) closed: watch::Receiver<bool>,
}

/// Every viewer's event streams, by their random ids.
#[derive(Debug, Default)]
pub(crate) struct Subscriptions {
    by_id: Mutex<HashMap<u128, Subscription>>,
}

impl Subscriptions {
    fn lock(&self) -> MutexGuard<'_, HashMap<u128, Subscription>> {
        self.by_id.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new event stream of `session` for `kinds`; its id goes in the stream's URL.
    pub(crate) fn add(&self, session: SessionId, kinds: Vec<EventKind>) -> u128 {
        let id = rand::random::<u128>();
        let (closed, _) = watch::channel(false);
        self.lock().insert(
            id,
            Subscription {
                session,
                kinds,
                closed,
            },
        );
        id
    }

    /// The event stream `id` of `session`, if it exists.
    pub(crate) fn listen(&self, session: SessionId, id: u128) -> Option<Listening> {
        let map = self.lock();
        let s = map.get(&id).filter(|s| s.session == session)?;
        Some(Listening {
            kinds: s.kinds.clone(),
            closed: s.closed.subscribe(),
        })
    }

    /// Deletes one event stream (its open GET ends); false if it did not exist.
    pub(crate) fn remove(&self, session: SessionId, id: u128) -> bool {
        let mut map = self.lock();
        if map.get(&id).is_none_or(|s| s.session != session) {
            return false;
        }
        if let Some(s) = map.remove(&id) {
            let _ = s.closed.send(true);
        }
        true
    }

    /// Deletes every event stream of a session that ended.
    pub(crate) fn end_session(&self, session: SessionId) {
        self.lock().retain(|_, s| {
            if s.session == session {
                let _ = s.closed.send(true);
                false
            } else {
                true
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(rid: &str, bitrate: u64, size: Option<(u32, u32)>) -> LayerInfo {
        LayerInfo {
            index: 0,
            rid: Some(Arc::from(rid)),
            bitrate,
            size,
            active: true,
        }
    }

    #[test]
    fn each_event_is_one_event_line_and_one_data_line_of_strict_json() {
        let e = Event {
            kind: EventKind::Layers,
            data: EventData::Layers(Arc::from(vec![
                layer("f", 2_000_000, Some((1280, 720))),
                layer("q", 150_000, None),
            ])),
        };
        let sse = e.to_sse("1");
        let lines: Vec<&str> = sse.lines().collect();
        assert_eq!(lines.len(), 3, "{sse}");
        assert_eq!(lines[0], "event: layers");
        let data: serde_json::Value =
            serde_json::from_str(lines[1].strip_prefix("data: ").unwrap()).unwrap();
        assert_eq!(data["1"][0]["rid"], "f");
        assert_eq!(data["1"][0]["width"], 1280);
        assert_eq!(data["1"][1]["bitrate"], 150_000);
        assert!(data["1"][1].get("width").is_none());
        assert!(sse.ends_with("\n\n"));
        let count = EventData::Json(Arc::from("{\"viewercount\":3}"));
        let e = Event {
            kind: EventKind::Viewercount,
            data: count,
        };
        assert_eq!(
            e.to_sse("1"),
            "event: viewercount\ndata: {\"viewercount\":3}\n\n"
        );
    }

    #[test]
    fn a_late_stream_starts_with_the_state_and_inactive_is_never_first() {
        let ev = StreamEvents::default();
        // Nothing live yet: a new stream is told nothing, and leaving sends nothing.
        ev.set_live(false);
        let (mut rx, now) = ev.subscribe();
        assert!(now.is_empty());
        assert!(rx.try_recv().is_err());
        ev.set_live(true);
        ev.set_viewers(2);
        ev.set_viewers(2);
        let kinds: Vec<EventKind> = std::iter::from_fn(|| rx.try_recv().ok())
            .map(|e| e.kind)
            .collect();
        assert_eq!(kinds, [EventKind::Active, EventKind::Viewercount]);
        let (_, now) = ev.subscribe();
        let kinds: Vec<EventKind> = now.iter().map(|e| e.kind).collect();
        assert_eq!(kinds, [EventKind::Active, EventKind::Viewercount]);
    }

    #[test]
    fn layers_are_sent_on_news_and_every_few_seconds() {
        let ev = StreamEvents::default();
        let (mut rx, _) = ev.subscribe();
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        ev.set_layers(vec![layer("f", 1_000_000, Some((1280, 720)))], at(0));
        ev.set_layers(vec![layer("f", 1_100_000, Some((1280, 720)))], at(500));
        ev.set_layers(vec![layer("f", 1_300_000, Some((1280, 720)))], at(1_000));
        ev.set_layers(vec![layer("f", 1_300_000, Some((640, 360)))], at(1_500));
        ev.set_layers(vec![layer("f", 1_300_000, Some((640, 360)))], at(6_500));
        let rates: Vec<u64> = std::iter::from_fn(|| rx.try_recv().ok())
            .filter_map(|e| match e.data {
                EventData::Layers(l) => Some(l[0].bitrate),
                _ => None,
            })
            .collect();
        assert_eq!(rates, [1_000_000, 1_300_000, 1_300_000, 1_300_000]);
    }

    #[test]
    fn a_sessions_streams_end_with_it() {
        let subs = Subscriptions::default();
        let a = subs.add(SessionId(1), vec![EventKind::Active]);
        let b = subs.add(SessionId(1), vec![EventKind::Layers]);
        let other = subs.add(SessionId(2), vec![EventKind::Active]);
        let l = subs.listen(SessionId(1), a).unwrap();
        assert!(subs.listen(SessionId(2), a).is_none(), "another session's");
        assert!(subs.remove(SessionId(1), b));
        assert!(!subs.remove(SessionId(1), b));
        subs.end_session(SessionId(1));
        assert!(*l.closed.borrow());
        assert!(subs.listen(SessionId(1), a).is_none());
        assert!(subs.listen(SessionId(2), other).is_some());
    }
}
