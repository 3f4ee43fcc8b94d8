//! Mounting the Activity API inside your own axum application, beside your own routes.
//!
//! ```sh
//! cargo run --example embed
//! curl -d '{"event": "job:started"}' http://127.0.0.1:8090/api/activity/7
//! curl http://127.0.0.1:8090/api/activity/7
//! curl http://127.0.0.1:8090/health
//! ```

use activitylog::http::{router, ApiConfig, ApiKeys};
use activitylog::{Durability, Options};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join("activitylog-embed-example");
    let store = Options::new().durability(Durability::Sync).open(&dir)?;
    // Open access unless ACTIVITY_KEY is set; then that key may use projects 7 and 8 only.
    let mut config = ApiConfig::new();
    if let Ok(key) = std::env::var("ACTIVITY_KEY") {
        config = config.keys(ApiKeys::new().allow(key, [7, 8]));
    }
    let app = axum::Router::new()
        .nest("/api", router(store.clone(), config))
        .route("/health", axum::routing::get(|| async { "ok\n" }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:8090").await?;
    println!(
        "listening on http://127.0.0.1:8090/ (store in {})",
        dir.display()
    );
    // `axum::serve` sets no timeouts: a client that never finishes its request head, or never
    // reads its response, keeps its connection. `activitylog::http::serve` (the API alone)
    // closes such connections; in front of an application of your own, a proxy can.
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    store.sync()?;
    Ok(())
}
