//! The README's recipes, run as a newcomer would run them. Every block marked
//! `<!-- recipe: NAME -->` is taken from README.md as written and run in a network
//! namespace of its own (so `localhost:8080` and the media ports are the recipe's
//! alone), with `wishd` on the PATH as the README says, against a freshly started
//! server. Real clients do the rest: FFmpeg 9's WHIP muxer and Debian's ffmpeg run their
//! commands verbatim, headless Chromium opens the pages and the embed snippet, and
//! OBS, which cannot run headless, is played by the project's OBS-like publisher
//! (libdatachannel, OBS's WebRTC stack) with the Server and Bearer Token the recipe
//! gives. A renamed flag or a wrong URL in the README fails here.

mod clients;
mod interop;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clients::{Netns, Script, conformance};
use serde_json::{Value, json};

/// The recipes the README has, each run by the tests below.
const RECIPES: [&str; 11] = [
    "env",
    "server",
    "obs",
    "ffmpeg",
    "browser",
    "camera-server",
    "camera",
    "watch",
    "embed",
    "https-server",
    "https-check",
];

/// A recipe's fenced block: its language and its text.
struct Recipe {
    lang: String,
    body: String,
}

fn recipes() -> BTreeMap<String, Recipe> {
    let readme = std::fs::read_to_string(clients::root().join("README.md")).expect("README.md");
    let mut out = BTreeMap::new();
    let mut lines = readme.lines();
    while let Some(line) = lines.next() {
        let Some(name) = line
            .trim()
            .strip_prefix("<!-- recipe:")
            .and_then(|r| r.strip_suffix("-->"))
        else {
            continue;
        };
        let fence = lines.next().unwrap_or("");
        let lang = fence
            .strip_prefix("```")
            .unwrap_or_else(|| panic!("recipe {name}: no code block right after its marker"));
        let body: Vec<&str> = lines.by_ref().take_while(|l| *l != "```").collect();
        let recipe = Recipe {
            lang: lang.to_owned(),
            body: body.join("\n") + "\n",
        };
        assert!(
            out.insert(name.trim().to_owned(), recipe).is_none(),
            "recipe {name} twice"
        );
    }
    out
}

fn recipe(name: &str) -> Recipe {
    recipes()
        .remove(name)
        .unwrap_or_else(|| panic!("README.md has no recipe {name}"))
}

/// `Field:   value` in a settings recipe.
fn field<'a>(recipe: &'a Recipe, name: &str) -> &'a str {
    recipe
        .body
        .lines()
        .find_map(|l| l.strip_prefix(name)?.trim_start().strip_prefix(':'))
        .map(str::trim)
        .unwrap_or_else(|| panic!("the recipe has no {name}: line:\n{}", recipe.body))
}

/// The one URL of a recipe that is a URL to open.
fn url(recipe: &Recipe) -> String {
    assert_eq!(recipe.lang, "text", "a URL recipe is plain text");
    recipe.body.trim().to_owned()
}

/// A directory a reader would work in: `wishd` on the PATH (the test's build of the
/// binary), the repository's `scripts/`, and nothing else. Removed on drop.
struct Workdir {
    dir: PathBuf,
}

impl Workdir {
    fn new(tag: &str) -> Workdir {
        let dir = std::env::temp_dir().join(format!("wishd-readme-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("bin")).expect("work directory");
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_wishd"), dir.join("bin/wishd"))
            .expect("wishd on the PATH");
        std::os::unix::fs::symlink(clients::root().join("scripts"), dir.join("scripts"))
            .expect("scripts/");
        Workdir { dir }
    }

    /// The PATH of the recipes: `wishd` first, then `first` (a directory), then the
    /// system's.
    fn path(&self, first: Option<&Path>) -> String {
        let mut parts = vec![self.dir.join("bin").display().to_string()];
        parts.extend(first.map(|p| p.display().to_string()));
        parts.push(std::env::var("PATH").unwrap_or_default());
        parts.join(":")
    }

    /// A directory whose `ffmpeg` is FFmpeg 9 with the WHIP muxer: the README's
    /// FFmpeg recipe wants FFmpeg 8 or later, Debian 12 has 5.1.
    fn ffmpeg_with_whip(&self) -> PathBuf {
        let dir = self.dir.join("ffmpeg9");
        std::fs::create_dir_all(&dir).expect("ffmpeg9/");
        std::os::unix::fs::symlink(interop::ffmpeg_with_whip(), dir.join("ffmpeg"))
            .expect("ffmpeg 9 on the PATH");
        dir
    }
}

impl Drop for Workdir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A recipe running in the background in its own process group (bash, and wishd or
/// ffmpeg under it), killed whole on drop.
struct Shell {
    script: Script,
    group: i32,
}

impl Drop for Shell {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the process group this test created for the recipe.
        unsafe { libc::kill(-self.group, libc::SIGKILL) };
    }
}

/// The publish token the `env` recipe makes.
fn token(work: &Workdir) -> String {
    let env = recipe("env");
    let script = format!("{}printf '%s' \"$WISHD_TOKEN\"", env.body);
    let out = std::process::Command::new("bash")
        .args(["-euo", "pipefail", "-c", &script])
        .current_dir(&work.dir)
        .output()
        .expect("bash runs");
    assert!(
        out.status.success(),
        "the env recipe failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(token.len() >= 32, "the env recipe made the token {token:?}");
    token
}

fn bash(
    ns: &Netns,
    work: &Workdir,
    body: &str,
    path: &str,
    token: &str,
) -> tokio::process::Command {
    let mut c = ns.command("bash");
    c.args(["-euo", "pipefail", "-c", body])
        .current_dir(&work.dir)
        .env("PATH", path)
        .env("WISHD_TOKEN", token)
        .env("RUST_LOG", "wishd=info")
        .env("NO_COLOR", "1");
    c
}

/// Starts `cmd` for `client` in a process group of its own.
fn group(client: &str, mut cmd: tokio::process::Command) -> Shell {
    cmd.process_group(0);
    let script = Script::spawn(client, cmd);
    let group = script.pid().expect("the process runs") as i32;
    Shell { script, group }
}

/// Starts recipe `name` in the background.
fn start(ns: &Netns, work: &Workdir, name: &str, path: &str, token: &str) -> Shell {
    let cmd = bash(ns, work, &recipe(name).body, path, token);
    group(&format!("README recipe {name}"), cmd)
}

/// Starts a server recipe and waits until it listens.
async fn start_server(ns: &Netns, work: &Workdir, name: &str, token: &str) -> Shell {
    let mut server = start(ns, work, name, &work.path(None), token);
    server
        .script
        .wait_for("wishd listening", Duration::from_secs(20))
        .await;
    server
}

/// `curl -s URL` inside the namespace.
async fn curl(ns: &Netns, url: &str) -> String {
    let out = ns
        .command("curl")
        .args(["-s", "--max-time", "2", url])
        .output()
        .await
        .expect("curl runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Waits until `/api/streams` lists each of `streams` live.
async fn wait_live(ns: &Netns, base: &str, streams: &[&str], server: &Shell) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let list: Value = serde_json::from_str(&curl(ns, &format!("{base}/api/streams")).await)
            .unwrap_or_default();
        let live = |name: &str| {
            list["streams"].as_array().is_some_and(|a| {
                a.iter()
                    .any(|s| s["name"] == name && s["source"]["state"] == "live")
            })
        };
        if streams.iter().all(|s| live(s)) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "not all of {streams:?} live after 30 s: {list}\nserver:\n{}",
            server.script.output()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The scheme, host and port of `url`.
fn base_of(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").expect("an absolute URL");
    format!("{scheme}://{}", rest.split('/').next().unwrap_or(""))
}

/// Runs `scenarios` in headless Chromium inside the namespace; every one must pass.
async fn chromium(ns: &Netns, scenarios: Value, server: &Shell) -> Vec<Value> {
    clients::require_playwright();
    let plan = json!({ "out": clients::out_dir(), "scenarios": scenarios });
    let mut node = ns.command("node");
    node.args([&conformance("browser/pages.mjs"), &plan.to_string()]);
    let v = clients::run("chromium (README recipes)", node, Duration::from_secs(150)).await;
    let results = v["results"].as_array().cloned().unwrap_or_default();
    assert!(!results.is_empty(), "chromium ran nothing: {v}");
    for r in &results {
        assert!(
            r["ok"] == true,
            "{}: failed at step \"{}\": {}\nserver:\n{}",
            r["name"],
            r["step"].as_str().unwrap_or("?"),
            r["error"].as_str().unwrap_or("?"),
            server.script.output()
        );
        println!("{}: {}", r["name"], r["figures"]);
    }
    results
}

#[test]
fn the_readme_has_exactly_the_recipes_these_tests_run() {
    let found: Vec<String> = recipes().into_keys().collect();
    let mut expected: Vec<String> = RECIPES.iter().map(|s| s.to_string()).collect();
    expected.sort();
    assert_eq!(found, expected);
}

/// The first server recipe, publishing from OBS (as libdatachannel), FFmpeg's WHIP
/// muxer and the browser's publish page, then watching on the watch page and in the
/// embedded player.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_recipes_publish_from_obs_ffmpeg_and_the_browser_and_play_in_chromium() {
    let work = Workdir::new("main");
    let token = token(&work);
    let ns = Netns::create("readme");
    let server = start_server(&ns, &work, "server", &token).await;

    // OBS's settings, as the reader types them into OBS.
    let obs = recipe("obs");
    assert_eq!(field(&obs, "Service"), "WHIP");
    assert!(
        field(&obs, "Bearer Token").contains("$WISHD_TOKEN"),
        "the OBS recipe's token is the one the env recipe makes"
    );
    let obs_url = field(&obs, "Server").to_owned();
    let base = base_of(&obs_url);
    let obs_stream = obs_url.rsplit('/').next().unwrap_or("").to_owned();
    let mut node = ns.command("node");
    node.args([&conformance("obs/whip-publish.mjs"), "--url", &obs_url])
        .args(["--token", &token, "--seconds", "120"]);
    // Its encoder (ffmpeg) runs under it: the group ends both.
    let _obs = group("OBS-like publisher (libdatachannel)", node);

    let ffmpeg9 = work.ffmpeg_with_whip();
    let _ffmpeg = start(&ns, &work, "ffmpeg", &work.path(Some(&ffmpeg9)), &token);
    let ffmpeg_body = recipe("ffmpeg").body;
    let ffmpeg_url = ffmpeg_body
        .split_whitespace()
        .find(|w| w.contains("/whip/"))
        .expect("the FFmpeg recipe names a WHIP URL");
    let ffmpeg_stream = ffmpeg_url.rsplit('/').next().unwrap_or("").to_owned();
    wait_live(&ns, &base, &[&obs_stream, &ffmpeg_stream], &server).await;

    // The browser's publish page, its own stream and token typed in.
    let publish = url(&recipe("browser"));
    let browser_stream = publish
        .split_once("stream=")
        .map(|(_, s)| s.split('&').next().unwrap_or(""))
        .expect("the publish URL names a stream")
        .to_owned();
    let watch = url(&recipe("watch"));
    let watch_obs = format!("stream={obs_stream}");
    assert!(
        watch.contains(&watch_obs),
        "the watch recipe plays what the OBS recipe publishes: {watch}"
    );
    let embed = recipe("embed");
    assert!(
        embed.body.contains(&format!("/whep/{obs_stream}")),
        "the embed recipe plays what the OBS recipe publishes"
    );
    let scenarios = json!([
        { "name": "README: publish from the browser, then watch", "kind": "publish-watch",
          "base": base_of(&publish), "stream": browser_stream, "codec": "H264",
          "resolution": "640x360", "token": token },
        { "name": "README: watch the OBS stream", "kind": "watch-page", "url": watch },
        { "name": "README: watch the FFmpeg stream", "kind": "watch-page",
          "url": watch.replace(&watch_obs, &format!("stream={ffmpeg_stream}")) },
        { "name": "README: the embed snippet on another site", "kind": "watch",
          "stream": obs_stream, "html": embed.body },
    ]);
    chromium(&ns, scenarios, &server).await;
}

/// The camera recipe: a server with an `[[rtp]]` stream, the test pattern pushed to it
/// by the camera script, and the watch page playing it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_camera_recipe_plays_in_chromium() {
    let work = Workdir::new("camera");
    let token = token(&work);
    let ns = Netns::create("readme-cam");
    let server = start_server(&ns, &work, "camera-server", &token).await;
    let _camera = start(&ns, &work, "camera", &work.path(None), &token);
    let config = recipe("camera-server").body;
    let stream = config
        .lines()
        .find_map(|l| l.trim().strip_prefix("stream = "))
        .map(|s| s.trim_matches('"').to_owned())
        .expect("the camera recipe names its stream");
    let watch = url(&recipe("watch"));
    let base = base_of(&watch);
    wait_live(&ns, &base, &[&stream], &server).await;
    let (page, _) = watch
        .split_once("stream=")
        .expect("the watch URL names a stream");
    let scenarios = json!([
        { "name": "README: watch the camera", "kind": "watch-page",
          "url": format!("{page}stream={stream}") },
    ]);
    chromium(&ns, scenarios, &server).await;
}

/// The HTTPS recipe: a development certificate, HTTPS alone, and a play token that
/// playing now needs, as its check says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_https_recipe_serves_tls_alone_and_playing_needs_the_token() {
    let work = Workdir::new("https");
    let token = token(&work);
    let ns = Netns::create("readme-tls");
    let server = start_server(&ns, &work, "https-server", &token).await;
    let check = bash(
        &ns,
        &work,
        &recipe("https-check").body,
        &work.path(None),
        &token,
    )
    .output()
    .await
    .expect("bash runs");
    let stdout = String::from_utf8_lossy(&check.stdout);
    assert!(
        check.status.success(),
        "the https-check recipe failed: {}{}\nserver:\n{}",
        stdout,
        String::from_utf8_lossy(&check.stderr),
        server.script.output()
    );
    let lines: Vec<&str> = stdout.lines().map(str::trim).collect();
    assert_eq!(
        lines,
        ["ok", "401"],
        "healthz over TLS, then a WHEP POST without the play token"
    );
    println!("https recipe: {lines:?}");
    // Plain HTTP is off, as the recipe says (--no-http).
    assert_eq!(curl(&ns, "http://localhost:8080/healthz").await, "");
}
