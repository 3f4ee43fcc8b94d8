//! The Activity API contract (`docs/http.md`), row by row, through the router without a socket.
#![cfg(feature = "server")]

use activitylog::http::{router, ApiConfig, ApiKeys};
use activitylog::Store;
use axum::body::{to_bytes, Body};
use axum::http::{header, Request, StatusCode};
use axum::Router;
use tower::ServiceExt;

struct Api {
    _dir: tempfile::TempDir,
    store: Store,
    app: Router,
}

fn api_with(config: ApiConfig) -> Api {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let app = router(store.clone(), config);
    Api {
        _dir: dir,
        store,
        app,
    }
}

fn api() -> Api {
    api_with(ApiConfig::new())
}

struct Reply {
    status: StatusCode,
    content_type: String,
    cors: String,
    /// Every `Vary` header, joined by ", ".
    vary: String,
    body: String,
}

impl Api {
    async fn send(&self, req: Request<Body>) -> Reply {
        let resp = self.app.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let header = |name| {
            resp.headers()
                .get(name)
                .map(|v: &header::HeaderValue| v.to_str().unwrap().to_owned())
                .unwrap_or_default()
        };
        let content_type = header(header::CONTENT_TYPE);
        let cors = header(header::ACCESS_CONTROL_ALLOW_ORIGIN);
        let vary = resp
            .headers()
            .get_all(header::VARY)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect::<Vec<_>>()
            .join(", ");
        let body = to_bytes(resp.into_body(), usize::MAX).await.unwrap();
        Reply {
            status,
            content_type,
            cors,
            vary,
            body: String::from_utf8(body.to_vec()).unwrap(),
        }
    }

    async fn get(&self, uri: &str) -> Reply {
        self.send(Request::get(uri).body(Body::empty()).unwrap())
            .await
    }

    async fn post(&self, uri: &str, body: &str) -> Reply {
        self.send(
            Request::post(uri)
                .body(Body::from(body.to_owned()))
                .unwrap(),
        )
        .await
    }
}

fn lines(body: &str) -> Vec<&str> {
    assert!(
        body.is_empty() || body.ends_with('\n'),
        "every line ends with a newline"
    );
    body.lines().collect()
}

#[tokio::test]
async fn post_then_get_newest_first_with_and_without_trailing_slash() {
    let api = api();
    let r = api.post("/activity/1111111/", "{\"foo\": 2}").await;
    assert_eq!((r.status, r.body.as_str()), (StatusCode::OK, ""));
    let r = api
        .post("/activity/1111111", "{\"foo\": 3}\n{\"foo\": 4}")
        .await;
    assert_eq!(r.status, StatusCode::OK);
    for uri in ["/activity/1111111?count=2", "/activity/1111111/?count=2"] {
        let r = api.get(uri).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.content_type, "application/x-jsonlines; charset=UTF-8");
        assert_eq!(lines(&r.body), [r#"{"foo":4}"#, r#"{"foo":3}"#]);
    }
    let r = api.get("/activity/1111111").await;
    assert_eq!(lines(&r.body).len(), 3, "no count: no limit");
}

#[tokio::test]
async fn two_batches_read_back_strictly_newest_first() {
    let api = api();
    for batch in [0..10, 10..20] {
        let body: Vec<String> = batch.map(|c| format!("{{\"counter\": {c}}}")).collect();
        api.post("/activity/5", &body.join("\n")).await;
    }
    let r = api.get("/activity/5").await;
    let want: Vec<String> = (0..20)
        .rev()
        .map(|c| format!("{{\"counter\":{c}}}"))
        .collect();
    assert_eq!(lines(&r.body), want);
}

/// POSTs to an open project are appended on the async worker (kept to memory), the first
/// one (which creates the project) and a big one on a blocking thread: every message is stored
/// once, in order, whichever way its POST went.
#[tokio::test]
async fn posts_appended_in_memory_and_handed_off_are_each_stored_once() {
    let api = api();
    let message = |c: usize| format!("{{\"counter\": {c}, \"pad\": \"{}\"}}", "x".repeat(100));
    let mut sent = 0;
    for _ in 0..3 {
        for _ in 0..200 {
            assert_eq!(
                api.post("/activity/6", &message(sent)).await.status,
                StatusCode::OK
            );
            sent += 1;
        }
        // Over 64 KiB: handed off whatever the room holds.
        let big: Vec<String> = (sent..sent + 700).map(message).collect();
        assert_eq!(
            api.post("/activity/6", &big.join("\n")).await.status,
            StatusCode::OK
        );
        sent += 700;
    }
    let r = api.get("/activity/6").await;
    let want: Vec<String> = (0..sent)
        .rev()
        .map(|c| format!("{{\"counter\":{c},\"pad\":\"{}\"}}", "x".repeat(100)))
        .collect();
    assert_eq!(lines(&r.body), want);
}

#[tokio::test]
async fn post_accepts_crlf_blank_lines_and_an_empty_body() {
    let api = api();
    assert_eq!(api.post("/activity/9", "").await.status, StatusCode::OK);
    let r = api
        .post("/activity/9", "{\"a\":1}\r\n\r\n  \n{\"a\":2}\r\n")
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        lines(&api.get("/activity/9").await.body),
        [r#"{"a":2}"#, r#"{"a":1}"#]
    );
}

#[tokio::test]
async fn a_bad_line_is_400_naming_it_and_nothing_is_stored() {
    let api = api();
    for (body, needle) in [
        ("{\"a\":1}\n\n{\"a\":\n{\"a\":3}", "line 3"),
        ("{\"a\":1}\n[1,2]", "line 2"),
        ("17", "line 1"),
    ] {
        let r = api.post("/activity/3", body).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(r.content_type, "text/plain; charset=UTF-8");
        assert!(r.body.contains(needle), "{} lacks {needle}", r.body);
        assert_eq!(r.body.trim_end().lines().count(), 1);
    }
    assert_eq!(api.get("/activity/3").await.body, "");
    assert_eq!(api.store.newest_first(3).unwrap().count(), 0);
}

#[tokio::test]
async fn oversized_message_is_413_and_oversized_body_is_413() {
    let api = api_with(ApiConfig::new().max_body_bytes(4 << 20));
    let big = format!("{{\"a\":\"{}\"}}", "x".repeat((1 << 20) + 1));
    let r = api
        .post("/activity/3", &format!("{{\"ok\":1}}\n{big}"))
        .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(r.body.contains("line 2"), "{}", r.body);
    let huge = format!("{{\"a\":\"{}\"}}", "x".repeat(5 << 20));
    let r = api.post("/activity/3", &huge).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(api.store.newest_first(3).unwrap().count(), 0);
}

#[tokio::test]
async fn project_ids_must_be_unsigned_integers() {
    let api = api();
    for uri in [
        "/activity/abc",
        "/activity/-1",
        "/activity/1.5",
        "/activity/99999999999999999999",
    ] {
        let r = api.post(uri, "{}").await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{uri}");
        assert_eq!(api.get(uri).await.status, StatusCode::NOT_FOUND, "{uri}");
    }
    assert!(api.store.projects().unwrap().is_empty());
    assert_eq!(api.get("/elsewhere").await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn post_to_projects_is_405() {
    let api = api();
    let r = api.post("/activity/projects", "{}").await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert!(!r.body.is_empty());
    let r = api
        .send(Request::delete("/activity/7").body(Body::empty()).unwrap())
        .await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn unknown_project_is_200_and_empty() {
    let r = api().get("/activity/424242?count=5").await;
    assert_eq!((r.status, r.body.as_str()), (StatusCode::OK, ""));
}

#[tokio::test]
async fn meta_fields_are_spliced_after_own_fields() {
    let api = api();
    api.post("/activity/12", "{\"a\": 1, \"_ts\": \"mine\"}")
        .await;
    let r = api
        .get("/activity/12?meta=_ts&meta=_project&meta=_key")
        .await;
    let line = lines(&r.body)[0].to_owned();
    assert!(line.starts_with(r#"{"a":1,"_ts":"mine","_ts":"#), "{line}");
    assert!(line.ends_with(r#","_project":12,"_key":"12/1"}"#), "{line}");
    let ts: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert!(ts["_ts"].as_u64().unwrap() > 1_600_000_000_000);
    let r = api.get("/activity/12?meta=_nope").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

/// A meta name given more than once is added once, where it first appears: a JSON object with
/// the same key twice is an error or a silent loss for most parsers.
#[tokio::test]
async fn a_meta_name_repeated_counts_once() {
    let api = api();
    api.post("/activity/12", "{\"a\": 1}").await;
    api.post("/activity/13", "{\"b\": 2}").await;
    let projects = "/activity/projects?p=12&p=13&meta=_project&meta=_project";
    let r = api.get(projects).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        lines(&r.body),
        [r#"{"b":2,"_project":13}"#, r#"{"a":1,"_project":12}"#]
    );
    let r = api.get(&format!("{projects}&format=json")).await;
    assert_eq!(r.body, r#"[{"b":2,"_project":13},{"a":1,"_project":12}]"#);
    let repeated = "meta=_key&meta=_ts&meta=_key&meta=_ts&".repeat(500);
    for format in ["jl", "json"] {
        let r = api
            .get(&format!("/activity/12?{repeated}format={format}"))
            .await;
        assert_eq!(r.status, StatusCode::OK);
        let object = r.body.trim_start_matches('[').trim_end_matches(['\n', ']']);
        assert!(
            object.starts_with(r#"{"a":1,"_key":"12/1","_ts":"#),
            "{format}: {object}"
        );
        assert_eq!(object.matches("\"_ts\"").count(), 1, "{format}: {object}");
        assert_eq!(object.matches("\"_key\"").count(), 1, "{format}: {object}");
        let parsed: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(object).unwrap();
        assert_eq!(parsed.len(), 3, "{format}: {object}");
    }
}

#[tokio::test]
async fn filters_apply_before_count() {
    let api = api();
    let body: Vec<String> = (0..10).map(|c| format!("{{\"c\": {c}}}")).collect();
    api.post("/activity/2", &body.join("\n")).await;
    let filter = "%5B%22c%22%2C%20%22%3E%22%2C%20%5B5%5D%5D"; // ["c", ">", [5]]
    let r = api
        .get(&format!("/activity/2?count=2&filter={filter}"))
        .await;
    assert_eq!(lines(&r.body), [r#"{"c":9}"#, r#"{"c":8}"#]);
    let r = api.get("/activity/2?filter=%5B%22c%22").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn projects_merges_with_pcount_and_meta_as_in_the_docs() {
    let api = api();
    for foo in [2, 3, 4] {
        api.post("/activity/1111111/", &format!("{{\"foo\": {foo}}}"))
            .await;
    }
    api.post("/activity/2222222/", "{\"bar\": 1}").await;
    for uri in [
        "/activity/projects/?pcount=1&meta=_project&p=1111111&p=2222222",
        "/activity/projects?pcount=1&meta=_project&p=1111111&p=2222222&p=1111111&p=777",
    ] {
        let r = api.get(uri).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(
            lines(&r.body),
            [
                r#"{"bar":1,"_project":2222222}"#,
                r#"{"foo":4,"_project":1111111}"#
            ]
        );
    }
    let r = api.get("/activity/projects?count=3").await;
    assert_eq!(
        lines(&r.body),
        [r#"{"bar":1}"#, r#"{"foo":4}"#, r#"{"foo":3}"#]
    );
    assert_eq!(
        api.get("/activity/projects?p=x").await.status,
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test]
async fn counts_must_be_non_negative_integers() {
    let api = api();
    for q in [
        "count=-1",
        "count=x",
        "count=18446744073709551616",
        "pcount=-2",
        "count=",
    ] {
        let r = api.get(&format!("/activity/projects?{q}")).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{q}");
        assert!(!r.body.is_empty());
    }
    assert_eq!(api.get("/activity/1?count=0").await.status, StatusCode::OK);
}

#[tokio::test]
async fn json_format_and_accept_header_give_one_array() {
    let api = api();
    api.post("/activity/4", "{\"a\":1}\n{\"a\":2}").await;
    let r = api.get("/activity/4?format=json").await;
    assert_eq!(r.content_type, "application/json; charset=UTF-8");
    assert_eq!(r.body, r#"[{"a":2},{"a":1}]"#);
    let r = api
        .send(
            Request::get("/activity/4")
                .header(header::ACCEPT, "application/json")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(r.body, r#"[{"a":2},{"a":1}]"#);
    assert_eq!(api.get("/activity/5?format=json").await.body, "[]");
    assert_eq!(
        api.get("/activity/4?format=jl").await.body,
        "{\"a\":2}\n{\"a\":1}\n"
    );
    assert_eq!(
        api.get("/activity/4?format=xml").await.status,
        StatusCode::BAD_REQUEST
    );
}

/// A GET's format follows its `Accept` header, so its responses say so (`Vary: Accept`), and
/// a cache keeps JSON and JSON Lines apart.
#[tokio::test]
async fn a_get_varies_by_accept() {
    let api = api();
    api.post("/activity/4", "{\"a\":1}").await;
    for uri in ["/activity/4", "/activity/projects/?p=4"] {
        let r = api.get(uri).await;
        assert_eq!(r.status, StatusCode::OK);
        assert!(
            r.vary
                .to_ascii_lowercase()
                .split(", ")
                .any(|v| v == "accept"),
            "{uri}: Vary {:?}",
            r.vary
        );
    }
}

#[tokio::test]
async fn every_response_allows_any_origin() {
    let api = api();
    assert_eq!(api.get("/activity/1").await.cors, "*");
    assert_eq!(api.get("/activity/x").await.cors, "*");
    assert_eq!(api.post("/activity/1", "[").await.cors, "*");
}

#[tokio::test]
async fn keys_gate_access_per_project() {
    let keys = ApiKeys::new().allow_all("admin").allow("client", [1, 2]);
    let api = api_with(ApiConfig::new().keys(keys));
    let basic = |key: &str| {
        use base64::Engine;
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{key}:"))
        )
    };
    let with_key = |method: &str, uri: &str, key: &str, body: &str| {
        Request::builder()
            .method(method)
            .uri(uri)
            .header(header::AUTHORIZATION, basic(key))
            .body(Body::from(body.to_owned()))
            .unwrap()
    };
    assert_eq!(
        api.get("/activity/1").await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        api.send(with_key("GET", "/activity/1", "wrong", ""))
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        api.send(with_key("POST", "/activity/1", "client", "{\"a\":1}"))
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        api.send(with_key("POST", "/activity/3", "admin", "{\"a\":3}"))
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        api.send(with_key("POST", "/activity/3", "client", "{}"))
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        api.send(with_key("GET", "/activity/3", "client", ""))
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        api.get("/activity/1?apikey=client").await.status,
        StatusCode::OK
    );
    // activity/projects only merges what the key may read.
    let r = api
        .send(with_key("GET", "/activity/projects", "client", ""))
        .await;
    assert_eq!(lines(&r.body), [r#"{"a":1}"#]);
    let r = api
        .send(with_key("GET", "/activity/projects?p=3", "client", ""))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = api
        .send(with_key("GET", "/activity/projects", "admin", ""))
        .await;
    assert_eq!(lines(&r.body).len(), 2);
}

#[tokio::test]
async fn with_keys_a_request_without_a_known_key_is_401_whatever_else_is_wrong_with_it() {
    let api = api_with(ApiConfig::new().keys(ApiKeys::new().allow_all("admin")));
    let requests = [
        ("GET", "/activity/1?count=abc"),
        ("GET", "/activity/abc"),
        ("DELETE", "/activity/1"),
        ("POST", "/activity/projects"),
        ("GET", "/elsewhere"),
        ("GET", "/activity/1?apikey=wrong&count=abc"),
        ("GET", "/activity/1?apikey="),
    ];
    for (method, uri) in requests {
        let r = api
            .send(
                Request::builder()
                    .method(method)
                    .uri(uri)
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
        assert_eq!(
            r.status,
            StatusCode::UNAUTHORIZED,
            "{method} {uri}: {}",
            r.body
        );
    }
    // With the key, the same faults get their own answers.
    let r = api.get("/activity/1?count=abc&apikey=admin").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = api.get("/activity/abc?apikey=admin").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn an_empty_api_key_never_authenticates() {
    let api = api_with(ApiConfig::new().keys(ApiKeys::new().allow_all("")));
    let r = api.get("/activity/1?apikey=").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

#[test]
fn a_keys_file_line_without_a_key_is_an_error_naming_it() {
    let err = ApiKeys::parse("admin\n , ,\n").unwrap_err();
    assert_eq!(err, "line 2 has no API key");
}

#[tokio::test]
async fn a_project_id_that_is_not_utf8_is_404() {
    let api = api();
    assert_eq!(api.get("/activity/%FF").await.status, StatusCode::NOT_FOUND);
    let r = api.post("/activity/%FF/", "{}").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.body);
    assert_eq!(api.store.projects().unwrap(), Vec::<u64>::new());
}

#[tokio::test]
async fn accept_is_read_without_regard_to_case_and_with_its_q_values() {
    let api = api();
    api.post("/activity/4", "{\"a\":1}").await;
    for (accept, want) in [
        ("APPLICATION/JSON", "[{\"a\":1}]"),
        (
            "application/json;q=0, application/x-jsonlines",
            "{\"a\":1}\n",
        ),
        ("application/json; Q=0", "{\"a\":1}\n"),
        (
            "application/json;q=0.5, application/x-jsonlines",
            "{\"a\":1}\n",
        ),
        (
            "application/x-jsonlines;q=0.2, Application/Json;q=0.9",
            "[{\"a\":1}]",
        ),
        ("*/*", "{\"a\":1}\n"),
        ("text/html, application/json;q=0.1", "[{\"a\":1}]"),
    ] {
        let r = api
            .send(
                Request::get("/activity/4")
                    .header(header::ACCEPT, accept)
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
        assert_eq!(r.body, want, "Accept: {accept}");
    }
}

/// Several `Accept` field lines are one comma-joined list (RFC 9110, 5.3): the router read only
/// the first (an audit).
#[tokio::test]
async fn accept_sent_as_two_field_lines_is_read_as_one_list() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.append(1, [r#"{"a":1}"#]).unwrap();
    let app = router(store, ApiConfig::new());
    let content_type = |req: Request<Body>| {
        let app = app.clone();
        async move {
            let resp = app.oneshot(req).await.unwrap();
            resp.headers()[header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .to_owned()
        }
    };
    let joined = content_type(
        Request::get("/activity/1")
            .header(header::ACCEPT, "text/html, application/json")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    let split = content_type(
        Request::get("/activity/1")
            .header(header::ACCEPT, "text/html")
            .header(header::ACCEPT, "application/json")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(joined, "application/json; charset=UTF-8");
    assert_eq!(split, joined, "the same Accept list, split over two lines");
}
