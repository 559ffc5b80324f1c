//! A relay: this node plays a stream another node of the cluster owns, over plain
//! WHEP with the cluster's token, and serves it to its own viewers as it serves a
//! `[[pull]]`. The owner is looked up in the directory at each connection, so that
//! when the stream moves (its publisher came back on another node) the relay follows
//! it and the viewers here stay, resuming at the new source's first keyframe with
//! their numbering running on.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::mpsc;

use super::Shared;
use crate::ingest::MediumSpec;
use crate::ingest::pull;
use crate::ingest::upstream::{Connection, Schedule, Upstream};

/// A relay connects again this soon after losing its upstream, doubling to
/// [`MAX_BACKOFF`]: the new owner is usually there already (the directory said so).
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// One relayed stream.
pub(crate) struct Relay {
    pub(crate) schedule: Schedule,
    pub(crate) shared: Arc<Shared>,
    /// The node it plays from now.
    pub(crate) from: Arc<Mutex<Option<String>>>,
}

impl Upstream for Relay {
    fn what(&self) -> &'static str {
        "cluster relay"
    }

    fn schedule(&self) -> &Schedule {
        &self.schedule
    }

    fn transport(&self) -> &'static str {
        "webrtc"
    }

    async fn probe(&mut self) -> Result<Vec<MediumSpec>, String> {
        Err("a relay is not probed".into())
    }

    async fn connect(&mut self) -> Result<Connection, String> {
        let stream = self.schedule.stream.clone();
        let owner = self
            .shared
            .store
            .lookup(&stream)
            .await
            .map_err(|e| e.to_string())?
            .ok_or("the stream is live on no node")?;
        if owner.node == self.shared.node {
            return Err("this node owns the stream now".into());
        }
        let url = url::Url::parse(&owner.whep_url(&stream))
            .map_err(|e| format!("node {} has a bad URL: {e}", owner.node))?;
        let (tx, rx) = mpsc::channel(pull::QUEUE);
        let (viewer, media) = pull::play(&url, Some(self.shared.token.clone()), Some(tx))
            .await
            .map_err(|e| format!("from node {}: {e}", owner.node))?;
        *self.from.lock().unwrap_or_else(|e| e.into_inner()) = Some(owner.node.clone());
        let mut conn = pull::connection(viewer, media, rx);
        // The claim is watched: when another node holds it, this connection ends and
        // the next one goes there. A claim that is gone, one of the same node under
        // another epoch, or a directory that does not answer changes nothing: the
        // media says whether the owner is still there.
        let every = self.shared.ttl / 3;
        let moved = futures_util::stream::unfold(
            (self.shared.clone(), stream, owner),
            move |(shared, stream, owner)| async move {
                loop {
                    tokio::time::sleep(every).await;
                    if let Ok(Some(now)) = shared.store.lookup(&stream).await
                        && now.node != owner.node
                    {
                        let why = format!("the stream moved to node {}", now.node);
                        return Some((Err(why), (shared, stream, owner)));
                    }
                }
            },
        );
        conn.items = futures_util::stream::select(conn.items, moved).boxed();
        Ok(conn)
    }

    fn backoff(&self) -> (Duration, Duration) {
        (FIRST_BACKOFF, MAX_BACKOFF)
    }

    fn retires_when_unwatched(&self) -> bool {
        true
    }
}
