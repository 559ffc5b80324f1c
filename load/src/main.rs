//! The WHIP/WHEP load generator (issue 7). Not built yet.
fn main() {
    eprintln!("wishd-load: not built yet");
    std::process::exit(2);
}
