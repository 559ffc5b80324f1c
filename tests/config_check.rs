//! `wishd check-config FILE` and configuration errors as an operator sees them: exit
//! codes, FILE:LINE:COLUMN positions naming the key, and the precedence of flags over
//! WISHD_* variables over the file.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("wishd-check-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn write(name: &str, text: &str) -> PathBuf {
    let p = dir().join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn check(path: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_wishd"))
        .args(["check-config", path.to_str().unwrap()])
        .env_remove("WISHD_CONFIG")
        .output()
        .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn check_config_exits_0_for_the_example_file() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("wishd.example.toml");
    let out = check(&example);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).ends_with(": ok\n"));
}

#[test]
fn check_config_exits_2_naming_the_key_and_its_position() {
    let cases: [(&str, &str, &[&str]); 7] = [
        (
            "unknown.toml",
            "http = \"127.0.0.1:8080\"\nudpp = \"x\"\n",
            &[":2:1: ", "unknown field `udpp`"],
        ),
        (
            "nested.toml",
            "[limits]\nburst = 3\nmax_session = 4\n",
            &[":3:1: ", "unknown field `max_session`", "max_session = 4"],
        ),
        (
            "type.toml",
            "workers = \"four\"\n",
            &[":1:11: ", "workers = \"four\""],
        ),
        (
            "range.toml",
            "http = \"127.0.0.1:8080\"\n\n  workers = 65\n",
            &[":3:3: workers: 65 is more than the maximum of 64"],
        ),
        (
            "duplicate.toml",
            "[[rtp]]\nstream = \"a\"\nsdp = \"a.sdp\"\n[[rtp]]\nstream = \"a\"\nsdp = \"a.sdp\"\n",
            &[":5:1: rtp[1].stream: ", "configured twice"],
        ),
        (
            "missing-file.toml",
            "[api]\ntoken_file = \"/nonexistent/wishd/api.token\"\n",
            &["cannot read api.token_file /nonexistent/wishd/api.token"],
        ),
        (
            "short-token.toml",
            "[api]\ntoken = \"short\"\n",
            &["api: the admin token must be at least 16 characters"],
        ),
    ];
    for (name, text, wants) in cases {
        let path = write(name, text);
        let out = check(&path);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{name}: {err}");
        assert!(
            err.contains(&path.display().to_string()),
            "{name}: names the file: {err}"
        );
        for w in wants {
            assert!(err.contains(w), "{name}: {err:?} should contain {w:?}");
        }
        assert!(out.stdout.is_empty());
    }
    let out = check(&dir().join("does-not-exist.toml"));
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("cannot read config file"),
        "{}",
        stderr(&out)
    );
}

/// check-config reads every file start reads: a TURN secret file that cannot be read
/// used to pass check-config and then fail the start.
#[test]
fn check_config_reads_the_turn_secret_file_as_start_does() {
    let path = write(
        "turn-secret.toml",
        "[[ice_servers]]\nurls = [\"turn:turn.example.net\"]\n\
         static_auth_secret_file = \"/nonexistent/wishd/turn.secret\"\n",
    );
    let out = check(&path);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("ice_servers[0]")
            && err.contains("cannot read /nonexistent/wishd/turn.secret"),
        "{err}"
    );
    let readable = write("turn.secret", "s3cret\n");
    let path = write(
        "turn-secret-ok.toml",
        &format!(
            "[[ice_servers]]\nurls = [\"turn:turn.example.net\"]\nstatic_auth_secret_file = {:?}\n",
            readable.display().to_string()
        ),
    );
    let out = check(&path);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[test]
fn serving_with_an_invalid_file_gives_the_same_positioned_error() {
    let path = write("serve-range.toml", "workers = 65\n");
    let out = Command::new(env!("CARGO_BIN_EXE_wishd"))
        .args(["--config", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains(&format!("{}:1:1: workers: ", path.display())),
        "{}",
        stderr(&out)
    );
    // A flag that fixes the value wins over the file: the file's line is not blamed.
    let out = Command::new(env!("CARGO_BIN_EXE_wishd"))
        .args(["--config", path.to_str().unwrap(), "--workers", "70"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("invalid configuration: workers: 70"),
        "{}",
        stderr(&out)
    );
}

/// Kills the child if the test ends early.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts wishd and returns the HTTP address its banner names.
fn bound_http(args: &[&str], env: &[(&str, &str)]) -> String {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wishd"));
    cmd.args(args)
        .args(["--udp", "127.0.0.1:0", "--workers", "1", "--dev"])
        .env("RUST_LOG", "info")
        .env_remove("WISHD_HTTP")
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = Guard(cmd.spawn().unwrap());
    let out = child.0.stdout.take().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    for line in BufReader::new(out).lines().map_while(Result::ok) {
        if let Some(rest) = line.split("HTTP on http://").nth(1) {
            return rest.trim().to_owned();
        }
        assert!(Instant::now() < deadline, "no banner");
    }
    panic!("wishd ended without a banner");
}

#[test]
fn flags_win_over_environment_which_wins_over_the_file() {
    let path = write("precedence.toml", "http = \"127.0.0.2:0\"\n");
    let file = ["--config", path.to_str().unwrap()];
    assert!(
        bound_http(&file, &[]).starts_with("127.0.0.2:"),
        "file over defaults"
    );
    let env = [("WISHD_HTTP", "127.0.0.3:0")];
    assert!(
        bound_http(&file, &env).starts_with("127.0.0.3:"),
        "environment over file"
    );
    let mut with_flag = file.to_vec();
    with_flag.extend(["--http", "127.0.0.4:0"]);
    assert!(
        bound_http(&with_flag, &env).starts_with("127.0.0.4:"),
        "flag over environment"
    );
}

#[test]
fn the_systemd_unit_runs_unprivileged_with_a_checked_config_file() {
    let unit_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/wishd.service");
    let unit = std::fs::read_to_string(&unit_path).unwrap();
    let active: Vec<&str> = unit
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let has = |l: &str| active.contains(&l);
    assert!(
        has("DynamicUser=yes"),
        "runs as an unprivileged dynamic user"
    );
    assert!(has("NoNewPrivileges=yes") && has("CapabilityBoundingSet="));
    assert!(
        !active.iter().any(|l| l.starts_with("AmbientCapabilities=")),
        "no capability unless a port below 1024 needs it"
    );
    assert!(active.iter().any(|l| l.starts_with("LimitNOFILE=")));
    assert!(has(
        "ExecStart=/usr/local/bin/wishd --config /etc/wishd/wishd.toml"
    ));
    assert!(has(
        "ExecStartPre=/usr/local/bin/wishd check-config /etc/wishd/wishd.toml"
    ));
    // The unit's check step passes on the shipped example.
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("wishd.example.toml");
    assert_eq!(check(&example).status.code(), Some(0));
    // systemd's own checker, where systemd is installed, with this build's binary.
    let Ok(analyze) = which("systemd-analyze") else {
        println!("systemd-analyze not installed: unit syntax not verified by systemd");
        return;
    };
    let copy = dir().join("wishd.service");
    std::fs::write(
        &copy,
        unit.replace("/usr/local/bin/wishd", env!("CARGO_BIN_EXE_wishd")),
    )
    .unwrap();
    let out = Command::new(analyze)
        .arg("verify")
        .arg(&copy)
        .output()
        .unwrap();
    let msgs = format!("{}{}", stderr(&out), String::from_utf8_lossy(&out.stdout));
    assert!(
        out.status.success() && !msgs.contains("wishd.service:"),
        "{msgs}"
    );
}

fn which(name: &str) -> Result<PathBuf, ()> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .ok_or(())
}
