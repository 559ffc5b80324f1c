//! The claims this node holds, as plain state: what to claim, refresh or release at
//! each turn of the lease clock, and what each answer of the directory changes. No
//! Redis and no clock here (time is passed in), so every rule is unit-tested.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::store::Refreshed;

/// A claim just made is not released for this long even when no local stream has
/// the name yet: a WHIP POST claims before its offer is negotiated and its stream
/// exists.
pub(crate) const FRESH: Duration = Duration::from_secs(5);

/// One claim this node holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Held {
    /// The claim's epoch.
    pub(crate) epoch: String,
    /// When it was claimed.
    pub(crate) since: Instant,
    /// When the directory last confirmed it.
    pub(crate) confirmed: Instant,
}

/// What the lease clock asks the directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    /// A stream owned here and not yet claimed (a camera, or one whose claim was
    /// lost while its source stayed).
    Claim(String),
    /// Extend a claim held, saying whether the stream is live.
    Refresh {
        stream: String,
        epoch: String,
        live: bool,
    },
    /// A claim held for a stream no longer here.
    Release { stream: String, epoch: String },
}

/// The claims held, by stream.
#[derive(Debug, Default)]
pub(crate) struct Leases {
    held: BTreeMap<String, Held>,
}

impl Leases {
    /// This turn's steps, for the streams `owned` here (name, live).
    pub(crate) fn plan(&self, owned: &[(String, bool)], now: Instant) -> Vec<Step> {
        let mut steps: Vec<Step> = owned
            .iter()
            .map(|(stream, live)| match self.held.get(stream) {
                Some(h) => Step::Refresh {
                    stream: stream.clone(),
                    epoch: h.epoch.clone(),
                    live: *live,
                },
                None => Step::Claim(stream.clone()),
            })
            .collect();
        for (stream, h) in &self.held {
            let here = owned.iter().any(|(s, _)| s == stream);
            if !here && now.saturating_duration_since(h.since) >= FRESH {
                steps.push(Step::Release {
                    stream: stream.clone(),
                    epoch: h.epoch.clone(),
                });
            }
        }
        steps
    }

    /// The directory gave (or confirmed) `stream` to this node with `epoch`.
    pub(crate) fn won(&mut self, stream: &str, epoch: &str, now: Instant) {
        let h = self.held.entry(stream.to_owned()).or_insert_with(|| Held {
            epoch: epoch.to_owned(),
            since: now,
            confirmed: now,
        });
        if h.epoch != epoch {
            h.epoch = epoch.to_owned();
            h.since = now;
        }
        h.confirmed = now;
    }

    /// A refresh's answer; the node that took the stream when this one lost it.
    pub(crate) fn refreshed(
        &mut self,
        stream: &str,
        answer: &Refreshed,
        now: Instant,
    ) -> Option<String> {
        match answer {
            Refreshed::Kept | Refreshed::Recreated => {
                if let Some(h) = self.held.get_mut(stream) {
                    h.confirmed = now;
                }
                None
            }
            Refreshed::Adopted { epoch } => {
                self.won(stream, epoch, now);
                None
            }
            Refreshed::Lost { node } => {
                self.held.remove(stream);
                Some(node.clone())
            }
        }
    }

    /// The claim of `stream` is released (or given up).
    pub(crate) fn released(&mut self, stream: &str) {
        self.held.remove(stream);
    }

    /// The claim of `stream`, if held.
    pub(crate) fn get(&self, stream: &str) -> Option<&Held> {
        self.held.get(stream)
    }

    /// Every claim held.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&String, &Held)> {
        self.held.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owned(list: &[(&str, bool)]) -> Vec<(String, bool)> {
        list.iter().map(|(s, l)| (s.to_string(), *l)).collect()
    }

    #[test]
    fn a_stream_owned_here_is_claimed_then_refreshed_with_its_epoch_and_liveness() {
        let t0 = Instant::now();
        let mut leases = Leases::default();
        assert_eq!(
            leases.plan(&owned(&[("cam", true)]), t0),
            vec![Step::Claim("cam".into())]
        );
        leases.won("cam", "17", t0);
        assert_eq!(
            leases.plan(&owned(&[("cam", false)]), t0),
            vec![Step::Refresh {
                stream: "cam".into(),
                epoch: "17".into(),
                live: false
            }]
        );
    }

    #[test]
    fn a_claim_without_its_stream_is_released_once_it_is_no_longer_fresh() {
        let t0 = Instant::now();
        let mut leases = Leases::default();
        leases.won("live", "5", t0);
        // The WHIP POST that claimed it is still negotiating its offer.
        assert!(leases.plan(&[], t0 + Duration::from_secs(1)).is_empty());
        assert_eq!(
            leases.plan(&[], t0 + FRESH),
            vec![Step::Release {
                stream: "live".into(),
                epoch: "5".into()
            }]
        );
        leases.released("live");
        assert!(leases.plan(&[], t0 + FRESH).is_empty());
    }

    #[test]
    fn a_lost_claim_names_the_new_owner_and_is_claimed_anew_if_the_source_stays() {
        let t0 = Instant::now();
        let mut leases = Leases::default();
        leases.won("live", "5", t0);
        let t1 = t0 + Duration::from_secs(2);
        assert_eq!(leases.refreshed("live", &Refreshed::Kept, t1), None);
        assert_eq!(leases.get("live").map(|h| h.confirmed), Some(t1));
        assert_eq!(
            leases.refreshed("live", &Refreshed::Lost { node: "b".into() }, t1),
            Some("b".into())
        );
        assert_eq!(leases.get("live"), None);
        assert_eq!(
            leases.plan(&owned(&[("live", true)]), t1),
            vec![Step::Claim("live".into())]
        );
    }

    #[test]
    fn a_claim_recreated_after_redis_lost_it_keeps_its_epoch() {
        let t0 = Instant::now();
        let mut leases = Leases::default();
        leases.won("live", "5", t0);
        let t1 = t0 + Duration::from_secs(12);
        assert_eq!(leases.refreshed("live", &Refreshed::Recreated, t1), None);
        let h = leases.get("live").cloned();
        assert_eq!(
            h.map(|h| (h.epoch, h.since, h.confirmed)),
            Some(("5".into(), t0, t1))
        );
    }

    #[test]
    fn a_late_claim_of_this_node_under_another_epoch_is_adopted_not_lost() {
        let t0 = Instant::now();
        let mut leases = Leases::default();
        leases.won("live", "5", t0);
        let t1 = t0 + Duration::from_secs(11);
        let answer = Refreshed::Adopted { epoch: "9".into() };
        assert_eq!(leases.refreshed("live", &answer, t1), None);
        assert_eq!(
            leases.plan(&owned(&[("live", true)]), t1),
            vec![Step::Refresh {
                stream: "live".into(),
                epoch: "9".into(),
                live: true
            }]
        );
    }

    #[test]
    fn a_publisher_reconnecting_here_keeps_the_claim_and_a_new_epoch_restarts_it() {
        let t0 = Instant::now();
        let mut leases = Leases::default();
        leases.won("live", "5", t0);
        let t1 = t0 + Duration::from_secs(1);
        leases.won("live", "5", t1);
        assert_eq!(leases.get("live").map(|h| h.since), Some(t0));
        leases.won("live", "9", t1);
        assert_eq!(
            leases.get("live").map(|h| (h.epoch.as_str(), h.since)),
            Some(("9", t1))
        );
    }
}
