//! `scripts/check-arrows.sh` holds for the source tree, and fails, naming the rule,
//! when any one rule is broken on purpose in a copy of it.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs the script on `src`: (exit code, output).
fn check(src: &Path) -> (i32, String) {
    let out = Command::new("bash")
        .arg(root().join("scripts/check-arrows.sh"))
        .arg(src)
        .output()
        .expect("bash runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[test]
fn every_layout_rule_holds_for_the_source_tree() {
    let (code, out) = check(&root().join("src"));
    assert_eq!(code, 0, "{out}");
}

#[test]
fn each_broken_rule_fails_the_check_and_is_named() {
    // (file, line put at its top, words of the rule the check must name)
    let cases = [
        (
            "core/pacer.rs",
            "use tokio::sync::mpsc;",
            "core/ is sans-IO: no tokio",
        ),
        (
            "core/pacer.rs",
            "fn t() { let _ = std::time::Instant::now(); }",
            "time is passed in",
        ),
        (
            "wire/rtp.rs",
            "use crate::core::SourcePacket;",
            "wire imports only model",
        ),
        (
            "sdp/trim.rs",
            "use crate::directory::Stream;",
            "sdp imports only model",
        ),
        (
            "media/pool.rs",
            "use crate::http::ApiError;",
            "media/ and ingest/ import no http",
        ),
        (
            "ingest/mod.rs",
            "fn e() -> String { new_etag() }",
            "make no ETag",
        ),
        ("http/ops/mod.rs", "    \"whip\" => 1,", "one router"),
        (
            "http/whip_whep.rs",
            "        true => StatusCode::NOT_FOUND,",
            "one status map",
        ),
        (
            "server.rs",
            "fn validate(&self) -> Result<(), ConfigError> {",
            "config validated in one place",
        ),
        ("ingest/mod.rs", "struct SenderReport;", "one SenderReport"),
        (
            "core/codec.rs",
            "        NAL_STAP_A => true,",
            "H.264 payloads are walked in wire/h264.rs only",
        ),
        (
            "sdp/mod.rs",
            "        Codec::Opus => \"opus\",",
            "codec names are mapped in model.rs only",
        ),
        (
            "media/worker/mod.rs",
            "fn m(s: &Stream) { s.viewer_workers.fetch_or(1, Ordering::AcqRel); }",
            "viewer mask",
        ),
        (
            "media/udp.rs",
            "// halved the calls in the seventh session",
            "no benchmark history",
        ),
        (
            "directory/mod.rs",
            "use crate::media::Media;",
            "no import circle",
        ),
    ];
    let base = std::env::temp_dir().join(format!("wishd-arrows-{}", std::process::id()));
    for (i, (file, line, rule)) in cases.iter().enumerate() {
        let copy = base.join(i.to_string());
        copy_dir(&root().join("src"), &copy);
        let path = copy.join(file);
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, format!("{line}\n{text}")).unwrap();
        let (code, out) = check(&copy);
        assert_eq!(code, 1, "{file} with {line:?} passed:\n{out}");
        assert!(
            out.contains(rule),
            "{file} with {line:?}: the check should name {rule:?}:\n{out}"
        );
        // Only the rule that was broken (an import may close a circle as well).
        let others = out
            .lines()
            .filter(|l| l.starts_with("broken: ") && !l.contains(rule))
            .filter(|l| !l.contains("no import circle"))
            .count();
        assert_eq!(others, 0, "{file} with {line:?}:\n{out}");
    }
    let _ = std::fs::remove_dir_all(&base);
}
