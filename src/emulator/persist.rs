//! `--state`: buckets kept durably in a snapshot file plus an append-only journal, written by
//! group commit. A mutation is applied in memory and queued (in memory order); one flusher
//! thread appends everything queued so far to the journal with one `fdatasync`, and only then
//! is each of those writes acknowledged. A write that cannot be made durable is rolled back in
//! memory and refused. When the journal outgrows the snapshot, the next batch is made durable
//! by a new snapshot instead (generation + 1) and a fresh journal.
//!
//! Files: `FILE` (`{"generation": N, "buckets": {…}}`, replaced atomically) and `FILE.journal`
//! (a header line `{"generation": N}`, then one `{"bucket": …, "value": …}` line per write).
//! On load the journal is replayed onto the snapshot when their generations match; a last line
//! without its newline was never acknowledged and is ignored.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};

use serde::{Deserialize, Serialize};

use super::state::Bucket;

/// Buckets by name.
pub type Buckets = BTreeMap<String, Bucket>;

/// The journal is replaced by a snapshot once it is larger than this and than the last snapshot.
const MIN_JOURNAL_TO_COMPACT: u64 = 1 << 20;

#[derive(Serialize, Deserialize)]
struct Snapshot {
    #[serde(default)]
    generation: u64,
    buckets: Buckets,
}

#[derive(Serialize, Deserialize)]
struct Header {
    generation: u64,
}

/// One write: a bucket's new value (`None`: deleted).
#[derive(Serialize, Deserialize)]
struct Entry {
    bucket: String,
    value: Option<Bucket>,
}

/// A queued write: what to journal and how to undo it in memory.
pub struct Change {
    pub bucket: String,
    pub before: Option<Bucket>,
    pub after: Option<Bucket>,
}

/// Undoes failed changes in memory (given newest first).
pub type Rollback = Box<dyn Fn(&[Change]) + Send>;
/// The buckets as they are in memory now (for a snapshot).
pub type Current = Box<dyn Fn() -> Buckets + Send>;

type Outcome = Result<(), (std::io::ErrorKind, String)>;

enum Done {
    Async(tokio::sync::oneshot::Sender<Outcome>),
    Blocking(std::sync::mpsc::SyncSender<Outcome>),
}

impl Done {
    fn send(self, outcome: Outcome) {
        match self {
            Self::Async(tx) => drop(tx.send(outcome)),
            Self::Blocking(tx) => drop(tx.send(outcome)),
        }
    }
}

#[derive(Default)]
struct Queue {
    pending: Vec<(Change, Done)>,
    stop: bool,
}

struct Shared {
    queue: Mutex<Queue>,
    wake: Condvar,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The durable store of one state file; dropping it flushes what is queued and stops the flusher.
pub struct Store {
    shared: Arc<Shared>,
    flusher: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Store")
    }
}

/// A write's acknowledgement: resolves once the write is durable (or failed and was undone).
pub enum Ticket {
    Async(tokio::sync::oneshot::Receiver<Outcome>),
    Blocking(std::sync::mpsc::Receiver<Outcome>),
}

impl Ticket {
    fn outcome(outcome: Option<Outcome>) -> std::io::Result<()> {
        match outcome {
            Some(Ok(())) => Ok(()),
            Some(Err((kind, message))) => Err(std::io::Error::new(kind, message)),
            None => Err(std::io::Error::other("the state file's flusher stopped")),
        }
    }

    /// Waits on the runtime.
    pub async fn durable(self) -> std::io::Result<()> {
        match self {
            Self::Async(rx) => Self::outcome(rx.await.ok()),
            Self::Blocking(rx) => Self::outcome(rx.recv().ok()),
        }
    }

    /// Waits blocking the thread (tests and the admin API; the flusher is its own thread).
    pub fn wait(self) -> std::io::Result<()> {
        match self {
            Self::Async(rx) => Self::outcome(rx.blocking_recv().ok()),
            Self::Blocking(rx) => Self::outcome(rx.recv().ok()),
        }
    }
}

/// Reads the state (snapshot plus journal), writes it back as a new snapshot with an empty
/// journal (so a path that cannot be written fails here, at start), and returns it.
pub fn load(path: &Path) -> std::io::Result<(Buckets, u64)> {
    let mut snapshot = if path.exists() {
        let text = std::fs::read_to_string(path)?;
        serde_json::from_str::<Snapshot>(&text).map_err(invalid)?
    } else {
        Snapshot {
            generation: 0,
            buckets: Buckets::new(),
        }
    };
    let journal = journal_path(path);
    if journal.exists() {
        let bytes = std::fs::read(&journal)?;
        replay(&bytes, &mut snapshot).map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("journal {}: {e}", journal.display()),
            )
        })?;
    }
    Ok((snapshot.buckets, snapshot.generation))
}

fn invalid(error: serde_json::Error) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, error)
}

/// Applies a journal's complete lines to the snapshot of the same generation.
fn replay(bytes: &[u8], snapshot: &mut Snapshot) -> Result<(), String> {
    let mut lines = bytes.split_inclusive(|b| *b == b'\n');
    let Some(header) = lines.next().filter(|l| l.ends_with(b"\n")) else {
        return Ok(()); // empty, or its header torn: nothing in it was acknowledged
    };
    let header: Header = serde_json::from_slice(header).map_err(|e| format!("header: {e}"))?;
    if header.generation != snapshot.generation {
        return Ok(()); // older than the snapshot, which already holds it
    }
    for (number, line) in lines.enumerate() {
        if !line.ends_with(b"\n") {
            break; // torn: never acknowledged
        }
        let entry: Entry = serde_json::from_slice(line).map_err(|e| format!("line {}: {e}", number + 2))?;
        match entry.value {
            Some(bucket) => snapshot.buckets.insert(entry.bucket, bucket),
            None => snapshot.buckets.remove(&entry.bucket),
        };
    }
    Ok(())
}

fn journal_path(path: &Path) -> PathBuf {
    let mut name = OsString::from(path.as_os_str());
    name.push(".journal");
    PathBuf::from(name)
}

/// The flusher's files and what it knows of them.
struct Files {
    path: PathBuf,
    journal_path: PathBuf,
    journal: Option<File>,
    generation: u64,
    journal_len: u64,
    snapshot_len: u64,
    /// A failed batch left the journal in doubt: the next batch writes a snapshot.
    needs_snapshot: bool,
}

impl Files {
    /// Writes `buckets` as snapshot `generation + 1` and starts its empty journal.
    fn snapshot(&mut self, buckets: &Buckets) -> std::io::Result<()> {
        let generation = self.generation + 1;
        let text = serde_json::to_vec_pretty(&Snapshot {
            generation,
            buckets: buckets.clone(),
        })
        .map_err(std::io::Error::other)?;
        let tmp = self.path.with_extension("tmp");
        {
            let mut file = File::create(&tmp)?;
            file.write_all(&text)?;
            file.sync_all()?;
        }
        std::fs::rename(&tmp, &self.path)?;
        let mut header = serde_json::to_vec(&Header { generation }).map_err(std::io::Error::other)?;
        header.push(b'\n');
        let mut journal = File::create(&self.journal_path)?;
        journal.write_all(&header)?;
        journal.sync_all()?;
        sync_dir(&self.path)?;
        self.generation = generation;
        self.snapshot_len = text.len() as u64;
        self.journal_len = header.len() as u64;
        self.journal = Some(journal);
        self.needs_snapshot = false;
        Ok(())
    }

    /// Appends a batch to the journal, durably.
    fn append(&mut self, changes: &[Change]) -> std::io::Result<()> {
        let mut text = Vec::new();
        for change in changes {
            serde_json::to_writer(
                &mut text,
                &Entry {
                    bucket: change.bucket.clone(),
                    value: change.after.clone(),
                },
            )
            .map_err(std::io::Error::other)?;
            text.push(b'\n');
        }
        let journal = self
            .journal
            .as_mut()
            .ok_or_else(|| std::io::Error::other("no journal open"))?;
        journal.write_all(&text)?;
        journal.sync_data()?;
        self.journal_len += text.len() as u64;
        self.check_still_ours()
    }

    /// A journal deleted or replaced under the emulator would swallow writes that no restart
    /// reads back: refuse them instead.
    fn check_still_ours(&self) -> std::io::Result<()> {
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt as _;
            let open = self.journal.as_ref().map(File::metadata).transpose()?;
            let named = std::fs::metadata(&self.journal_path)?;
            if open.is_some_and(|m| (m.dev(), m.ino()) != (named.dev(), named.ino())) {
                return Err(std::io::Error::other("the journal was replaced"));
            }
        }
        Ok(())
    }

    fn flush(&mut self, changes: &[Change], current: &Current) -> std::io::Result<()> {
        let compact = self.needs_snapshot
            || self.journal.is_none()
            || self.journal_len > MIN_JOURNAL_TO_COMPACT.max(self.snapshot_len);
        if compact {
            // The current buckets include this batch (applied before it was queued).
            self.snapshot(&current())
        } else {
            self.append(changes)
        }
        .inspect_err(|_| self.needs_snapshot = true)
    }
}

fn sync_dir(path: &Path) -> std::io::Result<()> {
    match path.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(dir) => File::open(dir)?.sync_all(),
        None => File::open(".")?.sync_all(),
    }
}

impl Store {
    /// Writes `buckets` as a fresh snapshot (failing when the path cannot be written) and
    /// starts the flusher.
    pub fn start(
        path: &Path,
        buckets: &Buckets,
        generation: u64,
        current: Current,
        rollback: Rollback,
    ) -> std::io::Result<Self> {
        let mut files = Files {
            path: path.to_owned(),
            journal_path: journal_path(path),
            journal: None,
            generation,
            journal_len: 0,
            snapshot_len: 0,
            needs_snapshot: true,
        };
        files.snapshot(buckets)?;
        let shared = Arc::new(Shared {
            queue: Mutex::default(),
            wake: Condvar::new(),
        });
        let flusher = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("oss-emulator-state".into())
                .spawn(move || flush_loop(&shared, &mut files, &current, &rollback))?
        };
        Ok(Self {
            shared,
            flusher: Some(flusher),
        })
    }

    /// Queues a change already applied in memory. Call it under the lock that ordered the
    /// change, so the journal holds changes in memory order.
    pub fn submit(&self, change: Change, blocking: bool) -> Ticket {
        let (done, ticket) = if blocking {
            let (tx, rx) = std::sync::mpsc::sync_channel(1);
            (Done::Blocking(tx), Ticket::Blocking(rx))
        } else {
            let (tx, rx) = tokio::sync::oneshot::channel();
            (Done::Async(tx), Ticket::Async(rx))
        };
        self.shared.lock().pending.push((change, done));
        self.shared.wake.notify_one();
        ticket
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        self.shared.lock().stop = true;
        self.shared.wake.notify_one();
        if let Some(flusher) = self.flusher.take() {
            let _ = flusher.join();
        }
    }
}

fn flush_loop(shared: &Shared, files: &mut Files, current: &Current, rollback: &Rollback) {
    loop {
        let batch = {
            let mut queue = shared.lock();
            while queue.pending.is_empty() && !queue.stop {
                queue = shared.wake.wait(queue).unwrap_or_else(|p| p.into_inner());
            }
            if queue.pending.is_empty() {
                return;
            }
            std::mem::take(&mut queue.pending)
        };
        let (changes, dones): (Vec<Change>, Vec<Done>) = batch.into_iter().unzip();
        let outcome = files.flush(&changes, current).map_err(|error| {
            let message = format!("state file {}: {error}", files.path.display());
            tracing::error!(%message, writes = changes.len(), "emulator could not persist writes; they were rolled back");
            let mut newest_first = changes;
            newest_first.reverse();
            rollback(&newest_first);
            (error.kind(), message)
        });
        for done in dones {
            done.send(outcome.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bucket(region: &str) -> Bucket {
        Bucket {
            region: region.into(),
            ..Bucket::default()
        }
    }

    fn line(entry: &Entry) -> String {
        format!("{}\n", serde_json::to_string(entry).unwrap())
    }

    #[test]
    fn a_journal_is_replayed_onto_its_snapshot_and_a_torn_last_line_ignored() {
        let mut snapshot = Snapshot {
            generation: 3,
            buckets: [("a".to_owned(), bucket("r1"))].into(),
        };
        let mut journal = "{\"generation\":3}\n".to_owned();
        journal += &line(&Entry {
            bucket: "b".into(),
            value: Some(bucket("r2")),
        });
        journal += &line(&Entry {
            bucket: "a".into(),
            value: None,
        });
        journal += "{\"bucket\":\"c\",\"val";
        replay(journal.as_bytes(), &mut snapshot).unwrap();
        assert_eq!(snapshot.buckets, [("b".to_owned(), bucket("r2"))].into());
    }

    #[test]
    fn a_journal_of_another_generation_is_ignored_and_a_bad_line_named() {
        let mut snapshot = Snapshot {
            generation: 4,
            buckets: Buckets::new(),
        };
        let old = format!(
            "{{\"generation\":3}}\n{}",
            line(&Entry {
                bucket: "b".into(),
                value: Some(bucket("r2")),
            })
        );
        replay(old.as_bytes(), &mut snapshot).unwrap();
        assert!(snapshot.buckets.is_empty());
        let bad = "{\"generation\":4}\nnot json\n";
        assert!(
            replay(bad.as_bytes(), &mut snapshot)
                .unwrap_err()
                .contains("line 2")
        );
    }
}
