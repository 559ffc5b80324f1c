//! The embedded pages through a running server: GET and HEAD with their media types
//! and validators, 304 on a matching If-None-Match, 405 for other methods, and CORS on
//! the player so other sites can load it.

mod common;

use wishd::client::http_request;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_are_served_by_get_and_head_with_etag_and_cors_for_the_player() {
    let server = common::start().await;
    let base = server.base_url();
    let get = |path: &'static str, headers: Vec<(&'static str, String)>| {
        let url = format!("{base}{path}");
        async move {
            let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            http_request("GET", &url, &h, Vec::new())
                .await
                .expect("GET")
        }
    };

    for (path, ty) in [
        ("/", "text/html"),
        ("/publish.html", "text/html"),
        ("/watch.html", "text/html"),
        ("/player.js", "text/javascript"),
        ("/style.css", "text/css"),
    ] {
        let r = get(path, vec![]).await;
        assert_eq!(r.status, 200, "GET {path}");
        assert!(
            r.header("content-type").is_some_and(|t| t.starts_with(ty)),
            "GET {path}: {:?}",
            r.header("content-type")
        );
        assert_eq!(r.header("cache-control"), Some("no-cache"), "GET {path}");
        let etag = r.header("etag").expect("ETag").to_owned();
        let again = get(path, vec![("if-none-match", etag)]).await;
        assert_eq!(again.status, 304, "GET {path} with its ETag");
        assert!(again.body.is_empty(), "304 with a body");
    }

    let page = get("/watch.html", vec![]).await;
    let head = http_request("HEAD", &format!("{base}/watch.html"), &[], Vec::new())
        .await
        .expect("HEAD");
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty(), "HEAD with a body");
    assert_eq!(
        head.header("content-length"),
        Some(page.body.len().to_string().as_str()),
        "HEAD's Content-Length is GET's body length"
    );

    let post = http_request("POST", &format!("{base}/publish.html"), &[], Vec::new())
        .await
        .expect("POST");
    assert_eq!(post.status, 405);
    assert_eq!(post.header("allow"), Some("GET, HEAD"));

    let cross = get("/player.js", vec![("origin", "https://example.com".into())]).await;
    assert_eq!(cross.header("access-control-allow-origin"), Some("*"));
    assert!(
        std::str::from_utf8(&cross.body)
            .is_ok_and(|s| s.contains("customElements.define('wishd-player'")),
        "player.js defines <wishd-player>"
    );
    server.shutdown().await;
}
