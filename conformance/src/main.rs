//! The WHIP/WHEP conformance runner (issue 5). Not built yet: see conformance/README.md.
fn main() {
    eprintln!("wishd-conformance: not built yet");
    std::process::exit(2);
}
