//! Pushing a stream to another WHIP server (`[[push]]`): whenever the stream has a
//! source here (a WHIP publisher, a camera, a pull), wishd publishes it there as a
//! WHIP client, with the stream's own codecs, and hands it every packet its source
//! sends, as a viewer would get them but untouched by any viewer's needs. The receiving
//! server's keyframe requests are passed to the source. When the source goes the
//! session is DELETEd, and a new one begins when a source comes back; a session that
//! fails is tried again after 1 s, doubling to 30 s.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

use crate::client::sender::{SenderEvent, SentPacket, WhipSender};
use crate::config::PushEntry;
use crate::directory::{Directory, PacketTap, SourceView, Stream};
use crate::media::WorkerMsg;

/// Packets a push may have waiting for its sender; more are dropped.
const QUEUE: usize = 1024;
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How often the push looks for its stream's source.
const LOOK: Duration = Duration::from_millis(250);

/// What a push needs of the server.
#[derive(Clone)]
pub(crate) struct PushWiring {
    pub(crate) directory: Arc<Directory>,
    /// The media workers, to pass keyframe requests to a WHIP source's.
    pub(crate) peers: Vec<mpsc::Sender<WorkerMsg>>,
}

/// Starts the push of `entry` (checked by the configuration); it ends with `stop`.
pub(crate) fn start(
    entry: PushEntry,
    wiring: PushWiring,
    stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(run(entry, wiring, stop))
}

/// The stream, while it has a live source.
fn live(directory: &Directory, name: &str) -> Option<crate::directory::StreamView> {
    let v = directory.stream(name)?;
    let live = match v.source {
        SourceView::WhipLive(_) => true,
        SourceView::WhipWaiting => false,
        SourceView::Rtp => v.shared.events.live(),
    };
    (live && !v.codecs.is_empty()).then_some(v)
}

/// Asks the stream's source for a keyframe: a WHIP publisher through its worker, a
/// pull through its upstream; a camera cannot be asked.
fn ask_keyframe(wiring: &PushWiring, stream: &Stream) {
    match stream.source_worker() {
        Some(w) => {
            if let Some(tx) = wiring.peers.get(w) {
                let _ = tx.try_send(WorkerMsg::KeyframeRequest {
                    stream: stream.name.clone(),
                    layer: 0,
                });
            }
        }
        None => stream.ask_upstream_for_keyframe(),
    }
}

async fn run(entry: PushEntry, wiring: PushWiring, mut stop: watch::Receiver<bool>) {
    let name = entry.stream.clone();
    let url = entry.url.clone();
    let token = entry.token.as_ref().map(|t| t.expose().to_owned());
    let mut backoff = FIRST_BACKOFF;
    loop {
        // Wait for a source.
        let view = loop {
            if let Some(v) = live(&wiring.directory, &name) {
                break v;
            }
            tokio::select! {
                _ = stop.changed() => return,
                _ = tokio::time::sleep(LOOK) => {}
            }
        };
        let failed = match push_once(&wiring, &view, &url, token.as_deref(), &mut stop).await {
            Ok(Ended::Stopped) => return,
            Ok(Ended::SourceGone) => {
                backoff = FIRST_BACKOFF;
                continue;
            }
            Ok(Ended::Session(why)) => why,
            Err(e) => e,
        };
        warn!(stream = %name, url = %url, "push: {failed}; trying again in {backoff:?}");
        tokio::select! {
            _ = stop.changed() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// How one push session ended.
enum Ended {
    /// The server is shutting down.
    Stopped,
    /// The stream's source went (or the stream did): wait for the next.
    SourceGone,
    /// The session ended: the receiving server ended it, or ICE failed.
    Session(String),
}

/// One session: from the POST until the source or the session goes.
async fn push_once(
    wiring: &PushWiring,
    view: &crate::directory::StreamView,
    url: &str,
    token: Option<&str>,
    stop: &mut watch::Receiver<bool>,
) -> Result<Ended, String> {
    let parsed = url::Url::parse(url).map_err(|e| format!("url: {e}"))?;
    let bind = crate::client::local_ip_toward(&parsed).await?;
    let codecs = view
        .codecs
        .iter()
        .map(|c| (c.kind, c.payload_params()))
        .collect();
    let (tx, rx) = mpsc::channel(QUEUE);
    let (sender, mut events) = WhipSender::connect(url, token, bind, codecs, rx)
        .await
        .map_err(|e| format!("WHIP POST: {e}"))?;
    let stream = view.shared.clone();
    info!(stream = %stream.name, url, "pushing");
    stream.set_pusher(Some(Arc::new(PacketTap(Box::new(move |pkt| {
        // Simulcast: the first layer, one stream for the receiving server.
        if pkt.layer == 0 {
            let _ = tx.try_send(SentPacket {
                kind: pkt.kind,
                seq: pkt.seq,
                epoch: pkt.epoch,
                timestamp: pkt.timestamp,
                marker: pkt.marker,
                payload: pkt.payload.clone(),
            });
        }
    })))));
    // The receiving server's viewers start at a keyframe.
    ask_keyframe(wiring, &stream);
    let mut look = tokio::time::interval(LOOK);
    let ended = loop {
        tokio::select! {
            _ = stop.changed() => break Ended::Stopped,
            e = events.recv() => match e {
                Some(SenderEvent::Keyframe) => ask_keyframe(wiring, &stream),
                None => break Ended::Session("the session ended".into()),
            },
            _ = look.tick() => {
                // A source away for a while (a publisher within its grace period, a
                // camera between connections) keeps the session: its return goes on
                // in it. The stream's end ends it.
                let same = wiring
                    .directory
                    .stream(&stream.name)
                    .is_some_and(|v| Arc::ptr_eq(&v.shared, &stream));
                if !same {
                    break Ended::SourceGone;
                }
            }
        }
    };
    stream.set_pusher(None);
    let connected = sender.is_connected();
    sender.delete().await;
    info!(stream = %stream.name, url, connected, "push ended");
    Ok(ended)
}
