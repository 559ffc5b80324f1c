use super::*;

#[test]
fn defaults_match_the_documented_ports() {
    let c = Config::default();
    assert_eq!(c.http.port(), 8080);
    assert_eq!(c.udp.port(), 8189);
    assert_eq!(c.publisher_grace, Duration::from_secs(30));
    c.validate().unwrap();
}

#[test]
fn file_keys_override_defaults_and_durations_read_as_text() {
    let c = Config::from_toml(
        "http = \"127.0.0.1:9000\"\npublisher_grace = \"5s\"\npublic_ips = [\"203.0.113.7\"]\n",
    )
    .unwrap();
    assert_eq!(c.http, "127.0.0.1:9000".parse().unwrap());
    assert_eq!(c.publisher_grace, Duration::from_secs(5));
    assert_eq!(c.public_ips, vec!["203.0.113.7".parse::<IpAddr>().unwrap()]);
    assert_eq!(c.udp.port(), 8189);
}

#[test]
fn takeover_policy_and_silence_read_as_text_and_a_zero_silence_is_refused() {
    assert_eq!(Config::default().publisher_takeover, Takeover::WhenSilent);
    for (text, want) in [
        ("never", Takeover::Never),
        ("when-silent", Takeover::WhenSilent),
        ("always", Takeover::Always),
    ] {
        let c = Config::from_toml(&format!("publisher_takeover = \"{text}\"\n")).unwrap();
        assert_eq!(c.publisher_takeover, want);
    }
    assert!(Config::from_toml("publisher_takeover = \"sometimes\"\n").is_err());
    let c = Config::from_toml("source_silence = \"250ms\"\n").unwrap();
    assert_eq!(c.source_silence, Duration::from_millis(250));
    let zero = Config::from_toml("source_silence = \"0s\"\n");
    assert!(zero.is_err() || zero.unwrap().validate().is_err());
}

#[test]
fn unknown_key_is_an_error_naming_the_key() {
    let e = Config::from_toml("htp = \"127.0.0.1:9000\"\n").unwrap_err();
    assert!(e.contains("htp"), "{e}");
}

#[test]
fn rtp_entries_from_the_file_and_the_flag() {
    let c = Config::from_toml(
        "rtp_timeout = \"3s\"\n[[rtp]]\nstream = \"cam\"\nbind = \"0.0.0.0\"\nallowed_sender = \"10.0.0.9\"\n\
         [rtp.video]\nport = 5004\npt = 96\nrtpmap = \"H264/90000\"\nfmtp = \"packetization-mode=1\"\n\
         [[rtp]]\nstream = \"cam2\"\nsdp = \"cam2.sdp\"\n",
    )
    .unwrap();
    assert_eq!(c.rtp.len(), 2);
    assert_eq!(c.rtp_timeout, Duration::from_secs(3));
    let v = c.rtp[0].video.as_ref().unwrap();
    assert_eq!((v.port, v.pt, v.rtpmap.as_str()), (5004, 96, "H264/90000"));
    assert_eq!(c.rtp[1].sdp.as_deref(), Some(Path::new("cam2.sdp")));
    let f = RtpEntry::from_flag("cam3=/tmp/x.sdp").unwrap();
    assert_eq!(f.stream, "cam3");
    assert!(RtpEntry::from_flag("cam3").is_err());
    assert!(RtpEntry::from_flag("=x.sdp").is_err());
    let dup = Config {
        rtp: vec![f.clone(), f],
        ..Config::default()
    };
    assert!(dup.validate().is_err());
}

#[test]
fn auth_cors_https_and_limits_tables_parse() {
    let c = Config::from_toml(
        r#"
cors_origins = ["https://player.example"]

[auth]
play = "token"
query_token = true

[[auth.tokens]]
token = "obs-stream-key-123"
streams = ["studio-*"]
actions = ["publish"]

[[auth.tokens]]
token_file = "/etc/wishd/viewer.token"

[auth.jwt]
public_key_file = "/etc/wishd/jwt.pub.pem"
issuer = "https://example.com"
audience = "wishd"
leeway = "10s"

[https]
addr = "0.0.0.0:8443"
cert = "certs/server.pem"
key = "certs/server.key"

[limits]
requests_per_second = 2
max_sessions = 100
"#,
    )
    .unwrap();
    c.validate().unwrap();
    assert_eq!(c.auth.publish, Policy::Token, "default kept");
    assert_eq!(c.auth.play, Policy::Token);
    assert_eq!(c.auth.tokens[0].actions, vec![Role::Publisher]);
    assert_eq!(c.auth.tokens[1].streams, vec!["*".to_string()]);
    assert_eq!(
        c.auth.tokens[1].actions,
        vec![Role::Publisher, Role::Viewer]
    );
    let jwt = c.auth.jwt.as_ref().unwrap();
    assert_eq!(jwt.leeway, Duration::from_secs(10));
    assert_eq!(c.https.as_ref().unwrap().addr.port(), 8443);
    assert_eq!(c.limits.requests_per_second, 2.0);
    assert_eq!(c.limits.burst, 20, "default kept");
    assert!(!format!("{c:?}").contains("obs-stream-key-123"));
    let e = Config::from_toml("[auth]\npublsh = \"open\"\n").unwrap_err();
    assert!(e.contains("publsh"), "{e}");
    let both = Config::from_toml("[[auth.tokens]]\n").unwrap();
    assert!(both.validate().is_err(), "a token entry needs a value");
}

#[test]
fn invalid_values_name_the_key_and_its_position_in_the_file() {
    let dir = std::env::temp_dir().join(format!("wishd-cfg-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("w.toml");
    let cases = [
        ("http = \"127.0.0.1:1\"\nworkers = 65\n", "workers", 2, 1),
        ("prepared_dtls = 10001\n", "prepared_dtls", 1, 1),
        (
            "[limits]\nburst = 3\n  requests_per_second = -1\n",
            "limits.requests_per_second",
            3,
            3,
        ),
        (
            "[[auth.tokens]]\ntoken = \"abcdefgh\"\n[[auth.tokens]]\nstreams = [\"x\"]\n",
            "auth.tokens[1]",
            3,
            1,
        ),
        (
            "[api]\nmetrics_token_required = true\n",
            "api.metrics_token_required",
            2,
            1,
        ),
    ];
    for (text, key, line, col) in cases {
        std::fs::write(&path, text).unwrap();
        let c = Config::from_file(&path).unwrap();
        let e = c.validate().unwrap_err().locate(&path).to_string();
        let want = format!("{}:{line}:{col}: {key}: ", path.display());
        assert!(e.starts_with(&want), "{e:?} should start with {want:?}");
    }
    // A value that did not come from the file keeps no position.
    let e = Config {
        workers: 99,
        ..Config::default()
    }
    .validate()
    .unwrap_err()
    .locate(&path)
    .to_string();
    assert!(e.starts_with("invalid configuration: workers: "), "{e}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn parse_errors_give_line_column_and_the_line() {
    let e = Config::from_toml("http = \"127.0.0.1:9000\"\nworkers = \"many\"\n").unwrap_err();
    assert!(e.starts_with("2:11: "), "{e}");
    assert!(e.contains("workers = \"many\""), "{e}");
    for (text, key, line) in [
        ("[limits]\nburts = 3\n", "burts", 2),
        ("[api]\ntokn = \"x\"\n", "tokn", 2),
        (
            "[https]\naddr = \"0.0.0.0:1\"\ncert = \"c\"\nkey = \"k\"\nalpn = 1\n",
            "alpn",
            5,
        ),
        ("[auth.jwt]\nsecret = \"s\"\nleway = \"1s\"\n", "leway", 3),
        (
            "[[rtp]]\nstream = \"a\"\n[rtp.video]\nport = 5004\npt = 96\nrtpmap = \"VP8/90000\"\nfmt = \"\"\n",
            "fmt",
            7,
        ),
        (
            "[[auth.tokens]]\ntoken = \"abcdefgh\"\nstream = [\"a\"]\n",
            "stream",
            3,
        ),
    ] {
        let e = Config::from_toml(text).unwrap_err();
        assert!(e.starts_with(&format!("{line}:")), "{key}: {e}");
        assert!(e.contains(&format!("unknown field `{key}`")), "{e}");
    }
}

const EXAMPLE: &str = include_str!("../../wishd.example.toml");

/// The example with its optional settings switched on: `# key = ...` and
/// `# [table]` lines lose their `# `; prose comments stay.
fn uncomment(text: &str) -> String {
    text.lines()
        .map(|l| {
            let rest = l.strip_prefix("# ").unwrap_or("");
            let key = rest.split('=').next().unwrap_or("").trim();
            let setting = rest.starts_with('[')
                || (rest.contains('=')
                    && !key.is_empty()
                    && key
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.'));
            if setting { rest } else { l }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every key path in a TOML value (arrays of tables without indices).
fn keys(v: &toml::Value, prefix: &str, out: &mut std::collections::BTreeSet<String>) {
    let toml::Value::Table(t) = v else {
        return;
    };
    for (k, v) in t {
        let path = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        out.insert(path.clone());
        match v {
            toml::Value::Table(_) => keys(v, &path, out),
            toml::Value::Array(a) => a.iter().for_each(|e| keys(e, &path, out)),
            _ => {}
        }
    }
}

/// A configuration with every optional part present. Written out field by field
/// (no `..Default::default()`), so a new field does not compile until it is here,
/// and then the test below wants it in the example file.
fn maximal() -> Config {
    let d = Config::default();
    let medium = RtpMediumEntry {
        port: 5004,
        pt: 96,
        rtpmap: "H264/90000".into(),
        fmtp: String::new(),
    };
    Config {
        http: d.http,
        udp: d.udp,
        public_ips: vec!["203.0.113.7".parse().unwrap()],
        workers: d.workers,
        prepared_dtls: 16,
        publisher_grace: d.publisher_grace,
        publisher_takeover: Takeover::Always,
        source_silence: d.source_silence,
        ice_timeout: d.ice_timeout,
        connect_timeout: d.connect_timeout,
        keyframe_request_interval: d.keyframe_request_interval,
        forward_max_delay: d.forward_max_delay,
        forward_hold: ForwardHold::Fixed(Duration::from_millis(5)),
        egress: Egress::Direct,
        retry_after_secs: d.retry_after_secs,
        rtp: vec![RtpEntry {
            stream: "cam".into(),
            sdp: Some("cam.sdp".into()),
            bind: Some("127.0.0.1".parse().unwrap()),
            multicast_group: Some("239.1.1.1".parse().unwrap()),
            multicast_interface: Some("192.0.2.5".parse().unwrap()),
            allowed_sender: Some("192.0.2.10".parse().unwrap()),
            video: Some(medium.clone()),
            audio: Some(medium),
            wait_when_offline: true,
        }],
        rtsp: vec![RtspEntry {
            stream: "door".into(),
            url: "rtsp://192.0.2.20:554/stream1".into(),
            credentials_file: Some("/etc/wishd/door.credentials".into()),
            transport: RtspTransport::Udp,
            on_demand: true,
            close_after: Duration::from_secs(20),
            wait_when_offline: true,
        }],
        pull: vec![PullEntry {
            stream: "origin-live".into(),
            url: "https://origin.example/whep/live".into(),
            token: Some(Secret::new("the-origin's-viewer-token")),
            on_demand: true,
            close_after: Duration::from_secs(20),
            wait_when_offline: true,
        }],
        push: vec![PushEntry {
            stream: "studio".into(),
            url: "https://cdn.example/whip/studio".into(),
            token: Some(Secret::new("the-cdn's-publish-token")),
        }],
        record: vec![RecordEntry {
            stream: "cam-*".into(),
            directory: "/var/lib/wishd/recordings".into(),
            segment: Duration::from_secs(300),
            always: false,
            max_age: Some(Duration::from_secs(7 * 86400)),
            max_bytes: Some(50_000_000_000),
        }],
        rtp_timeout: d.rtp_timeout,
        auth: AuthConfig {
            publish: d.auth.publish,
            play: d.auth.play,
            query_token: d.auth.query_token,
            tokens: vec![StaticTokenConfig {
                token: Some(Secret::new("t")),
                token_file: Some("t".into()),
                streams: all_streams(),
                actions: all_actions(),
            }],
            jwt: Some(JwtConfig {
                secret: Some(Secret::new("s")),
                secret_file: Some("s".into()),
                public_key_file: Some("k".into()),
                algorithm: Some("ES256".into()),
                issuer: Some("i".into()),
                audience: Some("a".into()),
                leeway: default_leeway(),
            }),
        },
        cors_origins: d.cors_origins,
        https: Some(HttpsConfig {
            addr: "0.0.0.0:8443".parse().unwrap(),
            cert: "c".into(),
            key: "k".into(),
        }),
        plain_http: d.plain_http,
        limits: d.limits,
        api: ApiConfig {
            token: Some(Secret::new("t")),
            token_file: Some("t".into()),
            metrics_token_required: false,
        },
        log_format: d.log_format,
        simulcast: SimulcastConfig { enabled: false },
        cluster: Some(ClusterConfig {
            redis: "redis://10.0.0.5:6379".into(),
            name: "main".into(),
            node: "edge-1".into(),
            url: "http://10.0.0.1:8080".into(),
            token: Some(Secret::new("shared-between-the-nodes")),
            lease_ttl: Duration::from_secs(6),
            relay_linger: Duration::from_secs(10),
            viewers: ClusterViewers::Redirect,
        }),
        ice_tcp: IceTcpConfig {
            enabled: false,
            max_connections: 9,
            idle_timeout: Duration::from_secs(9),
            stall_timeout: Duration::from_secs(3),
            queue: 64,
        },
        public_url: Some("https://media.example.com".into()),
        ice_servers: vec![IceServerConfig {
            urls: vec!["turn:t.example".into()],
            username: Some("u".into()),
            credential: Some(Secret::new("c")),
            static_auth_secret: Some(Secret::new("s")),
            static_auth_secret_file: Some("s".into()),
            ttl: DEFAULT_TTL,
        }],
        redirects: vec![RedirectConfig {
            stream: "eu-*".into(),
            kind: RedirectKind::Both,
            to: "https://eu.example.com/{kind}/{stream}".into(),
        }],
    }
}

#[test]
fn the_example_file_sets_every_key_to_its_default() {
    let c = Config::from_toml(EXAMPLE).expect("wishd.example.toml parses");
    assert_eq!(c, Config::default(), "the example documents the defaults");
    c.validate().unwrap();
}

#[test]
fn the_example_file_names_every_key() {
    let full = uncomment(EXAMPLE);
    // Every key written there is a real key (unknown keys are errors)...
    Config::from_toml(&full).expect("the example with its optional settings parses");
    let mut written = std::collections::BTreeSet::new();
    keys(&toml::from_str(&full).unwrap(), "", &mut written);
    // ...and every key of the configuration is written there.
    let mut all = std::collections::BTreeSet::new();
    keys(&toml::Value::try_from(maximal()).unwrap(), "", &mut all);
    let missing: Vec<&String> = all.difference(&written).collect();
    assert!(
        missing.is_empty(),
        "keys missing from wishd.example.toml: {missing:?}"
    );
    assert!(all.len() > 50, "the walk found the keys: {all:?}");
}

#[test]
fn the_removed_str0m_egress_is_refused_and_direct_still_loads() {
    let e = Config::from_toml("egress = \"str0m\"\n").unwrap_err();
    assert!(e.to_string().contains("egress"), "{e}");
    assert!(e.to_string().contains("direct"), "{e}");
    let c = Config::from_toml("egress = \"direct\"\n").unwrap();
    assert_eq!(c.egress, Egress::Direct);
}

#[test]
fn too_many_workers_is_refused() {
    let c = Config {
        workers: 65,
        ..Config::default()
    };
    assert!(c.validate().is_err());
}

#[test]
fn a_record_rule_needs_its_streams_and_directory_and_a_segment_of_a_second() {
    for (toml, key) in [
        ("[[record]]\ndirectory = \"/rec\"\n", "record[0].stream"),
        ("[[record]]\nstream = \"*\"\n", "record[0].directory"),
        (
            "[[record]]\nstream = \"*\"\ndirectory = \"/rec\"\nsegment = \"100ms\"\n",
            "record[0].segment",
        ),
    ] {
        let e = Config::from_toml(toml)
            .unwrap()
            .validate()
            .unwrap_err()
            .to_string();
        assert!(e.contains(key), "{toml}: {e}");
    }
    let ok = Config::from_toml("[[record]]\nstream = \"cam-*\"\ndirectory = \"/rec\"\n").unwrap();
    ok.validate().unwrap();
    assert_eq!(ok.record[0].segment, Duration::from_secs(60));
}

#[test]
fn a_cluster_needs_redis_this_node_s_url_and_a_token_of_sixteen_characters() {
    let good = "[cluster]\nredis = \"redis://10.0.0.5\"\nnode = \"a\"\n\
                url = \"http://10.0.0.1:8080\"\ntoken = \"0123456789abcdef\"\n";
    let c = Config::from_toml(good).unwrap();
    c.validate().unwrap();
    let cluster = c.cluster.expect("[cluster]");
    assert_eq!(cluster.lease_ttl, Duration::from_secs(6));
    assert_eq!(cluster.viewers, ClusterViewers::Relay);
    for (from, to, key) in [
        ("redis://10.0.0.5", "10.0.0.5:6379", "cluster.redis"),
        ("http://10.0.0.1:8080", "10.0.0.1:8080", "cluster.url"),
        ("0123456789abcdef", "short", "cluster.token"),
        ("node = \"a\"", "node = \"a b\"", "cluster.node"),
        (
            "[cluster]\n",
            "[cluster]\nlease_ttl = \"100ms\"\n",
            "cluster.lease_ttl",
        ),
    ] {
        let bad = good.replace(from, to);
        let e = Config::from_toml(&bad)
            .unwrap()
            .validate()
            .unwrap_err()
            .to_string();
        assert!(e.contains(key), "{bad}: {e}");
    }
}

#[test]
fn public_addresses_must_be_of_a_family_the_media_sockets_send_from() {
    let v4_only =
        Config::from_toml("udp = \"0.0.0.0:8189\"\npublic_ips = [\"2001:db8::7\"]\n").unwrap();
    let e = v4_only.validate().unwrap_err().to_string();
    assert!(e.contains("public_ips") && e.contains("[::]"), "{e}");
    for ok in [
        "udp = \"[::]:8189\"\npublic_ips = [\"2001:db8::7\", \"203.0.113.7\"]\n",
        "udp = \"[2001:db8::1]:8189\"\npublic_ips = [\"2001:db8::7\"]\n",
        "public_ips = [\"203.0.113.7\", \"2001:db8::7\"]\n",
    ] {
        Config::from_toml(ok).unwrap().validate().unwrap();
    }
    let v6_only =
        Config::from_toml("udp = \"[2001:db8::1]:8189\"\npublic_ips = [\"203.0.113.7\"]\n")
            .unwrap();
    assert!(v6_only.validate().is_err());
}

#[test]
fn a_forward_hold_past_50ms_is_refused_by_name_and_defaults_to_none() {
    assert_eq!(
        Config::default().forward_hold,
        ForwardHold::Fixed(Duration::ZERO)
    );
    let c = Config::from_toml("forward_hold = \"51ms\"\n").unwrap();
    let e = c.validate().unwrap_err().to_string();
    assert!(e.contains("forward_hold"), "{e}");
    let c = Config::from_toml("forward_hold = \"5ms\"\n").unwrap();
    c.validate().unwrap();
    assert_eq!(c.forward_hold, ForwardHold::Fixed(Duration::from_millis(5)));
}

#[test]
fn a_forward_hold_of_auto_follows_the_load_and_other_words_are_refused() {
    let c = Config::from_toml("forward_hold = \"auto\"\n").unwrap();
    c.validate().unwrap();
    assert_eq!(c.forward_hold, ForwardHold::Auto);
    let e = Config::from_toml("forward_hold = \"sometimes\"\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("forward_hold") && e.contains("auto"), "{e}");
}

#[test]
fn zero_connection_timeouts_are_refused_by_name() {
    for (toml, key) in [
        ("[limits]\nidle_timeout = \"0s\"\n", "limits.idle_timeout"),
        (
            "[limits]\nheader_read_timeout = \"0s\"\n",
            "limits.header_read_timeout",
        ),
        ("forward_max_delay = \"0s\"\n", "forward_max_delay"),
    ] {
        let c = Config::from_toml(toml).unwrap();
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains(key), "{e}");
    }
    let c = Config::from_toml("[limits]\nidle_timeout = \"90s\"\n").unwrap();
    assert_eq!(c.limits.idle_timeout, Duration::from_secs(90));
}

/// Every key of the configuration, as `table.key` paths.
fn all_keys() -> std::collections::BTreeSet<String> {
    let mut all = std::collections::BTreeSet::new();
    keys(&toml::Value::try_from(maximal()).unwrap(), "", &mut all);
    all
}

const REFERENCE: &str = include_str!("../../docs/configuration.md");

/// The pages where configuration keys are named, by file name.
const DOCS: [(&str, &str); 8] = [
    ("README.md", include_str!("../../README.md")),
    ("docs/configuration.md", REFERENCE),
    ("docs/security.md", include_str!("../../docs/security.md")),
    (
        "docs/operations.md",
        include_str!("../../docs/operations.md"),
    ),
    ("docs/protocol.md", include_str!("../../docs/protocol.md")),
    ("docs/media.md", include_str!("../../docs/media.md")),
    ("docs/cameras.md", include_str!("../../docs/cameras.md")),
    (
        "docs/benchmarks.md",
        include_str!("../../docs/benchmarks.md"),
    ),
];

/// The text between backticks in `page`.
fn code_spans(page: &str) -> impl Iterator<Item = &str> {
    page.split("```")
        .step_by(2)
        .flat_map(|prose| prose.split('`').skip(1).step_by(2))
}

#[test]
fn the_configuration_reference_names_every_key() {
    let named: std::collections::BTreeSet<&str> = code_spans(REFERENCE).collect();
    let all = all_keys();
    // A table whose keys are each named needs no row of its own.
    let is_table = |k: &str| all.iter().any(|o| o.starts_with(&format!("{k}.")));
    let missing: Vec<&String> = all
        .iter()
        .filter(|k| !named.contains(k.as_str()) && !is_table(k))
        .collect();
    assert!(
        missing.is_empty(),
        "keys missing from docs/configuration.md: {missing:?}"
    );
}

#[test]
fn every_configuration_key_the_docs_name_exists() {
    let all = all_keys();
    let tables: std::collections::BTreeSet<&str> = all
        .iter()
        .filter_map(|k| k.split_once('.').map(|(t, _)| t))
        .collect();
    let mut unknown = Vec::new();
    for (file, page) in DOCS {
        for span in code_spans(page) {
            // `limits.burst`, `auth.jwt.issuer`: a table's name, a dot, a key.
            let Some((table, _)) = span.split_once('.') else {
                continue;
            };
            let key_like = span
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b == b'_' || b == b'.');
            if key_like && tables.contains(table) && !all.contains(span) {
                unknown.push(format!("{file}: `{span}`"));
            }
        }
    }
    assert!(
        unknown.is_empty(),
        "no such configuration keys: {unknown:?}"
    );
}

#[test]
fn every_toml_example_in_the_docs_is_a_valid_configuration() {
    let mut checked = 0;
    for (file, page) in DOCS {
        for block in page.split("```toml\n").skip(1) {
            let block = block.split("```").next().unwrap_or("");
            if let Err(e) = Config::from_toml(block) {
                panic!("{file}: this example is refused: {e}\n{block}");
            }
            checked += 1;
        }
    }
    assert!(checked >= 6, "found only {checked} TOML examples");
}
