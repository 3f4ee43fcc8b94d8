//! `http::serve` outlives running out of file handles: accepting a connection fails while the
//! process has none to spare, and succeeds again once it has. One test function, alone in its
//! test binary, since the file-handle limit is the process's.
#![cfg(feature = "server")]

mod common;

use std::time::Duration;

use activitylog::http::{serve, ApiConfig};
use activitylog::Store;
use common::{next_handle, set_handle_limit};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const REQUEST: &[u8] = b"GET /nowhere HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";

/// A connection made while the server cannot accept it (no file handle to spare) is answered
/// once handles are free again: the server did not stop accepting.
#[test]
fn a_connection_is_answered_once_file_handles_are_free_again() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(serve(
            store,
            ApiConfig::new(),
            listener,
            std::future::pending(),
        ));
        // The client's socket is made first: while the limit holds, only the server's accept
        // needs a handle (the connection itself waits in the listener's backlog).
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        let old = set_handle_limit(next_handle());
        let mut conn = socket.connect(addr).await.unwrap();
        conn.write_all(REQUEST).await.unwrap();
        let mut answer = Vec::new();
        let early =
            tokio::time::timeout(Duration::from_millis(1500), conn.read(&mut [0; 64])).await;
        set_handle_limit(old);
        assert!(early.is_err(), "answered without a file handle: {early:?}");
        // A deadlock guard, not a measure of speed.
        tokio::time::timeout(Duration::from_secs(30), conn.read_to_end(&mut answer))
            .await
            .expect("the server stopped accepting")
            .unwrap();
        let answer = String::from_utf8(answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 404 "), "{answer}");
    });
}
