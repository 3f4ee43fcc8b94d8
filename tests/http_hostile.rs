//! Hostile requests: each gets a 4xx with one clear sentence, stores nothing, and the server
//! keeps answering others.
#![cfg(feature = "server")]

use activitylog::http::{router, ApiConfig};
use activitylog::Store;
use axum::body::{to_bytes, Body};
use axum::http::{Request, StatusCode};
use tower::ServiceExt;

async fn send(app: &axum::Router, req: Request<Body>) -> (StatusCode, String) {
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let body = to_bytes(resp.into_body(), usize::MAX).await.unwrap();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn hostile_requests_get_a_4xx_sentence_and_store_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let app = router(store.clone(), ApiConfig::new().max_body_bytes(8 << 20));
    let deep = format!("{{\"a\":{}1{}}}", "[".repeat(100_000), "]".repeat(100_000));
    let big_line = format!("{{\"a\":\"{}\"}}", "x".repeat(2 << 20));
    let over_body = "{}\n".repeat((8 << 20) / 3 + 1);
    let many_p: String = (0..2_000).map(|i| format!("p={i}&")).collect();
    let posts: Vec<(&str, Vec<u8>, StatusCode)> = vec![
        (
            "invalid UTF-8",
            b"{\"a\":\"\xff\xfe\"}".to_vec(),
            StatusCode::BAD_REQUEST,
        ),
        (
            "nested 100,000 deep",
            deep.into_bytes(),
            StatusCode::BAD_REQUEST,
        ),
        (
            "a 2 MiB line",
            big_line.into_bytes(),
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
        (
            "a body over the limit",
            over_body.into_bytes(),
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
        ("a JSON array", b"[{}]".to_vec(), StatusCode::BAD_REQUEST),
        ("a NUL byte", b"{}\0".to_vec(), StatusCode::BAD_REQUEST),
    ];
    for (what, body, want) in posts {
        let (status, text) = send(
            &app,
            Request::post("/activity/1").body(Body::from(body)).unwrap(),
        )
        .await;
        assert_eq!(status, want, "{what}: {text}");
        assert_eq!(
            text.trim_end().lines().count(),
            1,
            "{what}: one sentence, got {text:?}"
        );
        assert!(text.len() < 300, "{what}: short, got {} bytes", text.len());
    }
    let gets = [
        ("thousands of p", format!("/activity/projects?{many_p}")),
        ("negative count", "/activity/1?count=-5".to_string()),
        (
            "overflowing count",
            "/activity/1?count=99999999999999999999999".to_string(),
        ),
        (
            "overflowing pcount",
            "/activity/projects?pcount=18446744073709551616".to_string(),
        ),
        (
            "malformed filter",
            "/activity/1?filter=%5B%22a%22%2C%22%3D%3D%22%2C%5B1%5D%5D".to_string(),
        ),
        ("filter not JSON", "/activity/1?filter=%7B".to_string()),
        ("unknown meta", "/activity/1?meta=_secret".to_string()),
        ("unknown format", "/activity/1?format=xml".to_string()),
    ];
    for (what, uri) in gets {
        let (status, text) = send(
            &app,
            Request::get(uri.as_str()).body(Body::empty()).unwrap(),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{what}: {text}");
        assert_eq!(text.trim_end().lines().count(), 1, "{what}: {text:?}");
    }
    for uri in [
        "/activity/..%2F..%2Fetc",
        "/activity/%2e%2e",
        "/activity/1%2F2",
        "/activity/0x10",
        "/activity/+5",
        "/activity/%201",
        "/activity/1/../2",
    ] {
        for req in [
            Request::get(uri).body(Body::empty()).unwrap(),
            Request::post(uri).body(Body::from("{}")).unwrap(),
        ] {
            let (status, text) = send(&app, req).await;
            assert!(status.is_client_error(), "{uri}: {status} {text}");
        }
    }
    // Nothing was stored anywhere, and the server still answers.
    assert_eq!(store.projects().unwrap(), Vec::<u64>::new());
    let (status, _) = send(
        &app,
        Request::post("/activity/1")
            .body(Body::from("{\"ok\":1}"))
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (_, text) = send(
        &app,
        Request::get("/activity/1").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(text, "{\"ok\":1}\n");
}

#[tokio::test]
async fn values_echoed_in_an_error_are_escaped_and_cut_short() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let app = router(store.clone(), ApiConfig::new());
    let deep = format!("{}{}", "%5B".repeat(200), "%5D".repeat(200));
    let long = "9".repeat(5_000);
    let uris = [
        "/activity/1?count=%0Aabc".to_string(),
        "/activity/projects?pcount=1%0D%0A2".to_string(),
        "/activity/projects?p=%0Aabc".to_string(),
        "/activity/1?format=j%0Ason".to_string(),
        "/activity/1?meta=_ts%0A".to_string(),
        format!("/activity/1?filter={deep}"),
        "/activity/1?filter=%5B%22a%0Ab%22%2C%22%3D%22%2C%5B%5D%5D".to_string(),
        "/activity/1?filter=%5B%22a%22%2C%22%3D%0A%22%2C%5B1%5D%5D".to_string(),
        format!("/activity/1?count={long}"),
        format!("/activity/{long}x"),
        "/activity/1%0A2".to_string(),
    ];
    for uri in uris {
        let (status, text) = send(
            &app,
            Request::get(uri.as_str()).body(Body::empty()).unwrap(),
        )
        .await;
        assert!(status.is_client_error(), "{uri}: {status} {text}");
        let sentence = text
            .strip_suffix('\n')
            .unwrap_or_else(|| panic!("{text:?}"));
        assert!(
            !sentence.chars().any(char::is_control),
            "{uri}: one line, got {text:?}"
        );
        assert!(text.len() < 160, "{uri}: short, got {text:?}");
    }
}

#[tokio::test]
async fn a_body_that_stops_arriving_is_408_with_our_sentence() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let app = router(store.clone(), ApiConfig::new()).layer(
        tower_http::timeout::RequestBodyTimeoutLayer::new(std::time::Duration::from_millis(100)),
    );
    let first: Result<&'static [u8], std::io::Error> = Ok(b"{\"a\":1}\n{");
    let stalled = futures_util::StreamExt::chain(
        futures_util::stream::iter([first]),
        futures_util::stream::pending(),
    );
    let (status, text) = send(
        &app,
        Request::post("/activity/1")
            .body(Body::from_stream(stalled))
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::REQUEST_TIMEOUT, "{text}");
    assert_eq!(
        text,
        "the request body did not arrive in time; nothing was stored\n"
    );
    assert_eq!(store.projects().unwrap(), Vec::<u64>::new());
}

/// A client that stops reading a big response holds no blocking thread: with the runtime's
/// only blocking thread, a POST is still answered while such a response waits for its reader.
/// (Each streamed response used to keep a blocking thread waiting to hand over its next chunk,
/// so as many stalled readers as the runtime has blocking threads, 512 by default, hung every
/// other request.)
#[test]
fn a_client_that_stops_reading_holds_no_blocking_thread() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .max_blocking_threads(1)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        // 4 MiB: far more than the chunks a response keeps ready for its reader.
        let line = format!("{{\"pad\":\"{}\"}}", "x".repeat(1000));
        store.append(1, vec![line.as_str(); 4096]).unwrap();
        let app = router(store.clone(), ApiConfig::new());
        let stalled = app
            .clone()
            .oneshot(Request::get("/activity/1").body(Body::empty()).unwrap())
            .await
            .unwrap();
        let post = send(
            &app,
            Request::post("/activity/2")
                .body(Body::from("{\"after\":1}"))
                .unwrap(),
        );
        // A deadlock guard, not a measure of speed: the POST needs the blocking thread.
        let (status, text) = tokio::time::timeout(std::time::Duration::from_secs(60), post)
            .await
            .expect("the POST waited for the blocking thread a stalled response held");
        assert_eq!(status, StatusCode::OK, "{text}");
        // The stalled response is still whole when its reader comes back.
        let body = to_bytes(stalled.into_body(), usize::MAX).await.unwrap();
        assert_eq!(body.len(), 4096 * (line.len() + 1));
    });
}
