//! `http::serve`'s shutdown: once its shutdown future completes, it answers the request in
//! flight, closes idle connections, syncs the store and returns, without waiting for its
//! shutdown timeout.
#![cfg(feature = "server")]

use std::time::Duration;

use activitylog::http::{serve, ApiConfig};
use activitylog::Store;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A deadlock guard, far below the shutdown timeout the server is given.
const GUARD: Duration = Duration::from_secs(10);

/// `serve` returns once the request in flight when shutdown began is answered, though an idle
/// keep-alive connection is open: that one is closed, the answered one too, and no connection
/// is accepted any more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_returns_once_the_request_in_flight_is_answered() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let config = ApiConfig::new().shutdown_timeout(Duration::from_secs(60));
    let served = tokio::spawn(serve(store.clone(), config, listener, async {
        let _ = stopped.await;
    }));
    // A keep-alive connection, answered once (an empty project: no body), then idle.
    let mut idle = tokio::net::TcpStream::connect(addr).await.unwrap();
    idle.write_all(b"GET /activity/1 HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0];
        assert_eq!(idle.read(&mut byte).await.unwrap(), 1, "closed early");
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 200 "));
    // A POST whose handler waits for the rest of its body when shutdown begins.
    let mut posting = tokio::net::TcpStream::connect(addr).await.unwrap();
    posting
        .write_all(b"POST /activity/1 HTTP/1.1\r\nHost: x\r\nContent-Length: 8\r\n\r\n{\"a\"")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.send(()).unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !served.is_finished(),
        "serve returned with a request in flight"
    );
    posting.write_all(b":1}\n").await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(GUARD, posting.read_to_end(&mut answer))
        .await
        .expect("the answered connection was not closed")
        .unwrap();
    let answer = String::from_utf8(answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
    tokio::time::timeout(GUARD, served)
        .await
        .expect("serve waited for its shutdown timeout")
        .unwrap()
        .unwrap();
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(GUARD, idle.read_to_end(&mut rest)).await;
    assert!(
        matches!(closed, Ok(Ok(0))),
        "the idle connection: {closed:?}"
    );
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    let stored: Vec<String> = store
        .newest_first(1)
        .unwrap()
        .map(|m| m.unwrap().json().to_owned())
        .collect();
    assert_eq!(stored, [r#"{"a":1}"#]);
}
