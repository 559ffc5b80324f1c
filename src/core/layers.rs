//! Simulcast layers as viewers see them, and which one a viewer gets.
//!
//! A source's layers are named by their index in its offer, which says nothing of
//! their quality (browsers list them low to high, other encoders need not). Quality
//! is measured instead: the picture size the layer's keyframes announce, then its bit
//! rate.
//!
//! Each viewer has a [`LayerChooser`]: automatic by default, from the viewer's
//! bandwidth estimate (see `bwe`), or capped or pinned by the player through the
//! WHEP layer extension. Down is immediate when the layer no longer fits; up needs
//! the estimate to cover the better layer with room to spare for a while, or a probe
//! that proved it. A viewer whose estimate falls below the lowest layer stays on it.
//!
//! Sans-IO: the figures come in as [`LayerInfo`]s and a [`Bandwidth`], time as `now`.

use std::sync::Arc;
use std::time::{Duration, Instant};

/// What viewers and the API see of one simulcast layer (or of a source's one
/// encoding).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LayerInfo {
    /// Its index in the source's offer.
    pub(crate) index: u8,
    /// Its rid (None: the one encoding of a source without simulcast).
    pub(crate) rid: Option<Arc<str>>,
    /// Bits per second of payload, over the last sample.
    pub(crate) bitrate: u64,
    /// Picture size from its last keyframe, if one said.
    pub(crate) size: Option<(u32, u32)>,
    /// It sent a packet lately (a sender may stop a layer, e.g. for lack of uplink).
    pub(crate) active: bool,
}

impl LayerInfo {
    /// The ordering key of quality: picture area, then bit rate, then the offer's
    /// order (the usual low-to-high) when nothing was measured yet.
    fn quality(&self) -> (u64, u64, u8) {
        let area = self.size.map_or(0, |(w, h)| u64::from(w) * u64::from(h));
        (area, self.bitrate, self.index)
    }
}

/// The layers' indexes from the lowest quality to the highest, active ones only
/// (all of them when none is active yet).
pub(crate) fn by_quality(layers: &[LayerInfo]) -> Vec<u8> {
    let any_active = layers.iter().any(|l| l.active);
    let mut sorted: Vec<&LayerInfo> = layers.iter().filter(|l| l.active || !any_active).collect();
    sorted.sort_by_key(|l| l.quality());
    sorted.iter().map(|l| l.index).collect()
}

/// The layers best first, as a `layers` event lists them: the active ones by
/// quality, then the stopped ones with bit rate 0 (which the event reads as inactive).
pub(crate) fn best_first(layers: &[LayerInfo]) -> Vec<LayerInfo> {
    let mut active: Vec<LayerInfo> = layers.iter().filter(|l| l.active).cloned().collect();
    active.sort_by_key(|l| std::cmp::Reverse(l.quality()));
    active.extend(layers.iter().filter(|l| !l.active).map(|l| LayerInfo {
        bitrate: 0,
        ..l.clone()
    }));
    active
}

/// The layer a new viewer starts on: the best one (the estimator moves it down
/// within a few round trips when its link cannot carry it).
pub(crate) fn start_layer(layers: &[LayerInfo]) -> u8 {
    by_quality(layers).last().copied().unwrap_or(0)
}

/// What a viewer's player asked for (the WHEP layer extension): the chooser picks,
/// within a picture-size cap, or one layer is pinned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum LayerPolicy {
    /// The chooser picks from the bandwidth estimate.
    #[default]
    Auto,
    /// The chooser picks among the layers no larger than this (a side may be open).
    Cap {
        max_width: Option<u32>,
        max_height: Option<u32>,
    },
    /// Always this layer (by index).
    Pin(u8),
}

/// What the viewer's bandwidth estimator says, as the chooser needs it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Bandwidth {
    /// Bits per second the viewer's link is estimated to carry.
    pub(crate) estimate: u64,
    /// The estimator sees the queue on the path growing (or heavy loss) now.
    pub(crate) congested: bool,
    /// The rate the path delivered at lately, when the feedback says (what a link
    /// that just narrowed carries, before the estimate has caught up).
    pub(crate) delivered: Option<u64>,
    /// The queue on the path now (how much longer than its fastest the newest
    /// packet took).
    pub(crate) queue: Duration,
    /// How the last probe ended, if one ended since the last call.
    pub(crate) probe: ProbeOutcome,
}

/// The end of a bandwidth probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ProbeOutcome {
    /// None ended since the last call (or one is still running).
    None,
    /// The path carried the probe's rate.
    Succeeded,
    /// It did not.
    Failed,
}

/// What the chooser wants done for one viewer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Decision {
    /// Move the viewer's video to this layer (it switches at that layer's keyframe).
    pub(crate) layer: Option<u8>,
    /// Stop the current layer at once instead of until the switch: the path is
    /// congested, and what it would still get only delays the new keyframe.
    pub(crate) pause: bool,
    /// Probe the path up to this many bits per second in all, to see whether the
    /// next layer would fit.
    pub(crate) probe: Option<u64>,
}

/// What a viewer needs beyond a layer's own payload: the audio with its headers
/// (Opus at 50 packets a second is about half header on the wire) and the video's
/// RTP, SRTP, UDP and IP headers.
const AUDIO_BPS: u64 = 64_000;
const VIDEO_OVERHEAD: f64 = 1.08;
/// A better layer must fit with this much to spare before the viewer moves up.
const UP_MARGIN: f64 = 1.1;
/// And for this long, unless a probe just proved it.
const UP_HOLD: Duration = Duration::from_secs(2);
/// A layer that no longer fits is left once the estimate has stayed under it this
/// long (at once when the path is congested).
const DOWN_HOLD: Duration = Duration::from_millis(300);
/// While the path is congested the estimate still counts the queue that hides its
/// capacity: a layer must then fit in this share of it, so the viewer steps down once
/// to a layer that lets the queue drain rather than layer by layer (each step waits
/// for a keyframe, and the picture stalls meanwhile).
const CONGESTED_SHARE: f64 = 0.35;
/// Or in this share of what the path delivered lately, if that is less.
const DELIVERED_SHARE: f64 = 0.85;
/// A probe asks for this much more than the next layer needs,
const PROBE_MARGIN: f64 = 1.25;
/// but at most this multiple of the estimate: a link far short of the next layer
/// is found out by a small overshoot as well as by a large one, which would hurt
/// the media on it more; a success raises the estimate and the next probe goes on
/// from there.
const PROBE_MAX_STEP: f64 = 2.0;
/// The first wait between probes, and the longest after failures: long enough not to
/// load a full link every few seconds, short enough to find a link that recovered
/// within a few probes.
const PROBE_WAIT: Duration = Duration::from_secs(2);
const PROBE_WAIT_MAX: Duration = Duration::from_secs(6);
/// No probe this soon after the path was congested.
const PROBE_AFTER_CONGESTION: Duration = Duration::from_secs(2);

/// Bits per second a viewer needs to get `layer` (with its audio).
pub(crate) fn need(layer: &LayerInfo) -> u64 {
    (layer.bitrate as f64 * VIDEO_OVERHEAD) as u64 + AUDIO_BPS
}

/// One viewer's layer choice over time.
#[derive(Debug, Clone)]
pub(crate) struct LayerChooser {
    policy: LayerPolicy,
    /// Since when the estimate has covered a better layer (with the margin).
    up_since: Option<Instant>,
    /// Since when the estimate has been under the current layer's need.
    down_since: Option<Instant>,
    /// No probe before this.
    next_probe: Instant,
    probe_wait: Duration,
    /// A probe's success lets the next up-switch skip the hold.
    proved: Option<u64>,
    /// When the path was last congested: no probe soon after (it would only add to
    /// a queue that is still draining).
    congested_at: Option<Instant>,
}

impl LayerChooser {
    /// An automatic chooser; the first probe may go `PROBE_WAIT` after `now`.
    pub(crate) fn new(now: Instant) -> Self {
        LayerChooser {
            policy: LayerPolicy::Auto,
            up_since: None,
            down_since: None,
            next_probe: now + PROBE_WAIT,
            probe_wait: PROBE_WAIT,
            proved: None,
            congested_at: None,
        }
    }

    /// The player's choice (the caller checked a pinned index exists).
    pub(crate) fn set_policy(&mut self, policy: LayerPolicy) {
        self.policy = policy;
        self.up_since = None;
        self.down_since = None;
    }

    /// Decides for a viewer whose video is moving to `current` (its target), given
    /// the stream's `layers`, whether it still waits for that layer's keyframe
    /// (`switching`), and the viewer's bandwidth (None: no estimate, e.g. a player
    /// that sends no transport feedback: it keeps what it has, or what it pinned).
    /// While it switches, only a further step down is decided: up and probes wait
    /// until it is there.
    pub(crate) fn choose(
        &mut self,
        layers: &[LayerInfo],
        current: u8,
        switching: bool,
        bandwidth: Option<Bandwidth>,
        now: Instant,
    ) -> Decision {
        let order = by_quality(layers);
        let mut decision = Decision::default();
        if order.is_empty() {
            return decision;
        }
        let allowed: Vec<&LayerInfo> = order
            .iter()
            .filter_map(|i| layers.iter().find(|l| l.index == *i))
            .filter(|l| self.allows(l))
            .collect();
        // A cap that excludes every layer still leaves the smallest.
        let allowed = if allowed.is_empty() {
            order
                .first()
                .and_then(|i| layers.iter().find(|l| l.index == *i))
                .into_iter()
                .collect()
        } else {
            allowed
        };
        if let LayerPolicy::Pin(pin) = self.policy {
            if pin != current && layers.iter().any(|l| l.index == pin) {
                decision.layer = Some(pin);
            }
            return decision;
        }
        let Some(bw) = bandwidth else {
            // No estimate: stay, unless the current layer is gone or not allowed.
            if !allowed.iter().any(|l| l.index == current)
                && let Some(best) = allowed.last()
            {
                decision.layer = Some(best.index);
            }
            return decision;
        };
        if bw.congested {
            self.congested_at = Some(now);
        }
        let calm = !bw.congested
            && !switching
            && self
                .congested_at
                .is_none_or(|t| now.saturating_duration_since(t) >= PROBE_AFTER_CONGESTION);
        match bw.probe {
            ProbeOutcome::Succeeded => {
                self.proved = Some(bw.estimate);
                self.probe_wait = PROBE_WAIT;
            }
            ProbeOutcome::Failed => {
                self.probe_wait = (self.probe_wait * 2).min(PROBE_WAIT_MAX);
                self.next_probe = now + self.probe_wait;
            }
            ProbeOutcome::None => {}
        }
        let pos = allowed.iter().position(|l| l.index == current);
        let usable = if bw.congested {
            let delivered = bw
                .delivered
                .map_or(f64::MAX, |d| d as f64 * DELIVERED_SHARE);
            (bw.estimate as f64 * CONGESTED_SHARE).min(delivered) as u64
        } else {
            bw.estimate
        };
        let fitting = allowed.iter().rposition(|l| need(l) <= usable).unwrap_or(0);
        match pos {
            None => {
                // Not on an allowed layer (a new cap, a stopped layer): the best fit.
                self.up_since = None;
                self.down_since = None;
                decision.layer = Some(allowed[fitting].index);
            }
            Some(p) if fitting < p => {
                let since = *self.down_since.get_or_insert(now);
                self.up_since = None;
                if bw.congested || now.saturating_duration_since(since) >= DOWN_HOLD {
                    self.down_since = None;
                    decision.layer = Some(allowed[fitting].index);
                    decision.pause = bw.congested;
                }
            }
            Some(p) => {
                self.down_since = None;
                let up = allowed[p + 1..]
                    .iter()
                    .rposition(|l| need(l) as f64 * UP_MARGIN <= bw.estimate as f64)
                    .map(|i| p + 1 + i);
                match up {
                    Some(u) if !bw.congested && !switching => {
                        let proved = self.proved.is_some_and(|e| e >= need(allowed[u]));
                        let since = *self.up_since.get_or_insert(now);
                        if proved || now.saturating_duration_since(since) >= UP_HOLD {
                            self.up_since = None;
                            self.proved = None;
                            decision.layer = Some(allowed[u].index);
                        }
                    }
                    _ => {
                        self.up_since = None;
                        if let Some(next) = allowed.get(p + 1)
                            && calm
                            && now >= self.next_probe
                        {
                            self.next_probe = now + self.probe_wait;
                            let target = (need(next) as f64 * PROBE_MARGIN)
                                .min(bw.estimate as f64 * PROBE_MAX_STEP);
                            decision.probe = Some(target as u64);
                        }
                    }
                }
            }
        }
        decision
    }

    fn allows(&self, l: &LayerInfo) -> bool {
        match self.policy {
            LayerPolicy::Cap {
                max_width,
                max_height,
            } => match l.size {
                Some((w, h)) => {
                    max_width.is_none_or(|m| w <= m) && max_height.is_none_or(|m| h <= m)
                }
                None => true,
            },
            _ => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(index: u8, bitrate: u64, size: Option<(u32, u32)>, active: bool) -> LayerInfo {
        LayerInfo {
            index,
            rid: None,
            bitrate,
            size,
            active,
        }
    }

    #[test]
    fn quality_is_measured_not_read_from_the_offers_order() {
        // An encoder that lists its layers high to low.
        let layers = [
            layer(0, 2_500_000, Some((1280, 720)), true),
            layer(1, 800_000, Some((640, 360)), true),
            layer(2, 200_000, Some((320, 180)), true),
        ];
        assert_eq!(by_quality(&layers), [2, 1, 0]);
        assert_eq!(start_layer(&layers), 0);
    }

    #[test]
    fn unmeasured_layers_rank_by_bitrate_then_offer_order() {
        let layers = [
            layer(0, 0, None, false),
            layer(1, 0, None, false),
            layer(2, 0, None, false),
        ];
        assert_eq!(start_layer(&layers), 2);
        let layers = [layer(0, 900, None, true), layer(1, 300, None, true)];
        assert_eq!(by_quality(&layers), [1, 0]);
    }

    #[test]
    fn a_stopped_layer_is_not_chosen() {
        let layers = [
            layer(0, 200_000, Some((320, 180)), true),
            layer(1, 0, Some((1280, 720)), false),
        ];
        assert_eq!(by_quality(&layers), [0]);
        assert_eq!(start_layer(&layers), 0);
        assert_eq!(start_layer(&[]), 0);
        let listed = best_first(&layers);
        assert_eq!((listed[0].index, listed[1].index), (0, 1));
        assert_eq!(listed[1].bitrate, 0, "stopped: inactive in the event");
    }

    fn three() -> Vec<LayerInfo> {
        vec![
            layer(0, 150_000, Some((320, 180)), true),
            layer(1, 500_000, Some((640, 360)), true),
            layer(2, 2_300_000, Some((1280, 720)), true),
        ]
    }

    fn bw(estimate: u64) -> Option<Bandwidth> {
        Some(Bandwidth {
            estimate,
            congested: false,
            delivered: None,
            queue: Duration::ZERO,
            probe: ProbeOutcome::None,
        })
    }

    fn ms(t0: Instant, ms: u64) -> Instant {
        t0 + Duration::from_millis(ms)
    }

    #[test]
    fn a_viewer_whose_link_shrinks_goes_down_to_the_layer_that_fits() {
        let t0 = Instant::now();
        let mut c = LayerChooser::new(t0);
        let layers = three();
        // The middle layer needs 604 k with its headers and the audio.
        assert_eq!(need(&layers[1]), 604_000);
        assert_eq!(
            c.choose(&layers, 2, false, bw(550_000), t0).layer,
            None,
            "held"
        );
        assert_eq!(
            c.choose(&layers, 2, false, bw(550_000), ms(t0, 300)).layer,
            Some(0)
        );
        // Congestion skips the hold, and the layer must fit in a third of the
        // estimate: the queue still hides how little the path carries.
        let mut c = LayerChooser::new(t0);
        let congested = |estimate| {
            Some(Bandwidth {
                estimate,
                congested: true,
                delivered: None,
                queue: Duration::ZERO,
                probe: ProbeOutcome::None,
            })
        };
        let down = c.choose(&layers, 2, false, congested(1_600_000), t0);
        assert_eq!((down.layer, down.pause), (Some(0), true));
        // An overflowing link before the estimate caught up: what it delivered.
        let overflow = Some(Bandwidth {
            estimate: 8_000_000,
            congested: true,
            delivered: Some(340_000),
            queue: Duration::from_millis(300),
            probe: ProbeOutcome::None,
        });
        assert_eq!(c.choose(&layers, 2, false, overflow, t0).layer, Some(0));
        assert_eq!(
            c.choose(&layers, 2, false, congested(1_800_000), t0).layer,
            Some(1)
        );
    }

    #[test]
    fn below_the_lowest_layer_the_viewer_stays_on_it() {
        let t0 = Instant::now();
        let mut c = LayerChooser::new(t0);
        let layers = three();
        assert_eq!(
            c.choose(&layers, 0, false, bw(50_000), ms(t0, 1_000)).layer,
            None
        );
        assert_eq!(
            c.choose(&layers, 2, false, bw(50_000), ms(t0, 0)).layer,
            None
        );
        assert_eq!(
            c.choose(&layers, 2, false, bw(50_000), ms(t0, 400)).layer,
            Some(0)
        );
    }

    #[test]
    fn up_needs_room_for_a_while_or_a_proving_probe() {
        let t0 = Instant::now();
        let mut c = LayerChooser::new(t0);
        let layers = three();
        // 700 k covers the middle layer (604 k) with 10 % to spare: after 2 s.
        assert_eq!(
            c.choose(&layers, 0, false, bw(700_000), ms(t0, 0)).layer,
            None
        );
        assert_eq!(
            c.choose(&layers, 0, false, bw(700_000), ms(t0, 1_900))
                .layer,
            None
        );
        assert_eq!(
            c.choose(&layers, 0, false, bw(700_000), ms(t0, 2_000))
                .layer,
            Some(1)
        );
        // A probe that succeeded moves it at once.
        let mut c = LayerChooser::new(t0);
        let proved = Some(Bandwidth {
            estimate: 2_900_000,
            congested: false,
            delivered: None,
            queue: Duration::ZERO,
            probe: ProbeOutcome::Succeeded,
        });
        assert_eq!(
            c.choose(&layers, 1, false, proved, ms(t0, 10)).layer,
            Some(2)
        );
    }

    #[test]
    fn probes_go_toward_the_next_layer_and_back_off_when_they_fail() {
        let t0 = Instant::now();
        let mut c = LayerChooser::new(t0);
        let layers = three();
        assert_eq!(
            c.choose(&layers, 0, false, bw(500_000), t0).probe,
            None,
            "not yet"
        );
        let first = c
            .choose(&layers, 0, false, bw(500_000), ms(t0, 2_000))
            .probe;
        assert_eq!(first, Some((604_000.0 * PROBE_MARGIN) as u64));
        let failed = Some(Bandwidth {
            estimate: 500_000,
            congested: false,
            delivered: None,
            queue: Duration::ZERO,
            probe: ProbeOutcome::Failed,
        });
        assert_eq!(
            c.choose(&layers, 0, false, failed, ms(t0, 2_600)).probe,
            None
        );
        // 4 s after the failure, then 6 s at most.
        assert_eq!(
            c.choose(&layers, 0, false, bw(500_000), ms(t0, 6_500))
                .probe,
            None
        );
        assert!(
            c.choose(&layers, 0, false, bw(500_000), ms(t0, 6_600))
                .probe
                .is_some()
        );
        // A next layer far above the estimate is probed for in steps.
        let mut c = LayerChooser::new(t0);
        let step = c
            .choose(&layers, 1, false, bw(800_000), ms(t0, 2_000))
            .probe;
        assert_eq!(step, Some(1_600_000));
        // On the top layer there is nothing to probe for.
        let mut c = LayerChooser::new(t0);
        assert_eq!(
            c.choose(&layers, 2, false, bw(9_000_000), ms(t0, 9_000))
                .probe,
            None
        );
    }

    #[test]
    fn a_pinned_layer_is_kept_and_a_cap_bounds_the_choice() {
        let t0 = Instant::now();
        let layers = three();
        let mut c = LayerChooser::new(t0);
        c.set_policy(LayerPolicy::Pin(0));
        assert_eq!(
            c.choose(&layers, 2, false, bw(9_000_000), t0).layer,
            Some(0)
        );
        assert_eq!(
            c.choose(&layers, 0, false, bw(9_000_000), t0),
            Decision::default()
        );
        c.set_policy(LayerPolicy::Cap {
            max_width: None,
            max_height: Some(400),
        });
        assert_eq!(
            c.choose(&layers, 2, false, bw(9_000_000), t0).layer,
            Some(1)
        );
        assert_eq!(
            c.choose(&layers, 1, false, bw(9_000_000), ms(t0, 5_000))
                .layer,
            None
        );
        c.set_policy(LayerPolicy::Auto);
        assert_eq!(
            c.choose(&layers, 1, false, bw(9_000_000), ms(t0, 5_000))
                .layer,
            None
        );
        assert_eq!(
            c.choose(&layers, 1, false, bw(9_000_000), ms(t0, 7_000))
                .layer,
            Some(2)
        );
    }

    #[test]
    fn without_an_estimate_the_viewer_keeps_its_layer() {
        let t0 = Instant::now();
        let mut c = LayerChooser::new(t0);
        let mut layers = three();
        assert_eq!(c.choose(&layers, 1, false, None, t0), Decision::default());
        // Unless that layer stopped: the best one left.
        layers[1].active = false;
        assert_eq!(c.choose(&layers, 1, false, None, t0).layer, Some(2));
    }
}
