//! Which simulcast layer each viewer gets: its [`LayerChooser`] decides from the
//! stream's layers and the bandwidth its egress estimates, every [`LAYER_TICK`] and
//! when the player asks (the WHEP layer extension); the fan-out switches at the new
//! layer's keyframe, which is asked of the source at once.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tracing::{debug, info, trace};

use super::session::RoleState;
use super::{Deferred, Worker};
use crate::core::{Decision, LayerInfo, LayerPolicy, ViewerId};
use crate::model::SessionId;

/// How often the viewers' layers are chosen again: quick enough to leave a layer the
/// link cannot carry within a few hundred milliseconds.
pub(super) const LAYER_TICK: Duration = Duration::from_millis(200);

/// The longest a keyframe request waits for a congested viewer's queue to drain.
const MAX_DRAIN_WAIT: Duration = Duration::from_millis(600);

impl Worker {
    /// Chooses the layer of every viewer of a stream that has simulcast layers.
    pub(super) fn choose_layers(&mut self, now: Instant) {
        // Each stream's layers are read once per round.
        let mut layers: HashMap<Arc<str>, Option<Arc<[LayerInfo]>>> = HashMap::new();
        let keys: Vec<u64> = self
            .sessions
            .iter()
            .filter(|(_, s)| matches!(s.role, RoleState::Viewer { joined: true, .. }))
            .map(|(k, _)| *k)
            .collect();
        for key in keys {
            let Some(s) = self.sessions.get(&key) else {
                continue;
            };
            let of_stream = layers
                .entry(s.shared.name.clone())
                .or_insert_with(|| {
                    (s.shared.stats.layer_count() > 1)
                        .then(|| Arc::from(s.shared.stats.layers(now)))
                })
                .clone();
            if let Some(of_stream) = of_stream {
                self.choose_layer(key, &of_stream, now);
            }
        }
    }

    /// Sends the keyframe requests whose viewers' queues have drained by `now`.
    pub(super) fn release_delayed_keyframes(&mut self, now: Instant) {
        let mut i = 0;
        while i < self.delayed_keyframes.len() {
            if self.delayed_keyframes[i].0 <= now {
                let (_, shared, layer) = self.delayed_keyframes.swap_remove(i);
                self.deferred
                    .push_back(Deferred::WantKeyframe(shared, layer));
            } else {
                i += 1;
            }
        }
    }

    /// Chooses one viewer's layer at once (its path just turned congested).
    pub(super) fn choose_layer_now(&mut self, key: u64, now: Instant) {
        let Some(s) = self.sessions.get(&key) else {
            return;
        };
        if s.shared.stats.layer_count() > 1 {
            let layers = s.shared.stats.layers(now);
            self.choose_layer(key, &layers, now);
        }
    }

    /// Runs one viewer's chooser and carries out its decision.
    fn choose_layer(&mut self, key: u64, layers: &[LayerInfo], now: Instant) {
        let Some((current, target)) = self.fanout.layer_of(ViewerId(key)) else {
            return;
        };
        let Some(s) = self.sessions.get_mut(&key) else {
            return;
        };
        let RoleState::Viewer { chooser, .. } = &mut s.role else {
            return;
        };
        let bandwidth = s.direct.as_deref_mut().and_then(|d| {
            d.estimate(now);
            d.bandwidth()
        });
        let decision: Decision = chooser.choose(layers, target, current != target, bandwidth, now);
        if let Some(b) = bandwidth {
            s.span.in_scope(|| {
                trace!(
                    current,
                    target,
                    estimate = b.estimate,
                    congested = b.congested,
                    probe = ?b.probe,
                    "layer choice"
                )
            });
        }
        if let Some(bps) = decision.probe
            && let Some(d) = s.direct.as_deref_mut()
            && d.start_probe(bps, now)
        {
            s.span
                .in_scope(|| debug!(target_bps = bps, "probing for the next layer"));
            self.counters
                .bandwidth_probes
                .fetch_add(1, Ordering::Relaxed);
        }
        let Some(layer) = decision.layer else {
            return;
        };
        s.span.in_scope(|| {
            info!(
                from = current,
                to = layer,
                estimate = bandwidth.map(|b| b.estimate),
                congested = bandwidth.is_some_and(|b| b.congested),
                "layer switch"
            )
        });
        let shared = s.shared.clone();
        let quality = |i: u8| crate::core::by_quality(layers).iter().position(|l| *l == i);
        let up = quality(layer) > quality(target);
        let counter = if up {
            &self.counters.layer_switches_up
        } else {
            &self.counters.layer_switches_down
        };
        counter.fetch_add(1, Ordering::Relaxed);
        if self
            .fanout
            .set_layer(ViewerId(key), layer, decision.pause, now)
        {
            // Moved down for congestion, the viewer's queue is full of the old layer:
            // a keyframe sent into it now would lose its tail there. Its request
            // waits until that queue has drained (the old layer is paused).
            let drain = bandwidth
                .filter(|_| decision.pause)
                .map_or(Duration::ZERO, |b| b.queue.min(MAX_DRAIN_WAIT));
            if drain.is_zero() {
                self.deferred
                    .push_back(Deferred::WantKeyframe(shared, layer));
            } else {
                self.delayed_keyframes.push((now + drain, shared, layer));
            }
        }
    }

    /// A viewer's player chose (the WHEP layer extension). Returns false when the
    /// viewer is not on this worker.
    pub(super) fn set_layer_policy(
        &mut self,
        id: SessionId,
        policy: LayerPolicy,
        now: Instant,
    ) -> bool {
        let Some(&key) = self.by_id.get(&id) else {
            return false;
        };
        let Some(s) = self.sessions.get_mut(&key) else {
            return false;
        };
        let RoleState::Viewer { chooser, .. } = &mut s.role else {
            return false;
        };
        chooser.set_policy(policy);
        s.span
            .in_scope(|| debug!(?policy, "layer choice from the player"));
        let layers = s.shared.stats.layers(now);
        if layers.len() > 1 {
            self.choose_layer(key, &layers, now);
        }
        true
    }
}
