//! Browsers on other origins: CORS preflights (`OPTIONS`), the headers they are answered with,
//! and the requests that follow them, through the router without a socket.
#![cfg(feature = "server")]

use activitylog::http::{router, ApiConfig, ApiKeys};
use activitylog::Store;
use axum::body::{to_bytes, Body};
use axum::http::{header, HeaderMap, Request, StatusCode};
use axum::Router;
use tower::ServiceExt;

const ORIGIN: &str = "http://page.example";

struct Api {
    _dir: tempfile::TempDir,
    store: Store,
    app: Router,
}

/// An API that requires the key `KEY`.
fn api_with_keys() -> Api {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let app = router(
        store.clone(),
        ApiConfig::new().keys(ApiKeys::new().allow_all("KEY")),
    );
    Api {
        _dir: dir,
        store,
        app,
    }
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Reply {
    fn header(&self, name: header::HeaderName) -> &str {
        self.headers.get(&name).map_or("", |v| v.to_str().unwrap())
    }
}

async fn send(app: &Router, req: Request<Body>) -> Reply {
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = to_bytes(resp.into_body(), usize::MAX).await.unwrap();
    Reply {
        status,
        headers,
        body: String::from_utf8(body.to_vec()).unwrap(),
    }
}

/// What a browser sends before a cross-origin `method` with the Activity API's Basic auth.
fn preflight(uri: &str, method: &str) -> Request<Body> {
    Request::options(uri)
        .header(header::ORIGIN, ORIGIN)
        .header(header::ACCESS_CONTROL_REQUEST_METHOD, method)
        .header(header::ACCESS_CONTROL_REQUEST_HEADERS, "authorization")
        .body(Body::empty())
        .unwrap()
}

/// `Authorization: Basic` with `key` as the user, as the Activity API's clients send it.
fn basic(key: &str) -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{key}:"))
    )
}

#[tokio::test]
async fn a_preflight_needs_no_key_and_is_204_with_the_cors_headers() {
    let api = api_with_keys();
    let r = send(&api.app, preflight("/activity/1", "POST")).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    assert_eq!(r.body, "");
    assert_eq!(r.header(header::ACCESS_CONTROL_ALLOW_ORIGIN), "*");
    assert_eq!(
        r.header(header::ACCESS_CONTROL_ALLOW_METHODS),
        "GET, HEAD, POST, OPTIONS"
    );
    assert_eq!(r.header(header::ALLOW), "GET, HEAD, POST, OPTIONS");
    assert_eq!(
        r.header(header::ACCESS_CONTROL_ALLOW_HEADERS),
        "authorization"
    );
    assert_eq!(r.header(header::ACCESS_CONTROL_MAX_AGE), "86400");
    assert_eq!(r.header(header::VARY), "Access-Control-Request-Headers");
}

#[tokio::test]
async fn every_api_path_answers_a_preflight_with_and_without_trailing_slash() {
    let api = api_with_keys();
    for uri in [
        "/activity/1",
        "/activity/1/",
        "/activity/projects",
        "/activity/projects/",
    ] {
        let r = send(&api.app, preflight(uri, "GET")).await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{uri}: {}", r.body);
        assert_eq!(r.header(header::ACCESS_CONTROL_ALLOW_ORIGIN), "*", "{uri}");
    }
}

#[tokio::test]
async fn a_preflight_on_projects_allows_only_reading() {
    let api = api_with_keys();
    let r = send(&api.app, preflight("/activity/projects/", "GET")).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    assert_eq!(
        r.header(header::ACCESS_CONTROL_ALLOW_METHODS),
        "GET, HEAD, OPTIONS"
    );
    assert_eq!(r.header(header::ALLOW), "GET, HEAD, OPTIONS");
}

#[tokio::test]
async fn a_preflight_without_requested_headers_allows_those_the_api_reads() {
    let api = api_with_keys();
    let r = send(
        &api.app,
        Request::options("/activity/1").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    assert_eq!(
        r.header(header::ACCESS_CONTROL_ALLOW_HEADERS),
        "Authorization, Content-Type, Accept, Accept-Encoding"
    );
}

#[tokio::test]
async fn a_preflight_never_touches_the_store() {
    let api = api_with_keys();
    for uri in ["/activity/5", "/activity/6/", "/activity/abc"] {
        let r = send(&api.app, preflight(uri, "POST")).await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{uri}: {}", r.body);
    }
    assert_eq!(api.store.projects().unwrap(), Vec::<u64>::new());
}

#[tokio::test]
async fn a_preflight_outside_the_api_is_404() {
    let api = api_with_keys();
    for uri in ["/elsewhere", "/activity", "/activity/1/x"] {
        let r = send(&api.app, preflight(uri, "GET")).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{uri}: {}", r.body);
        assert!(r.body.starts_with("not found:"), "{uri}: {}", r.body);
        assert_eq!(r.header(header::ACCESS_CONTROL_ALLOW_ORIGIN), "*", "{uri}");
    }
}

#[tokio::test]
async fn other_methods_are_405_naming_the_routes_methods() {
    let api = api_with_keys();
    for (method, uri, allow) in [
        ("DELETE", "/activity/7", "GET, HEAD, POST, OPTIONS"),
        ("PUT", "/activity/7/", "GET, HEAD, POST, OPTIONS"),
        ("POST", "/activity/projects", "GET, HEAD, OPTIONS"),
    ] {
        let r = send(
            &api.app,
            Request::builder()
                .method(method)
                .uri(uri)
                .header(header::AUTHORIZATION, basic("KEY"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{method} {uri}");
        assert_eq!(r.body, format!("method {method} is not allowed here\n"));
        assert_eq!(r.header(header::ALLOW), allow, "{method} {uri}");
        assert_eq!(r.header(header::ACCESS_CONTROL_ALLOW_ORIGIN), "*");
    }
    assert_eq!(api.store.projects().unwrap(), Vec::<u64>::new());
}

#[tokio::test]
async fn a_browsers_preflight_post_and_get_all_allow_any_origin() {
    let api = api_with_keys();
    let r = send(&api.app, preflight("/activity/1", "POST")).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    let with_key = |method: &str, body: &str| {
        Request::builder()
            .method(method)
            .uri("/activity/1")
            .header(header::ORIGIN, ORIGIN)
            .header(header::AUTHORIZATION, basic("KEY"))
            .body(Body::from(body.to_owned()))
            .unwrap()
    };
    let r = send(&api.app, with_key("POST", "{\"a\":1}")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.header(header::ACCESS_CONTROL_ALLOW_ORIGIN), "*");
    let r = send(&api.app, with_key("GET", "")).await;
    assert_eq!((r.status, r.body.as_str()), (StatusCode::OK, "{\"a\":1}\n"));
    assert_eq!(r.header(header::ACCESS_CONTROL_ALLOW_ORIGIN), "*");
}

#[tokio::test]
async fn nested_in_another_app_the_preflight_still_answers() {
    let api = api_with_keys();
    let app = Router::new()
        .nest("/api", api.app.clone())
        .route("/health", axum::routing::get(|| async { "ok" }));
    let r = send(&app, preflight("/api/activity/1", "POST")).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    assert_eq!(
        r.header(header::ACCESS_CONTROL_ALLOW_METHODS),
        "GET, HEAD, POST, OPTIONS"
    );
    assert_eq!(r.header(header::ACCESS_CONTROL_ALLOW_ORIGIN), "*");
    let r = send(&app, preflight("/api/activity/projects/", "GET")).await;
    assert_eq!(
        r.header(header::ACCESS_CONTROL_ALLOW_METHODS),
        "GET, HEAD, OPTIONS"
    );
    let r = send(&app, preflight("/api/elsewhere", "GET")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.body);
    let r = send(&app, Request::get("/health").body(Body::empty()).unwrap()).await;
    assert_eq!((r.status, r.body.as_str()), (StatusCode::OK, "ok"));
}
