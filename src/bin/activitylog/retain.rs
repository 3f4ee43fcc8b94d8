//! `activitylog retain`: applying retention limits now (`serve` applies the same limits every
//! minute with its `--retain-*` options).

use std::io::{self, Write};
use std::path::Path;
use std::time::Duration;

use activitylog::{Retained, Retention, Store};
use anyhow::Result;
use clap::{ArgGroup, Args};

use crate::report::{count, human_bytes};
use crate::units::{parse_duration, parse_size};
use crate::{open_read_only, written, StoreArgs};

/// Arguments of `activitylog retain`.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("limits").required(true).multiple(true)))]
pub struct RetainArgs {
    #[command(flatten)]
    store: StoreArgs,

    /// Delete a project's segments whose newest message is older than this: 30d, 12h, 90m,
    /// 45s, 500ms.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, group = "limits")]
    max_age: Option<Duration>,

    /// Delete a project's oldest segments while its files take more than this: 10G, 512M, 64K
    /// or bytes (binary units).
    #[arg(long, value_name = "SIZE", value_parser = parse_size, group = "limits")]
    max_bytes: Option<u64>,

    /// Delete a project's oldest segments while it holds more than this many messages.
    #[arg(long, value_name = "N", group = "limits")]
    max_messages: Option<u64>,
}

/// The limits given, as a [`Retention`].
pub fn retention(
    max_age: Option<Duration>,
    max_bytes: Option<u64>,
    max_messages: Option<u64>,
) -> Retention {
    let mut r = Retention::new();
    if let Some(age) = max_age {
        r = r.max_age(age);
    }
    if let Some(bytes) = max_bytes {
        r = r.max_bytes(bytes);
    }
    if let Some(n) = max_messages {
        r = r.max_messages(n);
    }
    r
}

/// "3 segments (1200 messages, 12.3 KB)".
pub fn describe(r: &Retained) -> String {
    format!(
        "{} ({}, {})",
        count(r.segments, "segment"),
        count(r.messages, "message"),
        human_bytes(r.bytes)
    )
}

/// `activitylog retain`: needs the store's write lock, so not while a server runs on it.
pub fn retain(args: RetainArgs) -> Result<()> {
    let dir: &Path = &args.store.dir;
    // A read-only open first, so a folder that holds no store is reported, not made a store.
    drop(open_read_only(dir)?);
    let store = Store::open(dir)?;
    let retained =
        store.apply_retention(&retention(args.max_age, args.max_bytes, args.max_messages))?;
    let line = format!("removed {}\n", describe(&retained));
    written(io::stdout().lock().write_all(line.as_bytes()))?;
    Ok(())
}
