//! Janus as a peer WHEP server: Debian's `janus` (1.1.2) with its streaming plugin
//! serving one video-only RTP mountpoint (id 1, H.264 payload type 96), fronted by
//! Meetecho's janus-whep-server (npm, conformance/janus/whep-server.mjs), both inside
//! a test's network namespace.
//!
//! The configuration is conformance/janus/*.jcfg, templated into a directory of the
//! test (`janus -F DIR`): the streaming plugin and the WebSockets transport alone (on
//! 127.0.0.1), ICE gathered on the namespace's `v0` alone (127.0.0.2), the mountpoint
//! listening on [`Janus::RTP_HOST`]. Janus and every WHEP front are killed on drop.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::{Netns, Script, conformance};

/// How a WHEP front lets offers go (see conformance/janus/whep-server.mjs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Offers {
    /// janus-whep-server as shipped: the viewer's offer goes to Janus, and what Janus
    /// gives back is the response's body (201).
    Viewer,
    /// `--server-offers`: Janus offers (406), the viewer PATCHes its answer, as the
    /// library does for Janus 0.x.
    Server,
}

/// Ports and the first WHEP front of a [`Janus`].
#[derive(Clone, Debug)]
pub struct JanusOptions {
    /// Janus's WebSockets API (127.0.0.1).
    pub ws_port: u16,
    /// The mountpoint's RTP port (on [`Janus::RTP_HOST`]).
    pub rtp_port: u16,
    /// The first WHEP front's HTTP port (every address of the namespace).
    pub whep_port: u16,
    /// Its endpoint: POST /whep/endpoint/{endpoint}.
    pub endpoint: String,
    /// A Bearer token its endpoint requires, if any.
    pub token: Option<String>,
    pub offers: Offers,
}

impl Default for JanusOptions {
    fn default() -> Self {
        JanusOptions {
            ws_port: 8188,
            rtp_port: 5004,
            whep_port: 7090,
            endpoint: "cam".to_owned(),
            token: None,
            offers: Offers::Viewer,
        }
    }
}

/// Janus and its WHEP fronts, running in a namespace.
pub struct Janus {
    janus: Script,
    fronts: Vec<Script>,
    whep_url: String,
    opts: JanusOptions,
    ns: String,
    pub dir: PathBuf,
}

fn fail(what: &str, script_out: &str, janus_log: &str) -> ! {
    panic!(
        "{what}\n--- its output ---\n{}\n--- Janus's log (tail) ---\n{}",
        tail(script_out, 40),
        tail(janus_log, 60)
    )
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

impl Janus {
    /// Where a camera sends the mountpoint's RTP (inside the namespace).
    pub const RTP_HOST: &str = "127.0.0.1";

    /// Writes the configuration into `dir`, starts Janus inside `ns`, then the first
    /// WHEP front; returns once Janus listens and the front serves.
    pub async fn start(ns: &Netns, dir: &Path, opts: JanusOptions) -> Janus {
        super::require("/usr/bin/janus", "apt-get install janus");
        super::require(
            &conformance("node_modules/janus-whep-server/package.json"),
            "Run `npm ci` in conformance/.",
        );
        std::fs::create_dir_all(dir).expect("temp dir");
        for name in [
            "janus.jcfg",
            "janus.transport.websockets.jcfg",
            "janus.plugin.streaming.jcfg",
        ] {
            let template = std::fs::read_to_string(conformance(&format!("janus/{name}")))
                .unwrap_or_else(|e| panic!("conformance/janus/{name}: {e}"));
            let text = template
                .replace("@DIR@", &dir.display().to_string())
                .replace("@WS_PORT@", &opts.ws_port.to_string())
                .replace("@RTP_HOST@", Self::RTP_HOST)
                .replace("@RTP_PORT@", &opts.rtp_port.to_string());
            std::fs::write(dir.join(name), text).expect("janus config");
        }
        let mut c = ns.command("/usr/bin/janus");
        c.arg("-F")
            .arg(dir)
            .arg("-C")
            .arg(dir.join("janus.jcfg"))
            // No colours; the log goes to stdout, which the Script keeps.
            .arg("-o");
        let mut janus = Script::spawn("janus (in netns)", c);
        let deadline = Instant::now() + Duration::from_secs(10);
        for needle in [
            "JANUS Streaming plugin initialized!".to_owned(),
            format!("Websockets server started (port {})", opts.ws_port),
        ] {
            loop {
                let log = janus.output();
                if log.contains(&needle) {
                    break;
                }
                if let Some(status) = janus.exited() {
                    fail(
                        &format!("janus exited ({status}) before logging {needle:?}"),
                        "",
                        &log,
                    );
                }
                if Instant::now() > deadline {
                    fail(&format!("janus: no {needle:?} after 10 s"), "", &log);
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        }
        let mut me = Janus {
            janus,
            fronts: Vec::new(),
            whep_url: String::new(),
            ns: ns.name.clone(),
            dir: dir.to_owned(),
            opts: opts.clone(),
        };
        me.whep_url = me
            .add_front(
                ns,
                opts.whep_port,
                &opts.endpoint,
                opts.token.as_deref(),
                opts.offers,
            )
            .await;
        me
    }

    /// Starts another janus-whep-server in front of this Janus (mountpoint 1), HTTP on
    /// `port`, endpoint `endpoint`; returns its endpoint URL once it serves.
    pub async fn add_front(
        &mut self,
        ns: &Netns,
        port: u16,
        endpoint: &str,
        token: Option<&str>,
        offers: Offers,
    ) -> String {
        assert_eq!(ns.name, self.ns, "a front runs in Janus's namespace");
        let mut c = ns.command("node");
        c.arg(conformance("janus/whep-server.mjs"));
        if offers == Offers::Server {
            c.arg("--server-offers");
        }
        c.arg(format!("ws://127.0.0.1:{}", self.opts.ws_port))
            .arg(port.to_string())
            .arg(endpoint);
        if let Some(t) = token {
            c.arg(t);
        }
        let mut front = Script::spawn(&format!("janus-whep-server :{port}"), c);
        let deadline = Instant::now() + Duration::from_secs(15);
        let url = loop {
            let out = front.output();
            let ready = out.lines().find_map(|l| {
                let v: serde_json::Value = serde_json::from_str(l.trim()).ok()?;
                (v["event"] == "ready").then(|| v["url"].as_str().map(str::to_owned))?
            });
            if let Some(url) = ready {
                break url;
            }
            if let Some(status) = front.exited() {
                fail(
                    &format!(
                        "janus-whep-server on port {port} exited ({status}) before it was ready"
                    ),
                    &out,
                    &self.janus.output(),
                );
            }
            if Instant::now() > deadline {
                fail(
                    &format!("janus-whep-server on port {port}: not ready after 15 s"),
                    &out,
                    &self.janus.output(),
                );
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        };
        self.fronts.push(front);
        url
    }

    /// The first front's endpoint URL (POST offers here), as the namespace sees it.
    pub fn whep_url(&self) -> &str {
        &self.whep_url
    }

    /// The Janus process's PID (for CPU and memory from /proc).
    pub fn janus_pid(&self) -> u32 {
        self.janus.pid().expect("janus is running")
    }

    /// The mountpoint's RTP port, on [`Janus::RTP_HOST`]: where a camera sends.
    pub fn rtp_port(&self) -> u16 {
        self.opts.rtp_port
    }

    /// The last `n` lines of Janus's log, for failure messages.
    pub fn log_tail(&self, n: usize) -> String {
        tail(&self.janus.output(), n)
    }

    /// The last `n` lines each front wrote.
    pub fn fronts_tail(&self, n: usize) -> String {
        self.fronts
            .iter()
            .map(|f| tail(&f.output(), n))
            .collect::<Vec<_>>()
            .join("\n---\n")
    }

    /// Janus's resident memory (kB) and CPU time so far (user + system, ms).
    pub fn janus_usage(&self) -> (u64, u64) {
        let pid = self.janus_pid();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let rss_kb = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0);
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // Fields after the command name (which is in parentheses): utime and stime are
        // the 12th and 13th of them, in clock ticks.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map_or("", |(_, rest)| rest)
            .split_whitespace()
            .collect();
        let ticks: u64 = [11, 12]
            .iter()
            .filter_map(|&i| fields.get(i)?.parse::<u64>().ok())
            .sum();
        // SAFETY: sysconf(3) with a valid name has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
        (rss_kb, ticks * 1000 / hz)
    }
}
