//! What recording one stream costs the server: a 2.5 Mbit/s H.264 stream with 64 kbit/s
//! Opus written to fragmented MP4 by the recorder's writer on one thread, as fast as
//! it goes (depacketizing, boxes, file writes). Prints the time per second of media,
//! the share of one core that is, the time per packet and what it buffers.
//!
//!     cargo bench --bench record [-- SECONDS]

fn main() {
    let secs: u32 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(120);
    let dir = std::env::temp_dir().join(format!("wishd-bench-record-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    for round in 1..=3 {
        let r = wishd::record::bench::run(&dir, secs, 2_500_000);
        let per_media_sec = r.spent.as_secs_f64() / r.media_secs;
        println!(
            "round {round}: {:.0} s of 2.5 Mbit/s H.264 + Opus ({} packets, {:.1} MB written) in \
             {:.3} s: {:.2} ms per second of media = {:.3} % of one core per recorded stream, \
             {:.2} µs per packet; at most {:.0} KB of samples held before a fragment",
            r.media_secs,
            r.packets,
            r.bytes_written as f64 / 1e6,
            r.spent.as_secs_f64(),
            per_media_sec * 1e3,
            per_media_sec * 100.0,
            r.spent.as_secs_f64() * 1e6 / r.packets as f64,
            r.peak_buffered as f64 / 1e3,
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
