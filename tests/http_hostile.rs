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

/// `serve` on an ephemeral port of this runtime, until the runtime ends; its address.
async fn serving(store: &Store, config: ApiConfig) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(activitylog::http::serve(
        store.clone(),
        config,
        listener,
        std::future::pending(),
    ));
    addr
}

/// A raw exchange on a connection of its own: `request` (which should say `Connection: close`),
/// then everything until the server closes, split into head (lowercased) and body.
async fn raw(addr: std::net::SocketAddr, request: &[u8]) -> (String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    conn.write_all(request).await.unwrap();
    let mut answer = Vec::new();
    // A deadlock guard, not a measure of speed.
    tokio::time::timeout(
        std::time::Duration::from_secs(60),
        conn.read_to_end(&mut answer),
    )
    .await
    .expect("the server did not close the connection")
    .unwrap();
    let answer = String::from_utf8(answer).unwrap();
    let (head, body) = answer
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no head in {answer:?}"));
    (head.to_lowercase(), body.to_owned())
}

fn get_with(uri: &str, headers: &str) -> Vec<u8> {
    format!("GET {uri} HTTP/1.1\r\nHost: x\r\n{headers}Connection: close\r\n\r\n").into_bytes()
}

/// Over a socket, a URI or header fields over the API's limits get 414 or 431 with a sentence
/// (and the CORS header a page needs to read it), not hyper's empty answer, even before the key;
/// what is within the limits, 1,000 `p` of 20 digits among it, is served. Far past them, hyper
/// answers by itself, without a body (docs/http.md, Limits).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_long_uris_and_header_fields_get_a_sentence_over_a_socket() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.append(1, [r#"{"a":1}"#]).unwrap();
    let keys = activitylog::http::ApiKeys::new().allow_all("KEY");
    let addr = serving(&store, ApiConfig::new().keys(keys)).await;
    let key = "apikey=KEY";
    let sentence = |what: &str, head: &str, body: &str| {
        assert!(
            head.contains("content-type: text/plain; charset=utf-8"),
            "{what}: {head}"
        );
        assert!(
            head.contains("access-control-allow-origin: *"),
            "{what}: {head}"
        );
        assert!(
            body.ends_with('\n') && body.trim_end().lines().count() == 1 && body.len() < 200,
            "{what}: one sentence, got {body:?}"
        );
    };
    // 62 KiB: over the API's 60 KiB, within hyper's 65,534 bytes.
    let pad = "x".repeat(62 << 10);
    for uri in [
        format!("/activity/1?{key}&pad={pad}"),
        format!("/activity/1?pad={pad}"),
    ] {
        let (head, body) = raw(addr, &get_with(&uri, "")).await;
        assert!(head.starts_with("http/1.1 414 "), "{head}");
        sentence("a long URI", &head, &body);
        assert!(body.contains("URI"), "{body}");
    }
    // 80 KB of header fields: over the API's 64 KiB, within hyper's buffer and header count.
    let fields: String = (0..20)
        .map(|i| format!("X-Pad-{i}: {}\r\n", "y".repeat(4000)))
        .collect();
    for uri in [format!("/activity/1?{key}"), "/activity/1".to_owned()] {
        let (head, body) = raw(addr, &get_with(&uri, &fields)).await;
        assert!(head.starts_with("http/1.1 431 "), "{head}");
        sentence("large header fields", &head, &body);
        assert!(body.contains("header fields"), "{body}");
    }
    // Within the limits: served.
    let half: String = (0..10)
        .map(|i| format!("X-Pad-{i}: {}\r\n", "y".repeat(4000)))
        .collect();
    let ps: String = (0..999).map(|i| format!("&p={}", u64::MAX - i)).collect();
    let within = [
        (
            format!("/activity/1?{key}&pad={}", "x".repeat(59 << 10)),
            "",
        ),
        (format!("/activity/projects?{key}{ps}&p=1"), ""),
        (format!("/activity/1?{key}"), half.as_str()),
    ];
    for (uri, headers) in within {
        let (head, body) = raw(addr, &get_with(&uri, headers)).await;
        assert!(head.starts_with("http/1.1 200 "), "{head}");
        assert_eq!(body, "{\"a\":1}\n");
    }
    // Past hyper's own limits: its answer, with no body.
    let too_many: String = (0..101).map(|i| format!("X-{i}: 1\r\n")).collect();
    for (what, request, status) in [
        (
            "a URI over 65,534 bytes",
            get_with(&format!("/activity/1?pad={}", "x".repeat(70_000)), ""),
            "414",
        ),
        (
            "101 header fields",
            get_with("/activity/1", &too_many),
            "431",
        ),
        (
            "a malformed request line",
            b"GET / HTTP/9\r\n\r\n".to_vec(),
            "400",
        ),
    ] {
        let (head, body) = raw(addr, &request).await;
        assert!(
            head.starts_with(&format!("http/1.1 {status} ")),
            "{what}: {head}"
        );
        assert_eq!(
            body, "",
            "{what}: hyper now sends a body; docs/http.md says it does not"
        );
    }
}

/// A store whose project 1 holds 24 MiB: far more than socket buffers and the chunks a response
/// makes ahead hold. Its size in bytes as JSON Lines.
fn a_big_project(store: &Store) -> usize {
    let line = format!("{{\"pad\":\"{}\"}}", "x".repeat(1000));
    for _ in 0..24 {
        store.append(1, vec![line.as_str(); 1024]).unwrap();
    }
    24 * 1024 * (line.len() + 1)
}

/// A connection that asks for project 1 and reads its first bytes, with a small receive buffer
/// (so the kernel does not grow it to hold the whole response).
async fn a_reader_of_project_1(addr: std::net::SocketAddr) -> tokio::net::TcpStream {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(64 << 10).unwrap();
    let mut conn = socket.connect(addr).await.unwrap();
    conn.write_all(&get_with("/activity/1", "")).await.unwrap();
    let mut first = [0; 1024];
    assert!(conn.read(&mut first).await.unwrap() > 0);
    conn
}

/// Everything until the server closes the connection (or resets it); a deadlock guard of 60 s.
async fn the_rest(mut conn: tokio::net::TcpStream) -> usize {
    use tokio::io::AsyncReadExt;
    let mut buf = vec![0; 1 << 20];
    let mut total = 0;
    let read_all = async {
        loop {
            match conn.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => total += n,
            }
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(60), read_all)
        .await
        .expect("the connection was neither finished nor closed");
    total
}

/// A client that stops reading a big GET has its connection closed once the socket has taken
/// nothing for `write_timeout`, so what the response made ahead is freed; the server answers
/// others meanwhile. (Such a connection was kept as long as the client stayed connected.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_cut_off_after_the_write_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let size = a_big_project(&store);
    store.append(2, [r#"{"b":2}"#]).unwrap();
    let timeout = std::time::Duration::from_millis(200);
    let addr = serving(&store, ApiConfig::new().write_timeout(timeout)).await;
    let stalled = a_reader_of_project_1(addr).await;
    let (head, body) = raw(addr, &get_with("/activity/2", "")).await;
    assert!(head.starts_with("http/1.1 200 "), "{head}");
    assert_eq!(body, "{\"b\":2}\n");
    // A generous bound: 15 times the timeout. The server fills the socket's buffers, then waits
    // for the reader.
    tokio::time::sleep(timeout * 15).await;
    let rest = the_rest(stalled).await;
    assert!(
        rest < size / 2,
        "the stalled response went on: {rest} of {size} bytes after the pause"
    );
    let (head, body) = raw(addr, &get_with("/activity/2", "")).await;
    assert!(head.starts_with("http/1.1 200 "), "{head}");
    assert_eq!(body, "{\"b\":2}\n");
}

/// The write timeout counts from the socket's last progress, not from the response's start: a
/// reader that pauses for less than it, again and again, gets the whole response. (Between its
/// pauses it reads 3 MiB: the socket takes more of the response only once the reader took a good
/// part of what its send buffer holds, up to 4 MiB on Linux.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_pauses_less_than_the_write_timeout_gets_everything() {
    use tokio::io::AsyncReadExt;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let size = a_big_project(&store);
    let timeout = std::time::Duration::from_secs(2);
    let addr = serving(&store, ApiConfig::new().write_timeout(timeout)).await;
    let mut conn = a_reader_of_project_1(addr).await;
    // Six pauses of a quarter of the timeout: 1.5 times the timeout in all.
    let mut burst = vec![0; 3 << 20];
    let mut read = 0;
    for _ in 0..6 {
        tokio::time::sleep(timeout / 4).await;
        read += conn.read_exact(&mut burst).await.unwrap();
    }
    let rest = the_rest(conn).await;
    // The whole body, with its chunk framing around it.
    assert!(
        read + rest > size,
        "cut short: {} of {size} bytes",
        read + rest
    );
}

/// How long a test waits for the server to close a connection it should close: far more than
/// any header read timeout below, so that a server that never closes fails the test.
const CLOSE_GUARD: std::time::Duration = std::time::Duration::from_secs(10);

/// Reads `conn` until the server closes it (or resets it): what it sent, and how long after
/// `since` the close came. Panics if the connection is still open after [`CLOSE_GUARD`].
async fn until_closed(
    conn: &mut tokio::net::TcpStream,
    since: tokio::time::Instant,
) -> (Vec<u8>, std::time::Duration) {
    use tokio::io::AsyncReadExt;
    let mut sent = Vec::new();
    let mut buf = [0; 4096];
    let read_all = async {
        loop {
            match conn.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => sent.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(CLOSE_GUARD, read_all)
        .await
        .unwrap_or_else(|_| panic!("the connection was still open after {CLOSE_GUARD:?}"));
    (sent, since.elapsed())
}

/// That the server closed a connection `after` it began, having sent nothing (`sent`), once
/// its header read timeout (`timeout`) had passed and not long after.
fn assert_closed_silently(sent: &[u8], after: std::time::Duration, timeout: std::time::Duration) {
    assert_eq!(
        sent,
        b"",
        "the server answered: {:?}",
        String::from_utf8_lossy(sent)
    );
    assert!(
        after >= timeout * 9 / 10,
        "closed after {after:?}, before the timeout"
    );
    // A generous bound: the server closes the connection when its timer fires.
    assert!(after < timeout * 10, "closed only after {after:?}");
}

/// One response on a keep-alive connection, framed by its `Content-Length`: its head
/// (lowercased) and body. A deadlock guard of [`CLOSE_GUARD`].
async fn one_response(conn: &mut tokio::net::TcpStream) -> (String, String) {
    use tokio::io::AsyncReadExt;
    let read = async {
        let mut got = Vec::new();
        let mut buf = [0; 4096];
        let end = loop {
            if let Some(at) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            let n = conn.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed before a whole head: {got:?}");
            got.extend_from_slice(&buf[..n]);
        };
        let head = String::from_utf8(got[..end].to_vec())
            .unwrap()
            .to_lowercase();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .unwrap_or_else(|| panic!("no content-length in {head}"))
            .trim()
            .parse()
            .unwrap();
        while got.len() < end + length {
            let n = conn.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed before a whole body");
            got.extend_from_slice(&buf[..n]);
        }
        assert_eq!(got.len(), end + length, "more than one response");
        let body = String::from_utf8(got[end..].to_vec()).unwrap();
        (head, body)
    };
    tokio::time::timeout(CLOSE_GUARD, read)
        .await
        .expect("no whole response in time")
}

/// A store whose project 2 holds one message, served with `header_read_timeout`.
async fn serving_with_header_read_timeout(
    timeout: std::time::Duration,
) -> (tempfile::TempDir, std::net::SocketAddr) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.append(2, [r#"{"b":2}"#]).unwrap();
    let addr = serving(&store, ApiConfig::new().header_read_timeout(timeout)).await;
    (dir, addr)
}

/// A client that sends half a request head and then nothing is disconnected once the timeout
/// has passed since it connected, without an answer. (Such a connection was kept as long as the
/// client stayed connected.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_sends_half_a_request_head_is_cut_off_after_the_header_read_timeout() {
    use tokio::io::AsyncWriteExt;
    let timeout = std::time::Duration::from_millis(300);
    let (_dir, addr) = serving_with_header_read_timeout(timeout).await;
    let since = tokio::time::Instant::now();
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    conn.write_all(b"GET /activity/2 HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let (sent, after) = until_closed(&mut conn, since).await;
    assert_closed_silently(&sent, after, timeout);
}

/// A client that connects and sends nothing is disconnected once the timeout has passed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_sends_nothing_is_cut_off_after_the_header_read_timeout() {
    let timeout = std::time::Duration::from_millis(300);
    let (_dir, addr) = serving_with_header_read_timeout(timeout).await;
    let since = tokio::time::Instant::now();
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (sent, after) = until_closed(&mut conn, since).await;
    assert_closed_silently(&sent, after, timeout);
}

/// A client that keeps sending its head a byte at a time (slowloris), each byte well within
/// the timeout, is disconnected once the timeout has passed since it connected: the timeout
/// bounds the whole head, not the pauses between its bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_trickles_its_head_is_cut_off_after_the_header_read_timeout() {
    use tokio::io::AsyncWriteExt;
    let timeout = std::time::Duration::from_millis(300);
    let (_dir, addr) = serving_with_header_read_timeout(timeout).await;
    let since = tokio::time::Instant::now();
    let conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut reading, mut writing) = conn.into_split();
    // A head that never ends, a byte every 20 ms, until the server closes.
    let trickle = tokio::spawn(async move {
        let head = b"GET /activity/2 HTTP/1.1\r\nHost: x\r\nX-Slow: ";
        for byte in head.iter().chain(std::iter::repeat(&b'a')) {
            if writing.write_all(&[*byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    });
    let read_all = async {
        use tokio::io::AsyncReadExt;
        let mut sent = Vec::new();
        let _ = reading.read_to_end(&mut sent).await;
        sent
    };
    let sent = tokio::time::timeout(CLOSE_GUARD, read_all)
        .await
        .unwrap_or_else(|_| panic!("the connection was still open after {CLOSE_GUARD:?}"));
    let after = since.elapsed();
    trickle.abort();
    assert_closed_silently(&sent, after, timeout);
}

/// A head sent in pieces with pauses between them, all of it within the timeout, is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_sent_slowly_within_the_header_read_timeout_is_answered() {
    use tokio::io::AsyncWriteExt;
    let timeout = std::time::Duration::from_secs(2);
    let (_dir, addr) = serving_with_header_read_timeout(timeout).await;
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    // Ten pieces, 100 ms apart: half the timeout in all.
    let head = get_with("/activity/2", "");
    for piece in head.chunks(head.len().div_ceil(10)) {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        conn.write_all(piece).await.unwrap();
    }
    let (sent, _) = until_closed(&mut conn, tokio::time::Instant::now()).await;
    let sent = String::from_utf8(sent).unwrap();
    assert!(sent.starts_with("HTTP/1.1 200 "), "{sent}");
    assert!(sent.ends_with("\r\n\r\n{\"b\":2}\n"), "{sent}");
}

/// On a keep-alive connection, the timeout counts from the previous response, not from the
/// connection's start: requests each sent half the timeout after the previous response are
/// all answered, on one connection that lives longer than the timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_requests_within_the_header_read_timeout_of_the_last_response_are_answered() {
    use tokio::io::AsyncWriteExt;
    let timeout = std::time::Duration::from_secs(2);
    let (_dir, addr) = serving_with_header_read_timeout(timeout).await;
    let since = tokio::time::Instant::now();
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = b"GET /activity/2 HTTP/1.1\r\nHost: x\r\n\r\n";
    for i in 0..4 {
        if i > 0 {
            tokio::time::sleep(timeout / 2).await;
        }
        conn.write_all(request).await.unwrap();
        let (head, body) = one_response(&mut conn).await;
        assert!(head.starts_with("http/1.1 200 "), "request {i}: {head}");
        assert_eq!(body, "{\"b\":2}\n", "request {i}");
    }
    assert!(
        since.elapsed() > timeout,
        "the connection lived less than the timeout"
    );
}

/// An idle keep-alive connection is closed once the timeout has passed since its last
/// response: waiting for the next request head is reading a head.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_is_closed_the_header_read_timeout_after_its_last_response() {
    use tokio::io::AsyncWriteExt;
    let timeout = std::time::Duration::from_millis(300);
    let (_dir, addr) = serving_with_header_read_timeout(timeout).await;
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    conn.write_all(b"GET /activity/2 HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let (head, body) = one_response(&mut conn).await;
    assert!(head.starts_with("http/1.1 200 "), "{head}");
    assert_eq!(body, "{\"b\":2}\n");
    let answered = tokio::time::Instant::now();
    let (sent, after) = until_closed(&mut conn, answered).await;
    assert_eq!(
        sent,
        b"",
        "the server sent more: {:?}",
        String::from_utf8_lossy(&sent)
    );
    // hyper starts the timer once the response is flushed, a moment before it arrives here.
    assert!(
        after >= timeout * 8 / 10,
        "closed {after:?} after the response, before the timeout"
    );
    assert!(
        after < timeout * 10,
        "closed only {after:?} after the response"
    );
}

/// `Duration::MAX` is no header read timeout (hyper adds the timeout to the clock's now, which
/// would overflow): requests are answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_longest_header_read_timeout_is_none() {
    let (_dir, addr) = serving_with_header_read_timeout(std::time::Duration::MAX).await;
    let (head, body) = raw(addr, &get_with("/activity/2", "")).await;
    assert!(head.starts_with("http/1.1 200 "), "{head}");
    assert_eq!(body, "{\"b\":2}\n");
}

/// A value repeated from the request is cut short (docs/http.md): the 405 sentence repeated a
/// method of 5,000 characters whole (an audit).
#[tokio::test]
async fn a_long_method_is_cut_short_in_the_405_sentence() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let app = router(store, ApiConfig::new());
    let method = "X".repeat(5_000);
    let resp = app
        .oneshot(
            Request::builder()
                .method(method.as_str())
                .uri("/activity/1")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
    let body = to_bytes(resp.into_body(), usize::MAX).await.unwrap();
    assert!(
        body.len() < 160,
        "the 405 sentence is {} bytes: {:?}...",
        body.len(),
        String::from_utf8_lossy(&body[..80])
    );
}

/// A POST whose `Content-Length` is over the body limit is 413 at once, its body never read:
/// the server waited for a body it would refuse, and answered 408 after 30 s when it never came
/// (an audit). Here the body never comes.
#[tokio::test]
async fn a_declared_body_over_the_limit_is_413_before_any_of_it_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let app = router(store.clone(), ApiConfig::new().max_body_bytes(1 << 20));
    let never = futures_util::stream::pending::<Result<axum::body::Bytes, std::io::Error>>();
    let request = Request::post("/activity/1")
        .header("content-length", "99999999999")
        .body(Body::from_stream(never))
        .unwrap();
    let answer = tokio::time::timeout(std::time::Duration::from_secs(10), send(&app, request));
    let (status, text) = answer.await.expect("answered without the body");
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{text}");
    assert_eq!(
        text.trim_end(),
        "the request body is over the limit of 1048576 bytes"
    );
    assert!(store.projects().unwrap().is_empty());
}
