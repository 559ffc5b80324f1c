//! What wishd's inspection of a WHEP offer costs on the request's thread: the whole
//! parse (simulcast declined, sdp-types, the summary) against the verdict remembered
//! from an earlier offer of the same player (`sdp::memo`), which still splits the
//! offer into template and own values and checks the own lines. The offer is
//! Chromium's (`fuzz/seeds/sdp_offer/whep_chromium.sdp`), each client with its own
//! ICE credentials, candidates and origin.
//!
//!     cargo bench --bench offer [-- OFFERS]

use std::hint::black_box;
use std::time::{Duration, Instant};

use wishd::sdp::memo::Inspections;
use wishd::sdp::{decline_simulcast, parse_offer};

fn main() {
    let n: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(2000);
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fuzz/seeds/sdp_offer/whep_chromium.sdp"
    );
    let chromium = std::fs::read_to_string(path).expect("the captured Chromium offer");
    let chromium = chromium.replace("\r\n", "\n").replace('\n', "\r\n");
    let clients: Vec<String> = (0..n)
        .map(|i| {
            chromium
                .replace("a=ice-ufrag:2eAw", &format!("a=ice-ufrag:u{i:04}"))
                .replace("8555770282753825854", &format!("{}", 1_000_000 + i))
                .replace(" 35695 typ", &format!(" {} typ", 30000 + i % 30000))
        })
        .collect();

    let whole = per_offer(&clients, |offer| {
        let declined = decline_simulcast(offer);
        black_box(parse_offer(declined.as_bytes()).expect("parses"));
    });
    let memo = Inspections::default();
    let first = memo.play_offer(&clients[0]).expect("parses");
    assert!(!first.remembered);
    let remembered = per_offer(&clients[1..], |offer| {
        let got = memo.play_offer(offer).expect("parses");
        assert!(got.remembered);
        black_box(got);
    });
    println!(
        "WHEP offer from Chromium ({} bytes), {n} clients, per offer:",
        chromium.len()
    );
    println!("  inspection, whole parse:       {:>7.1} µs", micros(whole));
    println!(
        "  inspection, remembered:        {:>7.1} µs",
        micros(remembered)
    );
    println!(
        "  remembered / whole:            {:>7.2}×",
        remembered.as_secs_f64() / whole.as_secs_f64()
    );
}

/// The median of five runs over `offers`, per offer.
fn per_offer(offers: &[String], mut f: impl FnMut(&str)) -> Duration {
    let mut runs: Vec<Duration> = (0..5)
        .map(|_| {
            let t = Instant::now();
            for o in offers {
                f(o);
            }
            t.elapsed() / offers.len() as u32
        })
        .collect();
    runs.sort();
    runs[2]
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}
