//! `activitylog serve`: the Activity API on an embedded store.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use activitylog::http::{self, ApiConfig, ApiKeys};
use activitylog::{Durability, Options, Retention, Store};
use anyhow::{bail, Context};

use crate::retain::{describe, retention};
use crate::units::{parse_duration, parse_size};
use crate::DurabilityArg;

/// How often retention runs when a `--retain-*` limit is set.
const RETENTION_EVERY: Duration = Duration::from_secs(60);

/// Arguments of `activitylog serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// The store directory; created if missing.
    #[arg(long, default_value = "./activity-data")]
    dir: PathBuf,
    /// The address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// What a 200 to a POST guarantees: `written` (handed to the OS: survives a crash of the
    /// server, not a power cut) or `sync` (fsynced: survives a power cut; concurrent requests
    /// share fsyncs).
    #[arg(long, value_enum, default_value_t = DurabilityArg::Written)]
    durability: DurabilityArg,
    /// An API key that may use every project (repeatable). Without keys the API is open.
    #[arg(long = "api-key")]
    api_keys: Vec<String>,
    /// A file of API keys: one per line, optionally followed by the project ids it may use.
    #[arg(long = "api-keys", value_name = "FILE")]
    api_keys_file: Option<PathBuf>,
    /// The largest POST body accepted, in bytes.
    #[arg(long, default_value_t = http::DEFAULT_MAX_BODY_BYTES)]
    max_body_bytes: usize,
    /// Segment size in bytes, for a store this command creates.
    #[arg(long, value_name = "N", value_parser = crate::segment_bytes())]
    segment_bytes: Option<u64>,
    /// The largest message a POST may hold, in bytes after whitespace removal (at most
    /// 16 MiB - 1); larger is 413.
    #[arg(
        long,
        value_name = "N",
        default_value_t = activitylog::DEFAULT_MAX_MESSAGE_BYTES,
        value_parser = crate::message_bytes()
    )]
    max_message_bytes: usize,
    /// Every minute, delete a project's segments whose newest message is older than this:
    /// 30d, 12h, 90m, 45s, 500ms.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    retain_max_age: Option<Duration>,
    /// Every minute, delete a project's oldest segments while its files take more than this:
    /// 10G, 512M, 64K or bytes (binary units).
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    retain_max_bytes: Option<u64>,
    /// Every minute, delete a project's oldest segments while it holds more than this many
    /// messages.
    #[arg(long, value_name = "N")]
    retain_max_messages: Option<u64>,
    /// On SIGINT or SIGTERM, how long to wait for requests in flight before dropping their
    /// connections: 10s, 500ms, ...
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "10s")]
    shutdown_timeout: Duration,
    /// Close a connection whose socket takes no byte of a response for this long: its client
    /// stopped reading, or reads less than a good part of the socket's send buffer (up to
    /// 4 MiB) in that time. 60s, 500ms, ...
    #[arg(long, value_name = "DURATION", value_parser = parse_positive_duration, default_value = "60s")]
    write_timeout: Duration,
    /// Close a connection whose client has not sent a whole request head (request line and
    /// header fields) this long after it connected, or after its previous response: one that
    /// sends nothing, part of a head or a head a byte at a time, or a keep-alive connection left
    /// idle. 30s, 500ms, ...
    #[arg(long, value_name = "DURATION", value_parser = parse_positive_duration, default_value = "30s")]
    header_read_timeout: Duration,
}

/// Runs the server until SIGINT or SIGTERM, then finishes requests in flight (waiting at most
/// `--shutdown-timeout` for them), syncs the store, releases its lock and returns.
pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let durability: Durability = args.durability.into();
    let mut options = Options::new()
        .durability(durability)
        .max_message_bytes(args.max_message_bytes);
    if let Some(bytes) = args.segment_bytes {
        options = options.segment_bytes(bytes);
    }
    let mut keys = ApiKeys::new();
    for key in &args.api_keys {
        if key.is_empty() {
            bail!("--api-key is empty; an API key must have at least one character");
        }
        keys = keys.allow_all(key.clone());
    }
    if let Some(path) = &args.api_keys_file {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the API keys file {}", path.display()))?;
        let file_keys =
            ApiKeys::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        if file_keys.is_empty() {
            bail!(
                "the API keys file {} holds no key; the server would be open to anyone",
                path.display()
            );
        }
        keys = keys.merge(file_keys);
    }
    let mut config = ApiConfig::new()
        .max_body_bytes(args.max_body_bytes)
        .durability(durability)
        .shutdown_timeout(args.shutdown_timeout)
        .write_timeout(args.write_timeout)
        .header_read_timeout(args.header_read_timeout);
    if !keys.is_empty() {
        config = config.keys(keys);
    }
    let retention = retention(
        args.retain_max_age,
        args.retain_max_bytes,
        args.retain_max_messages,
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    // Everything that can fail before serving (the keys, the address) is done before the store
    // is opened, which creates it: a server that cannot start leaves no store behind.
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind(args.listen))
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let store = options.open(&args.dir)?;
    let served = runtime.block_on(async move {
        let local = listener.local_addr()?;
        say(&format!(
            "serving the Activity API on http://{local}/ from {} ({durability:?} durability)",
            args.dir.display()
        ));
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let retainer = (!retention.is_unlimited())
            .then(|| tokio::spawn(retain_periodically(store.clone(), retention, stopped)));
        let served = http::serve(store, config, listener, shutdown_signal()).await;
        // The retention task holds a handle on the store: it must be gone before the store is
        // unlocked. It stops between runs.
        let _ = stop.send(true);
        if let Some(task) = retainer {
            let _ = task.await;
        }
        served?;
        anyhow::Ok(())
    });
    // Tasks of connections that outlived the shutdown timeout hold store handles: ending them
    // closes the store (and unlocks it) before this returns — unless an append is still under
    // way on a blocking thread, which the process's exit then ends (what it acknowledged is
    // durable at its level; the next open recovers the rest as after a crash). Also when
    // serving failed: a runtime dropped instead would wait for such appends without a limit.
    runtime.shutdown_timeout(Duration::from_secs(1));
    served?;
    say("stopped");
    Ok(())
}

/// A duration above zero (a zero write or header read timeout would close every connection
/// whose client is a moment behind).
fn parse_positive_duration(s: &str) -> Result<Duration, String> {
    match parse_duration(s)? {
        Duration::ZERO => Err(format!("{s:?} is no time: give a duration above zero")),
        d => Ok(d),
    }
}

/// Applies `retention` now and every [`RETENTION_EVERY`] until `stop` turns true, logging what
/// it removed.
async fn retain_periodically(
    store: Store,
    retention: Retention,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut every = tokio::time::interval(RETENTION_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = every.tick() => {}
            _ = stop.wait_for(|&stop| stop) => return,
        }
        let s = store.clone();
        match tokio::task::spawn_blocking(move || s.apply_retention(&retention)).await {
            Ok(Ok(r)) if r.segments > 0 => log::info!("retention removed {}", describe(&r)),
            Ok(Ok(_)) => log::debug!("retention removed nothing"),
            Ok(Err(e)) => log::error!("retention failed: {e}"),
            Err(e) => log::error!("retention failed: {e}"),
        }
    }
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    say("shutting down, finishing requests in flight");
}

/// A status line on stderr. Stderr may be gone (a closed pipe); the server goes on regardless.
fn say(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "activitylog: {line}");
}
