//! The contestants: activitylog, SQLite given its best fair shot, and the limits (raw file
//! writes, a newest-first scan of the same bytes in memory).

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use activitylog::{Durability, Message, Options, Query, Store};
use memchr::memrchr;
use rusqlite::{params, Connection};

use crate::data::Data;

/// A result row for checking: `(project, seq, message)`.
pub type Row = (u64, u64, String);

/// Why a run stopped: the engine failed or answered wrongly.
pub type Fallible<T> = Result<T, Box<dyn std::error::Error>>;

// ---------------------------------------------------------------------------------------------
// activitylog

/// Opens (or creates) an activitylog store.
pub fn activitylog(dir: &Path, durability: Durability) -> Fallible<Store> {
    Ok(Options::new().durability(durability).open(dir)?)
}

/// The newest `n` messages of `project`.
pub fn al_newest(store: &Store, project: u64, n: usize) -> Fallible<Vec<Message>> {
    Ok(store
        .newest_first(project)?
        .take(n)
        .collect::<Result<_, _>>()?)
}

/// A merged query.
pub fn al_merged(
    store: &Store,
    projects: Option<&[u64]>,
    pcount: u64,
    count: u64,
) -> Fallible<Vec<Message>> {
    let mut q = Query::new().pcount(pcount).count(count);
    if let Some(p) = projects {
        q = q.projects(p.iter().copied());
    }
    Ok(store.query(&q)?.collect::<Result<_, _>>()?)
}

/// Full newest-first scan: `(messages, bytes)`, checking that sequence numbers fall by one.
pub fn al_scan(store: &Store, project: u64) -> Fallible<(u64, u64)> {
    let (mut n, mut bytes, mut prev) = (0u64, 0u64, u64::MAX);
    let mut it = store.newest_first(project)?;
    while let Some(m) = it.next_ref() {
        let m = m?;
        if prev != u64::MAX && m.seq() + 1 != prev {
            return Err(format!("activitylog scan: seq {} after {prev}", m.seq()).into());
        }
        prev = m.seq();
        n += 1;
        bytes += m.json().len() as u64;
    }
    Ok((n, bytes))
}

pub fn al_rows(ms: Vec<Message>) -> Vec<Row> {
    ms.into_iter()
        .map(|m| (m.project(), m.seq(), m.into_json()))
        .collect()
}

/// A page of messages copied into one buffer: what each engine fills for R1, with its
/// zero-copy read API (activitylog's `next_ref`, SQLite's `get_ref`, slices of memory), so that
/// all three do the same work: one buffer for the text, one for the rows.
#[derive(Default)]
pub struct Page {
    rows: Vec<(u64, std::ops::Range<usize>)>,
    text: Vec<u8>,
}

impl Page {
    pub fn with_capacity(rows: usize) -> Self {
        Page {
            rows: Vec::with_capacity(rows),
            text: Vec::with_capacity(rows * 256),
        }
    }

    pub fn push(&mut self, seq: u64, message: &[u8]) {
        let start = self.text.len();
        self.text.extend_from_slice(message);
        self.rows.push((seq, start..self.text.len()));
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// The rows of `project`, for checking.
    pub fn into_rows(self, project: u64) -> Vec<Row> {
        self.rows
            .into_iter()
            .map(|(seq, r)| {
                let json = String::from_utf8_lossy(&self.text[r]).into_owned();
                (project, seq, json)
            })
            .collect()
    }
}

/// The newest `n` messages of `project`, copied into a page.
pub fn al_page(store: &Store, project: u64, n: usize) -> Fallible<Page> {
    let mut page = Page::with_capacity(n);
    let mut it = store.newest_first(project)?;
    while page.len() < n {
        match it.next_ref() {
            Some(m) => {
                let m = m?;
                page.push(m.seq(), m.json().as_bytes());
            }
            None => break,
        }
    }
    Ok(page)
}

// ---------------------------------------------------------------------------------------------
// SQLite

/// SQLite as the issue prescribes: WAL, `WITHOUT ROWID` table keyed by `(project, seq)`, prepared
/// statements, `synchronous = FULL` when durable, `NORMAL` when not, a 1 GiB mmap for reads.
///
/// The page cache stays at SQLite's default (2 MiB): a 256 MiB one made every commit walk the
/// cache's hash table (`pcache1TruncateUnsafe`, 14% of an A1 run's CPU), so SQLite's single
/// appends ran slower, and no read ran faster (compare/README.md).
pub struct Sqlite {
    pub conn: Connection,
    /// Each project's next sequence number, kept in memory (cheaper than asking SQLite).
    next: HashMap<u64, u64>,
}

pub const SQLITE_SCHEMA: &str = "CREATE TABLE IF NOT EXISTS activity (
    project INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    ts INTEGER NOT NULL,
    msg TEXT NOT NULL,
    PRIMARY KEY (project, seq)
) WITHOUT ROWID";

impl Sqlite {
    pub fn open(path: &Path, durable: bool) -> Fallible<Self> {
        let conn = Connection::open(path)?;
        let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        if mode != "wal" {
            return Err(format!("SQLite refused WAL mode: {mode}").into());
        }
        conn.execute_batch(&format!(
            "PRAGMA synchronous = {};
             PRAGMA mmap_size = 1073741824;
             PRAGMA temp_store = MEMORY;
             PRAGMA busy_timeout = 60000;
             {SQLITE_SCHEMA};",
            if durable { "FULL" } else { "NORMAL" }
        ))?;
        let mut next = HashMap::new();
        {
            let mut stmt =
                conn.prepare("SELECT project, MAX(seq) FROM activity GROUP BY project")?;
            let mut rows = stmt.query([])?;
            while let Some(r) = rows.next()? {
                next.insert(r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64 + 1);
            }
        }
        Ok(Sqlite { conn, next })
    }

    fn take_seqs(&mut self, project: u64, n: u64) -> u64 {
        let next = self.next.entry(project).or_insert(1);
        let first = *next;
        *next += n;
        first
    }

    /// One transaction holding the batch.
    pub fn append(&mut self, project: u64, ts: u64, msgs: &[&str]) -> Fallible<()> {
        let first = self.take_seqs(project, msgs.len() as u64);
        if msgs.len() == 1 {
            let mut stmt = self
                .conn
                .prepare_cached("INSERT INTO activity VALUES (?1, ?2, ?3, ?4)")?;
            stmt.execute(params![project as i64, first as i64, ts as i64, msgs[0]])?;
            return Ok(());
        }
        let tx = self.conn.transaction()?;
        {
            let mut stmt = tx.prepare_cached("INSERT INTO activity VALUES (?1, ?2, ?3, ?4)")?;
            for (i, m) in msgs.iter().enumerate() {
                stmt.execute(params![
                    project as i64,
                    (first + i as u64) as i64,
                    ts as i64,
                    m
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// The newest `n` of `project` as `(seq, ts, msg)`.
    pub fn newest(&self, project: u64, n: usize) -> Fallible<Vec<(u64, u64, String)>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT seq, ts, msg FROM activity WHERE project = ?1 ORDER BY seq DESC LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![project as i64, n as i64], |r| {
            Ok((
                r.get::<_, i64>(0)? as u64,
                r.get::<_, i64>(1)? as u64,
                r.get(2)?,
            ))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The newest `n` of `project`, copied into a page.
    pub fn page(&self, project: u64, n: usize) -> Fallible<Page> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT seq, msg FROM activity WHERE project = ?1 ORDER BY seq DESC LIMIT ?2",
        )?;
        let mut rows = stmt.query(params![project as i64, n as i64])?;
        let mut page = Page::with_capacity(n);
        while let Some(r) = rows.next()? {
            page.push(r.get::<_, i64>(0)? as u64, r.get_ref(1)?.as_bytes()?);
        }
        Ok(page)
    }

    /// One query per project, merged in Rust by append order.
    pub fn merged(&self, projects: &[u64], pcount: usize, count: usize) -> Fallible<Vec<Row>> {
        let mut all: Vec<(u64, u64, u64, String)> = Vec::with_capacity(projects.len() * pcount);
        for &p in projects {
            for (seq, ts, msg) in self.newest(p, pcount)? {
                all.push((ts, p, seq, msg));
            }
        }
        all.sort_unstable_by_key(|a| std::cmp::Reverse(a.0));
        all.truncate(count);
        Ok(all.into_iter().map(|(_, p, s, m)| (p, s, m)).collect())
    }

    /// Full newest-first scan of `project`: `(messages, bytes)`, checking the order.
    pub fn scan(&self, project: u64) -> Fallible<(u64, u64)> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT seq, msg FROM activity WHERE project = ?1 ORDER BY seq DESC")?;
        let mut rows = stmt.query([project as i64])?;
        let (mut n, mut bytes, mut prev) = (0u64, 0u64, u64::MAX);
        while let Some(r) = rows.next()? {
            let seq = r.get::<_, i64>(0)? as u64;
            if prev != u64::MAX && seq + 1 != prev {
                return Err(format!("SQLite scan: seq {seq} after {prev}").into());
            }
            prev = seq;
            n += 1;
            bytes += r.get_ref(1)?.as_str()?.len() as u64;
        }
        Ok((n, bytes))
    }

    /// Moves the WAL into the database file, so its size is what the data takes.
    pub fn checkpoint(&self) -> Fallible<()> {
        self.conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// The limits

/// Raw sequential writes: each message and a newline appended to one file, as it is.
pub struct RawFile {
    file: File,
    buf: Vec<u8>,
}

impl RawFile {
    pub fn create(path: &Path) -> Fallible<Self> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(path)?;
        Ok(RawFile {
            file,
            buf: Vec::with_capacity(64 << 10),
        })
    }

    /// One `write(2)` of the batch; `fdatasync(2)` when `sync`.
    pub fn append(&mut self, msgs: &[&str], sync: bool) -> Fallible<()> {
        self.buf.clear();
        for m in msgs {
            self.buf.extend_from_slice(m.as_bytes());
            self.buf.push(b'\n');
        }
        self.file.write_all(&self.buf)?;
        if sync {
            self.file.sync_data()?;
        }
        Ok(())
    }

    pub fn sync(&self) -> Fallible<()> {
        Ok(self.file.sync_data()?)
    }
}

/// Raw writes of the same bytes into one file per project: what a per-project log cannot beat
/// (A1's note; not the limit, which writes one file).
pub struct RawFiles {
    dir: PathBuf,
    files: HashMap<u64, File>,
    buf: Vec<u8>,
}

impl RawFiles {
    pub fn new(dir: &Path) -> Self {
        RawFiles {
            dir: dir.to_owned(),
            files: HashMap::new(),
            buf: Vec::with_capacity(64 << 10),
        }
    }

    /// One `write(2)` of the message and a newline into `project`'s file (created on first use).
    pub fn append(&mut self, project: u64, msg: &str) -> Fallible<()> {
        let file = match self.files.entry(project) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => e.insert(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(self.dir.join(project.to_string()))?,
            ),
        };
        self.buf.clear();
        self.buf.extend_from_slice(msg.as_bytes());
        self.buf.push(b'\n');
        file.write_all(&self.buf)?;
        Ok(())
    }
}

/// The same messages in memory, one newline-separated buffer per project, with the append
/// position of each line beside it (the stamps a merge needs).
pub struct Memory {
    buffers: HashMap<u64, (Vec<u8>, Vec<u32>)>,
}

impl Memory {
    pub fn build(data: &Data) -> Self {
        let mut buffers = HashMap::new();
        for p in data.projects() {
            let idx = data.of(p);
            let mut buf = Vec::new();
            for &i in idx {
                buf.extend_from_slice(data.messages[i as usize].1.as_bytes());
                buf.push(b'\n');
            }
            buffers.insert(p, (buf, idx.to_vec()));
        }
        Memory { buffers }
    }

    /// Calls `f(seq, line)` on the newest `n` lines of `project`, newest first.
    pub fn newest<'a>(&'a self, project: u64, n: usize, mut f: impl FnMut(u64, u32, &'a [u8])) {
        let Some((buf, stamps)) = self.buffers.get(&project) else {
            return;
        };
        // The buffer ends with a newline: `end` is the end of the current line.
        let mut end = buf.len().saturating_sub(1);
        let mut seq = stamps.len() as u64;
        for _ in 0..n {
            if seq == 0 {
                break;
            }
            let start = memrchr(b'\n', &buf[..end]).map_or(0, |i| i + 1);
            f(seq, stamps[seq as usize - 1], &buf[start..end]);
            seq -= 1;
            end = start.saturating_sub(1);
        }
    }

    /// Full newest-first scan: `(lines, bytes)`.
    pub fn scan(&self, project: u64) -> (u64, u64) {
        let (mut n, mut bytes) = (0u64, 0u64);
        self.newest(project, usize::MAX, |_, _, line| {
            n += 1;
            bytes += line.len() as u64;
        });
        (n, bytes)
    }

    /// A merged query: `(project, seq, line)` newest first.
    pub fn merged(&self, projects: &[u64], pcount: usize, count: usize) -> Vec<(u64, u64, &[u8])> {
        let mut all: Vec<(u32, u64, u64, &[u8])> = Vec::with_capacity(projects.len() * pcount);
        for &p in projects {
            self.newest(p, pcount, |seq, stamp, line| {
                all.push((stamp, p, seq, line))
            });
        }
        all.sort_unstable_by_key(|a| std::cmp::Reverse(a.0));
        all.truncate(count);
        all.into_iter().map(|(_, p, s, l)| (p, s, l)).collect()
    }

    pub fn projects(&self) -> Vec<u64> {
        let mut p: Vec<u64> = self.buffers.keys().copied().collect();
        p.sort_unstable();
        p
    }
}

/// Bytes of the files under `dir`: `(apparent sizes, allocated blocks)`.
pub fn disk_usage(dir: &Path) -> Fallible<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let (mut size, mut blocks) = (0, 0);
    let mut stack: Vec<PathBuf> = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d)? {
            let e = e?;
            let md = e.metadata()?;
            if md.is_dir() {
                stack.push(e.path());
            } else {
                size += md.len();
                blocks += md.blocks() * 512;
            }
        }
    }
    Ok((size, blocks))
}

// ---------------------------------------------------------------------------------------------
// The checks alone

/// Whether every byte is below 0x80: a copy of the library's private `segment::is_ascii`, the
/// check the reader made on a message before it learned the answer from its checksum's pass
/// (anything else gets the full UTF-8 check).
#[inline(never)]
fn is_ascii(bytes: &[u8]) -> bool {
    const HIGH_BITS: u64 = u64::from_ne_bytes([0x80; 8]);
    let n = bytes.len();
    if n < 16 {
        return bytes.iter().fold(0, |acc, &b| acc | b) < 0x80;
    }
    let word = |b: &[u8]| u64::from_ne_bytes(b[..8].try_into().expect("eight bytes"));
    let mut acc = word(&bytes[n - 16..]) | word(&bytes[n - 8..]);
    for chunk in bytes.chunks_exact(16) {
        acc |= word(chunk) | word(&chunk[8..]);
    }
    acc & HIGH_BITS == 0
}

/// Size of a log file's header.
const LOG_HEADER: usize = 48;

/// A project's log files held in memory, to time alone the checks activitylog's reader makes
/// on each record it returns — the frame's CRC-32, and that the message is ASCII or else UTF-8
/// — made the plain way, one after the other (`crc32fast`, then the ASCII check). The reader
/// makes both in one pass (its `segment::crc`), so its whole scan may come close to this.
/// Frames as `docs/format.md` lays them out: a 48-byte file header ([`LOG_HEADER`]); per record
/// a 16-byte header starting with the CRC, the message, a 4-byte trailer repeating the length.
pub struct Checks {
    logs: Vec<Vec<u8>>,
}

impl Checks {
    pub fn load(store_dir: &Path, project: u64) -> Fallible<Self> {
        let dir = store_dir.join("projects").join(project.to_string());
        let mut names: Vec<PathBuf> = fs::read_dir(&dir)?
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<_, _>>()?;
        names.retain(|p| p.extension().is_some_and(|x| x == "log"));
        names.sort();
        let mut logs: Vec<Vec<u8>> = names.iter().map(fs::read).collect::<Result<_, _>>()?;
        for log in &mut logs {
            // An open store's active log may end in zeros (room made ahead): walk the frames'
            // lengths forwards to where the records end.
            let mut end = LOG_HEADER;
            while let Some(head) = log.get(end + 4..end + 8) {
                let len = (u32::from_le_bytes(head.try_into().unwrap()) & 0x00FF_FFFF) as usize;
                if len == 0 || end + 20 + len > log.len() {
                    break;
                }
                end += 20 + len;
            }
            log.truncate(end);
        }
        Ok(Checks { logs })
    }

    /// Every record newest first, checked: `(records, message bytes)`.
    pub fn scan(&self) -> Fallible<(u64, u64)> {
        let word = |b: &[u8], at: usize| u32::from_le_bytes(b[at..at + 4].try_into().unwrap());
        let (mut n, mut bytes) = (0u64, 0u64);
        for log in self.logs.iter().rev() {
            let mut end = log.len();
            while end > LOG_HEADER {
                let len = (word(log, end - 4) & 0x00FF_FFFF) as usize;
                let start = end - 20 - len;
                if crc32fast::hash(&log[start + 4..start + 16 + len]) != word(log, start) {
                    return Err(format!("checks: bad CRC at {start}").into());
                }
                let text = &log[start + 16..start + 16 + len];
                if !is_ascii(text) && simdutf8::basic::from_utf8(text).is_err() {
                    return Err(format!("checks: not UTF-8 at {start}").into());
                }
                n += 1;
                bytes += text.len() as u64;
                end = start;
            }
        }
        Ok((n, bytes))
    }
}
