//! The Activity API over HTTP, as an axum [`Router`] you can serve on its own
//! ([`serve`]) or mount inside your own application.
//!
//! ```no_run
//! use activitylog::http::{router, ApiConfig};
//! use activitylog::Store;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let store = Store::open("./activity-data")?;
//! let app = axum::Router::new()
//!     .nest("/api", router(store, ApiConfig::default()))
//!     .route("/health", axum::routing::get(|| async { "ok" }));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! axum::serve(listener, app).await?;
//! # Ok(()) }
//! ```
//!
//! Mounted in a server of your own, the API has that server's timeouts: [`serve`] closes a
//! connection whose client takes too long to send a request head
//! ([`ApiConfig::header_read_timeout`]) or to take a response ([`ApiConfig::write_timeout`]),
//! and fails a request whose body stops arriving for 30 s; `axum::serve` does none of these.
//!
//! Endpoints (each also with a trailing slash):
//!
//! | method | path | what |
//! |---|---|---|
//! | POST | `/activity/{project_id}` | append JSON Lines atomically |
//! | GET | `/activity/{project_id}` | the project's messages, newest first |
//! | GET | `/activity/projects` | several projects merged, newest first |
//! | OPTIONS | both | a browser's CORS preflight: 204, no API key needed |
//!
//! The full contract, with what the `python-scrapinghub` client sends and expects, is in the
//! repository's `docs/http.md`.

#![allow(
    clippy::result_large_err,
    reason = "handlers return a finished Response as their error; boxing it buys nothing"
)]

mod auth;
mod deadline;
/// The query-string parser (crate-visible for the fuzz harness).
pub(crate) mod params;

use std::sync::Arc;
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{DefaultBodyLimit, Path, RawQuery, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, MethodRouter};
use axum::Router;
use bytes::BytesMut;
use tokio::sync::mpsc;

pub use auth::ApiKeys;
use params::{Format, Params};

use crate::error::quoted;
use crate::{Durability, Error, Merged, Meta, Query, Store};

/// Default bound on a POST body: 64 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 64 << 20;
/// Default time [`serve`] waits for requests in flight once shutdown began: 10 s.
pub const DEFAULT_SHUTDOWN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// Default time [`serve`] lets a response wait for its client to take a byte before closing the
/// connection: 60 s.
pub const DEFAULT_WRITE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);
/// Default time [`serve`] waits for a whole request head before closing the connection: 30 s.
pub const DEFAULT_HEADER_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
/// How long a client may take to send a request body before the request fails.
const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
/// Bytes gathered before a chunk of a streamed response is handed to the connection.
const CHUNK_BYTES: usize = 64 << 10;
/// A POST body up to this size is appended on the async worker when the store keeps the
/// append to memory ([`without_blocking`](crate::without_blocking)); a bigger one is handed to
/// a thread that may block, its checking being long enough to hold up other requests.
const INLINE_POST_BYTES: usize = 64 << 10;
/// Chunks made ahead of the connection (each on a blocking thread); bounds a response's memory.
const CHUNKS_IN_FLIGHT: usize = 4;
/// The longest request URI the API reads (its path and query), in bytes: 60 KiB; longer is 414.
/// hyper answers 414 itself, without a body, to a URI over 65,534 bytes: one that grows a little
/// at a time (another `p`, another filter) meets this limit first, and gets a sentence.
const MAX_URI_BYTES: usize = 60 << 10;
/// The most bytes of header fields a request may carry (each name and value, plus 4 bytes for
/// `: ` and the line end): 64 KiB; more is 431. hyper answers 431 itself, without a body, to a
/// request head over its buffer (about 400 KB) or with over 100 header fields.
const MAX_HEADER_BYTES: usize = 64 << 10;

/// How the API behaves: authentication, limits, durability of POSTs.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    keys: Option<ApiKeys>,
    max_body_bytes: usize,
    durability: Option<Durability>,
    shutdown_timeout: std::time::Duration,
    write_timeout: std::time::Duration,
    header_read_timeout: std::time::Duration,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            keys: None,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            durability: None,
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
            write_timeout: DEFAULT_WRITE_TIMEOUT,
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
        }
    }
}

impl ApiConfig {
    /// Open access, 64 MiB bodies, the store's durability.
    pub fn new() -> Self {
        Self::default()
    }

    /// Requires one of these API keys on every request. Default: no keys, open access.
    pub fn keys(mut self, keys: ApiKeys) -> Self {
        self.keys = Some(keys);
        self
    }

    /// The largest POST body accepted, in bytes; larger is 413. Default:
    /// [`DEFAULT_MAX_BODY_BYTES`].
    pub fn max_body_bytes(mut self, bytes: usize) -> Self {
        self.max_body_bytes = bytes;
        self
    }

    /// The durability a POST reaches before its 200. Default: the store's.
    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = Some(durability);
        self
    }

    /// How long [`serve`] waits for requests in flight once shutdown began (a client that
    /// stalls reading a big response would hold it forever). Default:
    /// [`DEFAULT_SHUTDOWN_TIMEOUT`].
    pub fn shutdown_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.shutdown_timeout = timeout;
        self
    }

    /// How long [`serve`] lets a connection wait for its client to take a byte of a response
    /// before closing it: a client that stops reading a big GET would otherwise hold the
    /// connection and what was made ahead for it as long as it stays connected. Only the
    /// socket's progress counts: a response that takes longer in all, or waits for the store,
    /// is not cut. The socket takes more once the client has read a good part of its send
    /// buffer (up to 4 MiB on Linux), so a reader slower than that per timeout is cut too.
    /// `Duration::MAX` sets no deadline. Default: [`DEFAULT_WRITE_TIMEOUT`].
    pub fn write_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.write_timeout = timeout;
        self
    }

    /// How long [`serve`] waits for a request's head (its request line and header fields)
    /// before closing the connection without an answer: from when the connection is accepted,
    /// and on a keep-alive connection from when the previous response was written, so it is also
    /// how long such a connection may stay idle. It bounds the whole head, however steadily its
    /// bytes come: a client that sends nothing, part of a head, or a head a byte at a time would
    /// otherwise hold its connection and task as long as it stays connected. The body is not
    /// counted: a POST body that stops arriving for 30 s is 408. `Duration::MAX` sets no
    /// timeout; a zero one closes every connection whose head is not in its first read (the
    /// command line refuses it). Default: [`DEFAULT_HEADER_READ_TIMEOUT`].
    pub fn header_read_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.header_read_timeout = timeout;
        self
    }
}

struct AppState {
    store: Store,
    config: ApiConfig,
}

type Shared = State<Arc<AppState>>;

/// The Activity API router over `store`. It answers a URI over 60 KiB with 414 and header
/// fields over 64 KiB with 431, each with a sentence, whatever server it is mounted in.
pub fn router(store: Store, config: ApiConfig) -> Router {
    let limit = config.max_body_bytes;
    let state = Arc::new(AppState { store, config });
    let projects = answering_others(get(get_projects), PROJECTS_METHODS);
    let one = answering_others(get(get_activity).post(post_activity), PROJECT_METHODS);
    Router::new()
        .route("/activity/projects", projects.clone())
        .route("/activity/projects/", projects)
        .route("/activity/{project}", one.clone())
        .route("/activity/{project}/", one)
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(limit))
        .layer(middleware::from_fn_with_state(state.clone(), require_key))
        .layer(middleware::from_fn_with_state(state.clone(), within_limits))
        .layer(middleware::from_fn(common_headers))
        .with_state(state)
}

/// With keys configured, a request without a known key is 401 before its path, method or
/// parameters are looked at (which keys may use which project is the handlers' check).
///
/// `OPTIONS` is the exception: browsers send a CORS preflight without credentials, and its
/// answer reads nothing from the store.
async fn require_key(State(state): Shared, request: Request, next: Next) -> Response {
    if let Some(keys) = &state.config.keys {
        if request.method() != Method::OPTIONS {
            if let Err(r) = auth::authenticate(keys, request.headers(), request.uri().query()) {
                return r;
            }
        }
    }
    next.run(request).await
}

/// A request whose URI or header fields are over the API's limits ([`MAX_URI_BYTES`],
/// [`MAX_HEADER_BYTES`]) is 414 or 431 with a sentence, before its key is looked at, as hyper's
/// own answers to larger ones are; and so is one whose `Content-Length` says its body is over
/// the config's [`max_body_bytes`](ApiConfig::max_body_bytes), 413 at once, without waiting
/// for a body it would refuse (or for the body timeout, if the client never sends it).
async fn within_limits(State(state): Shared, request: Request, next: Next) -> Response {
    let uri_bytes = request
        .uri()
        .path_and_query()
        .map_or(0, |pq| pq.as_str().len());
    if uri_bytes > MAX_URI_BYTES {
        return plain(
            StatusCode::URI_TOO_LONG,
            format!(
                "the request URI is {uri_bytes} bytes, over the limit of {MAX_URI_BYTES}; \
                 ask for fewer projects or filters at a time"
            ),
        );
    }
    let header_bytes: usize = request
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    if header_bytes > MAX_HEADER_BYTES {
        return plain(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            format!(
                "the request's header fields are {header_bytes} bytes, over the limit of \
                 {MAX_HEADER_BYTES}"
            ),
        );
    }
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > state.config.max_body_bytes as u64) {
        return body_too_large(state.config.max_body_bytes);
    }
    next.run(request).await
}

/// 413: the request body is over `limit` bytes.
fn body_too_large(limit: usize) -> Response {
    plain(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("the request body is over the limit of {limit} bytes"),
    )
}

/// Serves `router` on `listener` until `shutdown` completes, then finishes requests in flight,
/// syncs the store and returns.
///
/// Once `shutdown` completes, no connection is accepted; each open connection is closed once its
/// request in flight is answered, an idle one at once. Requests still in flight after the
/// config's [`shutdown_timeout`](ApiConfig::shutdown_timeout) are not waited for: their
/// connections' tasks (and the store handles they hold) end when the runtime shuts down. A
/// connection whose client takes no byte of a response for the config's
/// [`write_timeout`](ApiConfig::write_timeout) is closed, and so is, without an answer, one
/// whose client has not sent a whole request head the config's
/// [`header_read_timeout`](ApiConfig::header_read_timeout) after it opened or after its
/// previous response. An error accepting a connection does not end the server: one that
/// concerns that connection alone is skipped, others (out of file handles) are logged and
/// accepting resumes a second later.
pub async fn serve(
    store: Store,
    config: ApiConfig,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let write_timeout = config.write_timeout;
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(hyper_timeout(config.header_read_timeout));
    let deadline = config.shutdown_timeout;
    let app = router(store.clone(), config)
        .layer(tower_http::compression::CompressionLayer::new().gzip(true))
        // A client that never finishes sending its body is cut off instead of holding a task.
        .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(
            BODY_TIMEOUT,
        ))
        .layer(middleware::from_fn(log_request));
    // Every connection holds a receiver until it ends: the sender is closed once all have.
    let (began, _) = tokio::sync::watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let socket = tokio::select! {
            socket = accept(&listener) => socket,
            () = &mut shutdown => break,
        };
        // Each write goes out at once: with Nagle's algorithm a streamed response's last
        // segment waited for the client's delayed ACK of the one before (about 40 ms).
        if let Err(e) = socket.set_nodelay(true) {
            log::debug!("cannot set TCP_NODELAY on a connection: {e}");
        }
        let io = hyper_util::rt::TokioIo::new(deadline::WriteDeadline::new(socket, write_timeout));
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        let connection = http.serve_connection(io, service);
        tokio::spawn(serve_connection(connection, began.subscribe()));
    }
    drop(listener);
    began.send_replace(true);
    tokio::select! {
        () = began.closed() => {}
        () = tokio::time::sleep(deadline) => log::warn!(
            "requests still in flight {deadline:?} after shutdown began are dropped"
        ),
    }
    tokio::task::spawn_blocking(move || store.sync())
        .await
        .map_err(std::io::Error::other)?
        .map_err(std::io::Error::other)
}

/// `timeout` as hyper takes it, `None` being none. hyper adds it to the clock's now for each
/// head: a timeout so long that this could overflow (`Duration::MAX`) is none. One whose double
/// fits now leaves room for the server to run longer than the timeout itself.
fn hyper_timeout(timeout: std::time::Duration) -> Option<std::time::Duration> {
    std::time::Instant::now()
        .checked_add(timeout.saturating_mul(2))
        .map(|_| timeout)
}

/// How long [`accept`] waits after an error such as running out of file handles (axum::serve
/// and hyper 0.14's server waited as long).
const ACCEPT_RETRY: std::time::Duration = std::time::Duration::from_secs(1);

/// The next connection on `listener`. An error that concerns one connection (its client gave
/// up before it was accepted) is skipped; any other (out of file handles: `EMFILE`, `ENFILE`;
/// out of memory) is logged, and accepting resumes after [`ACCEPT_RETRY`], when connections that
/// ended may have freed what it lacked.
async fn accept(listener: &tokio::net::TcpListener) -> tokio::net::TcpStream {
    loop {
        match listener.accept().await {
            Ok((socket, _)) => return socket,
            Err(e) if concerns_one_connection(&e) => {}
            Err(e) => {
                log::error!("cannot accept a connection, trying again in {ACCEPT_RETRY:?}: {e}");
                tokio::time::sleep(ACCEPT_RETRY).await;
            }
        }
    }
}

/// Whether an error of `accept(2)` concerns the connection it was taking alone: its client gave
/// up, or (as Linux's accept(2) says) one of the network errors pending on the new connection,
/// which are to be treated like `EAGAIN`; a firewall's refusal is `EPERM`.
fn concerns_one_connection(e: &std::io::Error) -> bool {
    use rustix::io::Errno;
    use std::io::ErrorKind;
    matches!(
        e.kind(),
        ErrorKind::ConnectionAborted
            | ErrorKind::ConnectionReset
            | ErrorKind::ConnectionRefused
            | ErrorKind::NetworkDown
            | ErrorKind::NetworkUnreachable
            | ErrorKind::HostUnreachable
            | ErrorKind::PermissionDenied
    ) || [
        Errno::PROTO,
        Errno::NOPROTOOPT,
        Errno::HOSTDOWN,
        Errno::NONET,
        Errno::OPNOTSUPP,
    ]
    .contains(&Errno::from_io_error(e).unwrap_or(Errno::INVAL))
}

/// Drives `connection` to its end; once `began` turns true (shutdown began), it ends after its
/// request in flight, at once when idle. Holds `began` until then: [`serve`] waits for every
/// connection's receiver to be gone.
async fn serve_connection(connection: Connection, mut began: tokio::sync::watch::Receiver<bool>) {
    let mut connection = std::pin::pin!(connection);
    let ended = tokio::select! {
        ended = connection.as_mut() => ended,
        () = shutdown_began(&mut began) => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    // A client that goes away mid-response, or a write past its deadline, ends here: nothing
    // for the server to act on.
    if let Err(e) = ended {
        log::debug!("a connection ended with an error: {e}");
    }
}

/// Completes once `began` turns true; never if its sender is gone without it (a [`serve`] future
/// dropped before its shutdown leaves its connections served until they end).
async fn shutdown_began(began: &mut tokio::sync::watch::Receiver<bool>) {
    if began.wait_for(|&began| began).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// A connection [`serve`] serves: hyper's HTTP/1 over an accepted socket with its write deadline.
type Connection = hyper::server::conn::http1::Connection<
    hyper_util::rt::TokioIo<deadline::WriteDeadline<tokio::net::TcpStream>>,
    hyper_util::service::TowerToHyperService<Router>,
>;

/// One log line per request: method, path, status, duration.
async fn log_request(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let start = Instant::now();
    let response = next.run(request).await;
    log::info!(
        "{method} {path} {} {:.3} ms",
        response.status().as_u16(),
        start.elapsed().as_secs_f64() * 1e3
    );
    response
}

/// `Access-Control-Allow-Origin: *` on every response.
async fn common_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    response.headers_mut().insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    response
}

/// A plain-text error response: one sentence and a newline.
pub(crate) fn plain(status: StatusCode, sentence: impl Into<String>) -> Response {
    let mut body = sentence.into();
    body.push('\n');
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=UTF-8")],
        body,
    )
        .into_response()
}

async fn not_found() -> Response {
    plain(
        StatusCode::NOT_FOUND,
        "not found: the Activity API serves /activity/{project_id} and /activity/projects",
    )
}

/// What `/activity/{project_id}` serves, as `Allow` and `Access-Control-Allow-Methods` list it
/// (HEAD is the GET handler's, without the body).
const PROJECT_METHODS: &str = "GET, HEAD, POST, OPTIONS";
/// What `/activity/projects` serves.
const PROJECTS_METHODS: &str = "GET, HEAD, OPTIONS";
/// The request headers the API reads, allowed to a preflight that names none.
const READ_HEADERS: &str = "Authorization, Content-Type, Accept, Accept-Encoding";
/// How long a browser may keep a preflight's answer, in seconds: a day (Chromium keeps it 2 h
/// at most, Firefox a day).
const PREFLIGHT_MAX_AGE_SECS: &str = "86400";

/// `route`, serving `methods`, answering `OPTIONS` ([`preflight`]) and 405 to the others.
fn answering_others(
    route: MethodRouter<Arc<AppState>>,
    methods: &'static str,
) -> MethodRouter<Arc<AppState>> {
    route
        .options(move |headers: HeaderMap| async move { preflight(methods, &headers) })
        .fallback(move |method: Method| async move { method_not_allowed(methods, &method) })
}

/// The answer to `OPTIONS`, a browser's CORS preflight among them: 204 with the route's
/// `methods`, for any origin (`common_headers`) and any request headers.
///
/// The headers a preflight asks for are allowed as asked: the API ignores those it does not
/// read, so refusing them would only break pages whose HTTP library adds its own (tracing,
/// `X-Requested-With`), and without cookies (the origin is `*`) allowing one grants nothing.
fn preflight(methods: &'static str, request: &HeaderMap) -> Response {
    let headers = request
        .get(header::ACCESS_CONTROL_REQUEST_HEADERS)
        .cloned()
        .unwrap_or(HeaderValue::from_static(READ_HEADERS));
    (
        StatusCode::NO_CONTENT,
        [
            (header::ALLOW, HeaderValue::from_static(methods)),
            (
                header::ACCESS_CONTROL_ALLOW_METHODS,
                HeaderValue::from_static(methods),
            ),
            (header::ACCESS_CONTROL_ALLOW_HEADERS, headers),
            (
                header::ACCESS_CONTROL_MAX_AGE,
                HeaderValue::from_static(PREFLIGHT_MAX_AGE_SECS),
            ),
            (
                header::VARY,
                HeaderValue::from_static("Access-Control-Request-Headers"),
            ),
        ],
    )
        .into_response()
}

/// 405, with `Allow` naming the route's `methods`.
fn method_not_allowed(methods: &'static str, method: &Method) -> Response {
    let mut r = plain(
        StatusCode::METHOD_NOT_ALLOWED,
        format!(
            "method {} is not allowed here",
            crate::error::excerpt(method.as_str())
        ),
    );
    r.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(methods));
    r
}

/// Parses a project id path segment; anything but an unsigned integer is 404, a segment that
/// is not UTF-8 (`%FF`) too.
fn project_id(segment: Result<Path<String>, PathRejection>) -> Result<u64, Response> {
    let Ok(Path(raw)) = segment else {
        return Err(plain(
            StatusCode::NOT_FOUND,
            "no such project: project ids are unsigned integers",
        ));
    };
    match raw.parse::<u64>() {
        Ok(id) if !raw.starts_with('+') => Ok(id),
        _ => Err(plain(
            StatusCode::NOT_FOUND,
            format!(
                "no such project {}: project ids are unsigned integers",
                quoted(&raw)
            ),
        )),
    }
}

/// Maps a library error to a response.
fn error_response(e: &Error) -> Response {
    match e {
        Error::InvalidQuery { reason } => plain(StatusCode::BAD_REQUEST, reason.clone()),
        Error::TooLarge { .. } | Error::BatchTooLarge { .. } => {
            plain(StatusCode::PAYLOAD_TOO_LARGE, e.to_string())
        }
        Error::InvalidMessage { .. } => plain(StatusCode::BAD_REQUEST, e.to_string()),
        Error::Poisoned { .. } | Error::ReadOnly => {
            plain(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
        }
        _ => {
            log::error!("{e}");
            plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("internal error: {e}"),
            )
        }
    }
}

async fn post_activity(
    State(state): Shared,
    project: Result<Path<String>, PathRejection>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    // `BytesMut` copies each frame into one buffer; `Bytes` kept a list entry per frame.
    body: Result<BytesMut, BytesRejection>,
) -> Response {
    let project = match project_id(project) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let params = match Params::parse(query.as_deref()) {
        Ok(p) => p,
        Err(r) => return r,
    };
    if let Err(r) = auth::check(&state.config.keys, &headers, &params, Some(project)) {
        return r;
    }
    let body = match body {
        Ok(b) => b.freeze(),
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return body_too_large(state.config.max_body_bytes)
        }
        Err(rejection) => return body_unread(&rejection),
    };
    let store = state.store.clone();
    let durability = state.config.durability.unwrap_or(store.durability());
    // A small `Written` batch for an open project is kept to memory (a copy into the page
    // cache), done here rather than handed to a thread that may block; refused, it is handed
    // over as any other.
    let inline = if durability == Durability::Written && body.len() <= INLINE_POST_BYTES {
        crate::without_blocking(|| store.append_json_lines(project, &body, durability)).ok()
    } else {
        None
    };
    let result = match inline {
        Some(done) => Ok(done),
        None => {
            tokio::task::spawn_blocking(move || store.append_json_lines(project, &body, durability))
                .await
        }
    };
    match result {
        Ok(Ok(_)) => StatusCode::OK.into_response(),
        Ok(Err(e @ (Error::InvalidMessage { .. } | Error::TooLarge { .. }))) => {
            let status = match e {
                Error::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
                _ => StatusCode::BAD_REQUEST,
            };
            plain(status, format!("{e}; nothing was stored"))
        }
        Ok(Err(e)) => error_response(&e),
        Err(join) => plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("internal error: {join}"),
        ),
    }
}

/// The answer to a body that could not be read (other than for its size): 408 when it did not
/// arrive in time (`serve` gives clients 30 s), else 400.
fn body_unread(rejection: &BytesRejection) -> Response {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(rejection);
    while let Some(e) = cause {
        if e.is::<tower_http::timeout::TimeoutError>() {
            return plain(
                StatusCode::REQUEST_TIMEOUT,
                "the request body did not arrive in time; nothing was stored",
            );
        }
        cause = e.source();
    }
    plain(
        StatusCode::BAD_REQUEST,
        "the request body could not be read to its end; nothing was stored",
    )
}

async fn get_activity(
    State(state): Shared,
    project: Result<Path<String>, PathRejection>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let project = match project_id(project) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let params = match Params::parse(query.as_deref()) {
        Ok(p) => p,
        Err(r) => return r,
    };
    if let Err(r) = auth::check(&state.config.keys, &headers, &params, Some(project)) {
        return r;
    }
    let mut q = Query::new().projects([project]);
    if let Some(count) = params.count {
        q = q.count(count);
    }
    respond(&state, &headers, &params, q, params.filters.clone()).await
}

async fn get_projects(
    State(state): Shared,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let params = match Params::parse(query.as_deref()) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let allowed = match auth::check(&state.config.keys, &headers, &params, None) {
        Ok(a) => a,
        Err(r) => return r,
    };
    let mut q = Query::new();
    match (&params.projects, allowed) {
        (Some(ps), Some(allowed)) => {
            if let Some(p) = ps.iter().find(|p| !allowed.contains(p)) {
                return plain(
                    StatusCode::FORBIDDEN,
                    format!("this API key may not read project {p}"),
                );
            }
            q = q.projects(ps.iter().copied());
        }
        (Some(ps), None) => q = q.projects(ps.iter().copied()),
        (None, Some(allowed)) => q = q.projects(allowed.iter().copied()),
        (None, None) => {}
    }
    if let Some(count) = params.count {
        q = q.count(count);
    }
    if let Some(pcount) = params.pcount {
        q = q.pcount(pcount);
    }
    respond(&state, &headers, &params, q, params.filters.clone()).await
}

/// Runs the query and answers with its result: in one piece when it fits one chunk, else
/// streamed chunk by chunk. The first chunk is made right here when the store holds it in
/// memory ([`without_blocking`](crate::without_blocking): the newest pages of projects this
/// process writes), else on a blocking thread (one hand-off per request); later chunks are made
/// on blocking threads.
async fn respond(
    state: &AppState,
    headers: &HeaderMap,
    params: &Params,
    mut query: Query,
    filters: Vec<crate::Filter>,
) -> Response {
    for f in filters {
        query = query.filter(f);
    }
    let format = match params.format(headers) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let store = state.store.clone();
    let meta = params.meta.clone();
    let first_chunk = move || {
        let mut body = ResponseBody::new(store.query(&query)?, meta, format);
        let chunk = body.next_chunk()?;
        Ok::<_, Error>((chunk, body))
    };
    let first = match crate::without_blocking(first_chunk.clone()) {
        Ok(made) => Ok(made),
        // Not all in memory: made again where it may wait for the disk.
        Err(_) => tokio::task::spawn_blocking(first_chunk).await,
    };
    let (chunk, rest) = match first {
        Ok(Ok(x)) => x,
        Ok(Err(e)) => return error_response(&e),
        Err(join) => {
            return plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("internal error: {join}"),
            )
        }
    };
    let content_type = match format {
        Format::Json => "application/json; charset=UTF-8",
        Format::JsonLines => "application/x-jsonlines; charset=UTF-8",
    };
    let body = if rest.done {
        Body::from(chunk)
    } else {
        let (tx, mut rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(CHUNKS_IN_FLIGHT);
        tokio::spawn(rest.stream_into(tx));
        // `poll_recv` keeps answering `None` once the channel is drained, as a fused stream must.
        let rest = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
        Body::from_stream(futures_util::StreamExt::chain(
            futures_util::stream::iter([Ok(chunk)]),
            rest,
        ))
    };
    // The format may come from `Accept`: a cache must not answer one format with the other.
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::VARY, "Accept"),
        ],
        body,
    )
        .into_response()
}

/// A response body being produced from a query, chunk by chunk, on a blocking thread.
struct ResponseBody {
    merged: Merged,
    meta: Vec<Meta>,
    format: Format,
    started: bool,
    done: bool,
}

impl ResponseBody {
    fn new(merged: Merged, meta: Vec<Meta>, format: Format) -> Self {
        ResponseBody {
            merged,
            meta,
            format,
            started: false,
            done: false,
        }
    }

    /// The next chunk: up to [`CHUNK_BYTES`] of messages; the closing bracket of a JSON array
    /// with the last one. Sets `done` when nothing follows.
    fn next_chunk(&mut self) -> Result<Bytes, Error> {
        let mut buf = Vec::with_capacity(4096);
        if !self.started && self.format == Format::Json {
            buf.push(b'[');
        }
        for item in self.merged.by_ref() {
            let m = item?;
            if self.format == Format::Json && self.started {
                buf.push(b',');
            }
            self.started = true;
            m.write_with_meta(&self.meta, &mut buf);
            if self.format == Format::JsonLines {
                buf.push(b'\n');
            }
            if buf.len() >= CHUNK_BYTES {
                return Ok(Bytes::from(buf));
            }
        }
        if self.format == Format::Json {
            buf.push(b']');
        }
        self.started = true;
        self.done = true;
        Ok(Bytes::from(buf))
    }

    /// Sends the remaining chunks into `tx`, each made on a blocking thread once `tx` has room
    /// for it; stops early when the client goes away. A client that reads slowly, or not at
    /// all, holds no thread while it does not read (as many stalled readers as the runtime has
    /// blocking threads would otherwise hold them all, and every other request would wait).
    /// A read error, or a panic while making a chunk, ends the stream with an error, so the
    /// client sees a broken response rather than silently missing messages.
    async fn stream_into(self, tx: mpsc::Sender<Result<Bytes, std::io::Error>>) {
        let mut body = self;
        while !body.done {
            let Ok(room) = tx.reserve().await else {
                return;
            };
            let made = tokio::task::spawn_blocking(move || {
                let chunk = body.next_chunk();
                (chunk, body)
            })
            .await;
            let failure = match made {
                Ok((Ok(chunk), rest)) => {
                    room.send(Ok(chunk));
                    body = rest;
                    continue;
                }
                Ok((Err(e), _)) => e.to_string(),
                Err(join) => format!("internal error: {join}"),
            };
            log::error!("while streaming a response: {failure}");
            room.send(Err(std::io::Error::other(failure)));
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::concerns_one_connection;
    use rustix::io::Errno;

    #[test]
    fn accept_errors_of_one_connection_are_told_from_the_servers() {
        let error = |errno: Errno| std::io::Error::from_raw_os_error(errno.raw_os_error());
        for one in [
            Errno::CONNABORTED,
            Errno::PROTO,
            Errno::NETDOWN,
            Errno::HOSTUNREACH,
            Errno::PERM,
        ] {
            assert!(concerns_one_connection(&error(one)), "{one:?}");
        }
        // Out of file handles or memory: the server's, waited out before accepting again.
        for server in [Errno::MFILE, Errno::NFILE, Errno::NOMEM, Errno::NOBUFS] {
            assert!(!concerns_one_connection(&error(server)), "{server:?}");
        }
    }
}
