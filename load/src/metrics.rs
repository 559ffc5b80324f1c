//! Reading a Prometheus histogram and gauges from a server's `/metrics` (text
//! exposition format), to report the server's own forwarding latency (and wishd's
//! worker load and forward hold) beside the tool's figures.

use wishd::client::http_request;

/// The cumulative buckets of one histogram, summed over its label sets.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Buckets {
    /// (upper bound in the metric's unit, cumulative count), sorted by bound;
    /// `+Inf` is `f64::INFINITY`.
    pub le: Vec<(f64, f64)>,
}

impl Buckets {
    /// `self - before`, bucket by bucket (for a window between two scrapes).
    pub fn since(&self, before: &Buckets) -> Buckets {
        let le = self
            .le
            .iter()
            .map(|&(b, c)| {
                let old = before
                    .le
                    .iter()
                    .find(|(ob, _)| *ob == b)
                    .map_or(0.0, |x| x.1);
                (b, (c - old).max(0.0))
            })
            .collect();
        Buckets { le }
    }

    /// Observations.
    pub fn count(&self) -> f64 {
        self.le.last().map_or(0.0, |x| x.1)
    }

    /// The `q` quantile by linear interpolation inside the bucket (as Prometheus'
    /// `histogram_quantile`); `None` without observations.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let total = self.count();
        if total <= 0.0 {
            return None;
        }
        let rank = q.clamp(0.0, 1.0) * total;
        let mut prev_bound = 0.0;
        let mut prev_count = 0.0;
        for &(bound, count) in &self.le {
            if count >= rank {
                if bound.is_infinite() {
                    return Some(prev_bound);
                }
                let in_bucket = count - prev_count;
                let frac = if in_bucket > 0.0 {
                    (rank - prev_count) / in_bucket
                } else {
                    1.0
                };
                return Some(prev_bound + (bound - prev_bound) * frac);
            }
            prev_bound = bound;
            prev_count = count;
        }
        Some(prev_bound)
    }
}

/// Finds the `NAME_bucket` series of a histogram in exposition text. `None` when
/// the histogram is absent.
pub fn parse_histogram(text: &str, name: &str) -> Option<Buckets> {
    let prefix = format!("{name}_bucket");
    let mut le: Vec<(f64, f64)> = Vec::new();
    for (labels, value) in series(text, &prefix) {
        let Some(bound) = label(labels, "le").and_then(|b| match b {
            "+Inf" => Some(f64::INFINITY),
            b => b.parse::<f64>().ok(),
        }) else {
            continue;
        };
        match le.iter_mut().find(|(b, _)| *b == bound) {
            Some(e) => e.1 += value,
            None => le.push((bound, value)),
        }
    }
    if le.is_empty() {
        return None;
    }
    le.sort_by(|a, b| a.0.total_cmp(&b.0));
    Some(Buckets { le })
}

/// The largest value of the gauge `name` over its label sets; `None` when absent.
pub fn parse_gauge_max(text: &str, name: &str) -> Option<f64> {
    series(text, name).map(|(_, v)| v).reduce(f64::max)
}

/// The value of the counter `name` whose label `key` is `value`, summed over its
/// other labels; `None` when no such series is there.
pub fn parse_counter_with(text: &str, name: &str, key: &str, value: &str) -> Option<f64> {
    series(text, name)
        .filter(|(labels, _)| label(labels, key) == Some(value))
        .map(|(_, v)| v)
        .reduce(|a, b| a + b)
}

/// The samples of `name` in exposition text, `name{labels} value` or `name value`
/// (labels empty), as (labels, value); a longer name that starts with `name` is not
/// one of them.
fn series<'a>(text: &'a str, name: &'a str) -> impl Iterator<Item = (&'a str, f64)> + 'a {
    text.lines().filter_map(move |line| {
        let rest = line.trim().strip_prefix(name)?;
        let (labels, rest) = match rest.strip_prefix('{') {
            Some(r) => {
                let close = r.find('}')?;
                (&r[..close], &r[close + 1..])
            }
            None => ("", rest.strip_prefix(' ')?),
        };
        Some((labels, rest.split_whitespace().next()?.parse::<f64>().ok()?))
    })
}

fn label<'a>(labels: &'a str, name: &str) -> Option<&'a str> {
    for part in labels.split(',') {
        let (k, v) = part.split_once('=')?;
        if k.trim() == name {
            return Some(v.trim().trim_matches('"'));
        }
    }
    None
}

/// [`scrape`] when there is a metrics URL.
pub async fn scrape_from(url: Option<&str>, name: &str) -> Option<Buckets> {
    parse_histogram(&scrape_text(url?).await?, name)
}

/// The exposition text at `url`, if it answers 200.
pub async fn scrape_text(url: &str) -> Option<String> {
    let r = http_request("GET", url, &[], Vec::new()).await.ok()?;
    (r.status == 200).then(|| r.text())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"# HELP wishd_forward_latency_seconds Source packet arrival to the last viewer's send.
# TYPE wishd_forward_latency_seconds histogram
wishd_forward_latency_seconds_bucket{worker="0",le="0.0001"} 10
wishd_forward_latency_seconds_bucket{worker="0",le="0.001"} 90
wishd_forward_latency_seconds_bucket{worker="0",le="+Inf"} 100
wishd_forward_latency_seconds_bucket{worker="1",le="0.0001"} 0
wishd_forward_latency_seconds_bucket{worker="1",le="0.001"} 0
wishd_forward_latency_seconds_bucket{worker="1",le="+Inf"} 0
wishd_forward_latency_seconds_sum 0.05
wishd_forward_latency_seconds_count 100
wishd_other_bucket{le="1"} 5
"#;

    #[test]
    fn parses_sums_label_sets_and_interpolates() {
        let h = parse_histogram(TEXT, "wishd_forward_latency_seconds").unwrap();
        assert_eq!(h.le.len(), 3);
        assert_eq!(h.count(), 100.0);
        let p50 = h.quantile(0.5).unwrap();
        assert!((p50 - 0.00055).abs() < 1e-9, "{p50}");
        assert_eq!(
            h.quantile(0.99),
            Some(0.001),
            "in +Inf: the last finite bound"
        );
        assert!(parse_histogram(TEXT, "absent").is_none());
        let later = Buckets {
            le: h.le.iter().map(|&(b, c)| (b, c * 2.0)).collect(),
        };
        assert_eq!(later.since(&h), h);
        assert_eq!(Buckets::default().quantile(0.5), None);
    }

    #[test]
    fn a_gauge_is_the_largest_of_its_label_sets_and_not_a_longer_name() {
        let text = "# TYPE g gauge\ng{worker=\"0\"} 0.25\ng{worker=\"1\"} 0.5\ng_total 9\nh 1\n";
        assert_eq!(parse_gauge_max(text, "g"), Some(0.5));
        assert_eq!(parse_gauge_max("g 3\n", "g"), Some(3.0));
        assert_eq!(parse_gauge_max(text, "absent"), None);
    }

    #[test]
    fn a_counter_is_read_by_one_label_value() {
        let text =
            "c_total{how=\"parsed\"} 3\nc_total{how=\"copied\"} 197\nc_totally{how=\"copied\"} 1\n";
        assert_eq!(
            parse_counter_with(text, "c_total", "how", "copied"),
            Some(197.0)
        );
        assert_eq!(
            parse_counter_with(text, "c_total", "how", "parsed"),
            Some(3.0)
        );
        assert_eq!(parse_counter_with(text, "c_total", "how", "other"), None);
    }
}
