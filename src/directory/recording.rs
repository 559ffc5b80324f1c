//! A stream's side of its recording (the recorder itself is `crate::record`): the
//! queue its source packets are offered to, where the recording stands, and the hook
//! by which streams get recorded as they appear. Here so that a stream holds them
//! without the directory depending on the recorder.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::{Arc, Mutex};

use super::Stream;
use crate::core::SourcePacket;
use crate::sdp::ChosenCodec;

/// Told of every stream as it gets its first source (the recorder implements it).
pub(crate) trait NewStreamHook: Send + Sync + std::fmt::Debug {
    /// `stream` appeared; its source sends `codecs`.
    fn new_stream(&self, stream: &Arc<Stream>, codecs: &[ChosenCodec]);
}

/// What the media path holds of a recording: the queue to its writer.
#[derive(Debug)]
pub(crate) struct RecorderTap {
    tx: SyncSender<Arc<SourcePacket>>,
    /// Where the recording stands, for the API.
    pub(crate) status: Arc<RecordingStatus>,
    /// Every recording's count of refused packets.
    dropped_total: Arc<AtomicU64>,
}

impl RecorderTap {
    /// A tap feeding `tx`, where the recording's `status` is kept, counting what it
    /// refuses in `dropped_total` too.
    pub(crate) fn new(
        tx: SyncSender<Arc<SourcePacket>>,
        status: Arc<RecordingStatus>,
        dropped_total: Arc<AtomicU64>,
    ) -> RecorderTap {
        RecorderTap {
            tx,
            status,
            dropped_total,
        }
    }

    /// Offers a source packet; never blocks. A full queue refuses it and counts it;
    /// a recording that has stopped (it failed) takes nothing, and nothing is counted:
    /// its packets were not lost to it, it records no more.
    pub(crate) fn offer(&self, pkt: &Arc<SourcePacket>) {
        if let Err(TrySendError::Full(_)) = self.tx.try_send(pkt.clone()) {
            self.status.dropped.fetch_add(1, Ordering::Relaxed);
            self.dropped_total.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Where one recording stands.
#[derive(Debug, Default)]
pub(crate) struct RecordingStatus {
    inner: Mutex<StatusInner>,
    /// Packets its queue refused (full, or the recording stopped).
    pub(crate) dropped: AtomicU64,
}

#[derive(Debug, Default, Clone)]
pub(crate) struct StatusInner {
    /// `waiting` (for a keyframe), `recording`, `failed` or `finished`.
    pub(crate) state: &'static str,
    /// The file being written (or last written).
    pub(crate) file: Option<PathBuf>,
    /// When that file's first picture was captured, on the wall clock.
    pub(crate) started: Option<std::time::SystemTime>,
    /// Files written so far.
    pub(crate) files: u64,
    /// Why it failed.
    pub(crate) error: Option<String>,
}

impl RecordingStatus {
    /// A copy of where it stands now.
    pub(crate) fn get(&self) -> StatusInner {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Changes where it stands.
    pub(crate) fn update(&self, f: impl FnOnce(&mut StatusInner)) {
        f(&mut self.inner.lock().unwrap_or_else(|e| e.into_inner()));
    }
}
