//! The WAL's only door to the disk, so crash tests can stand in for it.
//!
//! [`Wal`](super::Wal) never calls `std::fs` directly; it goes through a
//! [`WalFs`] and the [`SegmentFile`]s it hands out. [`OsFs`] is the real
//! filesystem. [`MemFs`] is the crash-test double, after redb's
//! `StorageBackend` idea: it keeps the bytes a file has had *written* apart
//! from the bytes it has had *synced*, so a test can "pull the plug" with
//! [`MemFs::crash`] and choose what survives of the unsynced part (nothing, a
//! prefix, a prefix followed by zeros), then reopen the WAL over what is left.
//!
//! The surface is deliberately small: whole-file reads (replay reads a
//! segment at a time), appends, truncate, fsync, and the directory
//! operations create/rename/remove/list/fsync.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

/// Filesystem operations the WAL needs. Paths are absolute or relative to the
/// process's working directory, as given to [`Wal::open`](super::Wal::open).
pub trait WalFs: Send + Sync + fmt::Debug {
    /// `mkdir -p`.
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;
    /// `rm -r`; succeeds if `path` does not exist.
    fn remove_dir_all(&self, path: &Path) -> io::Result<()>;
    /// Names (not paths) of the entries directly inside `dir`. `NotFound` if
    /// `dir` does not exist.
    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>>;
    /// Creates `path` empty (truncating any leftover of the same name) and
    /// opens it for appending.
    fn create_file(&self, path: &Path) -> io::Result<Box<dyn SegmentFile>>;
    /// Opens an existing file for reading and appending.
    fn open_file(&self, path: &Path) -> io::Result<Box<dyn SegmentFile>>;
    /// `rename(2)`: atomic, replaces `to` (a file, or an empty directory).
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Deletes one file.
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// fsync of a directory: makes creates, renames and removes inside it
    /// durable. Call it through `Wal`'s timed fsync, never directly.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
}

/// One open segment file.
pub trait SegmentFile: Send + fmt::Debug {
    /// The whole file, from offset 0.
    fn read_all(&mut self) -> io::Result<Vec<u8>>;
    /// Writes all of `buf` at the end of the file.
    fn append(&mut self, buf: &[u8]) -> io::Result<()>;
    /// Cuts the file to `len` bytes.
    fn truncate(&mut self, len: u64) -> io::Result<()>;
    /// fdatasync: everything appended (and any truncation) is on stable
    /// storage when this returns Ok. Call it through `Wal`'s timed fsync.
    fn sync(&mut self) -> io::Result<()>;
}

// ---------------------------------------------------------------------------
// The real filesystem.

/// The real filesystem (`std::fs`).
#[derive(Debug, Clone, Copy, Default)]
pub struct OsFs;

#[derive(Debug)]
struct OsFile(File);

impl WalFs for OsFs {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        fs::create_dir_all(path)
    }
    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        match fs::remove_dir_all(path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            r => r,
        }
    }
    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for ent in fs::read_dir(dir)? {
            // Names that are not UTF-8 cannot be segment names; skip them.
            if let Ok(name) = ent?.file_name().into_string() {
                names.push(name);
            }
        }
        Ok(names)
    }
    fn create_file(&self, path: &Path) -> io::Result<Box<dyn SegmentFile>> {
        let f = OpenOptions::new().read(true).write(true).create(true).truncate(true).open(path)?;
        Ok(Box::new(OsFile(f)))
    }
    fn open_file(&self, path: &Path) -> io::Result<Box<dyn SegmentFile>> {
        // O_APPEND: every write lands at the current end, including after a
        // truncate, so the WAL never has to track a file cursor.
        let f = OpenOptions::new().read(true).append(true).open(path)?;
        Ok(Box::new(OsFile(f)))
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        // Opening a directory read-only and fsyncing it is how POSIX makes
        // its entries durable; std's sync_all is fsync(2) here.
        File::open(dir)?.sync_all()
    }
}

impl SegmentFile for OsFile {
    fn read_all(&mut self) -> io::Result<Vec<u8>> {
        use std::io::Seek;
        self.0.seek(io::SeekFrom::Start(0))?;
        let mut buf = Vec::new();
        self.0.read_to_end(&mut buf)?;
        Ok(buf)
    }
    fn append(&mut self, buf: &[u8]) -> io::Result<()> {
        self.0.write_all(buf)
    }
    fn truncate(&mut self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }
    fn sync(&mut self) -> io::Result<()> {
        // fdatasync is enough: it also flushes the file size, which is the
        // only metadata a reader needs to find appended bytes.
        self.0.sync_data()
    }
}

// ---------------------------------------------------------------------------
// The crash-test double.

/// What survives of one file's unsynced bytes in a [`MemFs::crash`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashTail {
    /// Only the synced bytes survive.
    Drop,
    /// The synced bytes and the first `n` unsynced bytes survive (a write
    /// torn at byte `n`). `n` larger than the unsynced length keeps them all.
    Keep(usize),
    /// The first `keep` unsynced bytes survive and are followed by `zeros`
    /// zero bytes: the filesystem grew the file but the data never landed.
    KeepThenZeros { keep: usize, zeros: usize },
}

/// One filesystem call, as recorded by [`MemFs`] for ordering checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FsOp {
    CreateFile(PathBuf),
    Rename(PathBuf, PathBuf),
    RemoveFile(PathBuf),
    RemoveDir(PathBuf),
    SyncFile(PathBuf),
    SyncDir(PathBuf),
    Append(PathBuf, usize),
    Truncate(PathBuf, u64),
}

#[derive(Debug, Default, Clone)]
struct MemInode {
    /// What a reader sees now.
    data: Vec<u8>,
    /// What was on stable storage at the last sync.
    synced: Vec<u8>,
}

#[derive(Debug, Default)]
struct MemState {
    dirs: BTreeSet<PathBuf>,
    files: BTreeMap<PathBuf, Arc<Mutex<MemInode>>>,
    ops: Vec<FsOp>,
    /// Fail the sync that many syncs from now (0 = the next one), with
    /// this OS error (None: a plain "injected" error).
    fail_sync_in: Option<(u64, Option<i32>)>,
    /// Fail the append that many appends from now, with this OS error; the
    /// failed append writes nothing.
    fail_append_in: Option<(u64, i32)>,
    /// Mutating calls so far (see [`MemFs::at_op`]).
    op_count: u64,
    at_op: Option<(u64, OpHook)>,
}

/// A test's callback, run at a chosen call (see [`MemFs::at_op`]).
struct OpHook(Box<dyn FnOnce(&MemFs) + Send>);

impl fmt::Debug for OpHook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OpHook")
    }
}

/// In-memory filesystem that separates written from synced bytes.
///
/// Clones share state, so a test keeps one handle while the `Wal` owns
/// another. Limits of the model: file *contents* lose their unsynced part on
/// [`crash`](Self::crash), but directory entries (create, rename, remove) are
/// durable at once; that directory fsyncs are issued where they must be is
/// checked separately, from [`ops`](Self::ops).
#[derive(Debug, Clone, Default)]
pub struct MemFs {
    state: Arc<Mutex<MemState>>,
}

#[derive(Debug)]
struct MemFile {
    path: PathBuf,
    inode: Arc<Mutex<MemInode>>,
    fs: MemFs,
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("memfs: {} does not exist", path.display()))
}

impl MemFs {
    pub fn new() -> MemFs {
        MemFs::default()
    }

    /// Simulates power loss: every file keeps its synced bytes plus whatever
    /// `tail(path, unsynced_len)` says of its unsynced ones. A file truncated
    /// since its last sync comes back as it was at that sync, unless `tail`
    /// keeps everything (then the truncation is kept too).
    pub fn crash(&self, mut tail: impl FnMut(&Path, usize) -> CrashTail) {
        let st = self.state.lock();
        for (path, inode) in &st.files {
            let mut ino = inode.lock();
            let MemInode { data, synced } = &mut *ino;
            let appended_only = data.len() >= synced.len() && data[..synced.len()] == synced[..];
            let unsynced = if appended_only { data.len() - synced.len() } else { 0 };
            if unsynced == 0 && !appended_only {
                // A truncate (or overwrite) that was never synced.
                match tail(path, 0) {
                    CrashTail::Keep(_) => {}
                    _ => data.clone_from(synced),
                }
                continue;
            }
            if unsynced == 0 {
                continue;
            }
            let keep = |n: usize| synced.len() + n.min(unsynced);
            match tail(path, unsynced) {
                CrashTail::Drop => data.truncate(synced.len()),
                CrashTail::Keep(n) => data.truncate(keep(n)),
                CrashTail::KeepThenZeros { keep: n, zeros } => {
                    data.truncate(keep(n));
                    data.resize(data.len() + zeros, 0);
                }
            }
            synced.clone_from(data);
        }
    }

    /// Makes the `n`th sync from now (0 = the next) fail with an I/O error
    /// without syncing anything: a crash in the middle of `Wal::sync`.
    pub fn fail_sync_in(&self, n: u64) {
        self.state.lock().fail_sync_in = Some((n, None));
    }

    /// As [`fail_sync_in`](Self::fail_sync_in), failing with OS error
    /// `errno` (`libc::EIO`, `libc::ENOSPC`) as a real disk would. Directory
    /// fsyncs count as syncs.
    pub fn fail_sync_with(&self, n: u64, errno: i32) {
        self.state.lock().fail_sync_in = Some((n, Some(errno)));
    }

    /// Makes the `n`th append from now (0 = the next) fail with OS error
    /// `errno`, writing nothing: a full disk or a dead device under `write(2)`.
    pub fn fail_append_with(&self, n: u64, errno: i32) {
        self.state.lock().fail_append_in = Some((n, errno));
    }

    /// Disarms failures set by `fail_*` that have not fired.
    pub fn clear_failures(&self) {
        let mut st = self.state.lock();
        st.fail_sync_in = None;
        st.fail_append_in = None;
    }

    /// Runs `hook` on the calling thread just before the `n`th mutating
    /// call from now (1 = the next; create, rename, remove, append,
    /// truncate, fsync of a file or directory), before that call changes
    /// anything: the instant to take a power-loss image with
    /// [`fork_crashed`](Self::fork_crashed).
    pub fn at_op(&self, n: u64, hook: impl FnOnce(&MemFs) + Send + 'static) {
        let mut st = self.state.lock();
        let at = st.op_count + n;
        st.at_op = Some((at, OpHook(Box::new(hook))));
    }

    /// Mutating calls made so far.
    pub fn op_count(&self) -> u64 {
        self.state.lock().op_count
    }

    /// What a power loss now would leave, as a new filesystem: every file's
    /// synced bytes plus what `tail` keeps of its unsynced ones (as
    /// [`crash`](Self::crash)). This one is left as it is.
    #[must_use]
    pub fn fork_crashed(&self, tail: impl FnMut(&Path, usize) -> CrashTail) -> MemFs {
        let st = self.state.lock();
        let copy = MemState {
            dirs: st.dirs.clone(),
            files: st.files.iter().map(|(p, inode)| (p.clone(), Arc::new(Mutex::new(inode.lock().clone())))).collect(),
            ..MemState::default()
        };
        drop(st);
        let fs = MemFs { state: Arc::new(Mutex::new(copy)) };
        fs.crash(tail);
        fs
    }

    /// Counts a mutating call; runs the hook armed for it, if any.
    fn tick(&self) {
        let hook = {
            let mut st = self.state.lock();
            st.op_count += 1;
            match st.at_op.take() {
                Some((at, hook)) if at == st.op_count => Some(hook),
                other => {
                    st.at_op = other;
                    None
                }
            }
        };
        if let Some(OpHook(hook)) = hook {
            hook(self);
        }
    }

    /// Every call made so far, in order.
    pub fn ops(&self) -> Vec<FsOp> {
        self.state.lock().ops.clone()
    }

    /// Current contents of a file (what a reader sees now).
    pub fn read(&self, path: &Path) -> Option<Vec<u8>> {
        self.state.lock().files.get(path).map(|i| i.lock().data.clone())
    }

    /// Replaces a file's contents, as synced (for corruption tests).
    pub fn write_synced(&self, path: &Path, data: Vec<u8>) {
        let st = self.state.lock();
        let inode = st.files.get(path).expect("memfs: write_synced on a missing file");
        let mut ino = inode.lock();
        ino.synced.clone_from(&data);
        ino.data = data;
    }

    fn record(&self, op: FsOp) {
        self.state.lock().ops.push(op);
    }

    /// Counts down the armed sync failure; the error if this sync must fail.
    fn sync_fails(&self) -> Option<io::Error> {
        let mut st = self.state.lock();
        match st.fail_sync_in {
            Some((0, errno)) => {
                st.fail_sync_in = None;
                Some(errno.map_or_else(injected, io::Error::from_raw_os_error))
            }
            Some((n, errno)) => {
                st.fail_sync_in = Some((n - 1, errno));
                None
            }
            None => None,
        }
    }

    /// Counts down the armed append failure; the error if this append must fail.
    fn append_fails(&self) -> Option<io::Error> {
        let mut st = self.state.lock();
        match st.fail_append_in {
            Some((0, errno)) => {
                st.fail_append_in = None;
                Some(io::Error::from_raw_os_error(errno))
            }
            Some((n, errno)) => {
                st.fail_append_in = Some((n - 1, errno));
                None
            }
            None => None,
        }
    }

    fn parent_exists(st: &MemState, path: &Path) -> bool {
        path.parent().is_none_or(|p| p.as_os_str().is_empty() || st.dirs.contains(p))
    }
}

fn injected() -> io::Error {
    io::Error::other("memfs: injected fsync failure")
}

impl WalFs for MemFs {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut st = self.state.lock();
        for a in path.ancestors() {
            if !a.as_os_str().is_empty() {
                st.dirs.insert(a.to_path_buf());
            }
        }
        Ok(())
    }

    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut st = self.state.lock();
        st.dirs.retain(|d| !d.starts_with(path));
        st.files.retain(|f, _| !f.starts_with(path));
        st.ops.push(FsOp::RemoveDir(path.to_path_buf()));
        Ok(())
    }

    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        let st = self.state.lock();
        if !st.dirs.contains(dir) {
            return Err(not_found(dir));
        }
        let children = st.files.keys().chain(st.dirs.iter());
        Ok(children
            .filter(|p| p.parent() == Some(dir))
            .filter_map(|p| p.file_name().and_then(|n| n.to_str()).map(str::to_owned))
            .collect())
    }

    fn create_file(&self, path: &Path) -> io::Result<Box<dyn SegmentFile>> {
        self.tick();
        let mut st = self.state.lock();
        if !Self::parent_exists(&st, path) {
            return Err(not_found(path.parent().unwrap_or(path)));
        }
        let inode = Arc::new(Mutex::new(MemInode::default()));
        st.files.insert(path.to_path_buf(), inode.clone());
        st.ops.push(FsOp::CreateFile(path.to_path_buf()));
        Ok(Box::new(MemFile { path: path.to_path_buf(), inode, fs: self.clone() }))
    }

    fn open_file(&self, path: &Path) -> io::Result<Box<dyn SegmentFile>> {
        let st = self.state.lock();
        let inode = st.files.get(path).ok_or_else(|| not_found(path))?.clone();
        Ok(Box::new(MemFile { path: path.to_path_buf(), inode, fs: self.clone() }))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.tick();
        let mut st = self.state.lock();
        if let Some(inode) = st.files.remove(from) {
            st.files.insert(to.to_path_buf(), inode);
        } else if st.dirs.contains(from) {
            // rename(2) replaces an empty directory and refuses a full one.
            if st.files.keys().chain(st.dirs.iter()).any(|p| p.parent() == Some(to)) {
                return Err(io::Error::new(io::ErrorKind::DirectoryNotEmpty, "memfs: target directory not empty"));
            }
            let moved_dirs: Vec<PathBuf> = st.dirs.iter().filter(|d| d.starts_with(from)).cloned().collect();
            for d in moved_dirs {
                st.dirs.remove(&d);
                st.dirs.insert(to.join(d.strip_prefix(from).expect("prefix checked")));
            }
            let moved_files: Vec<PathBuf> = st.files.keys().filter(|f| f.starts_with(from)).cloned().collect();
            for f in moved_files {
                let inode = st.files.remove(&f).expect("key listed above");
                st.files.insert(to.join(f.strip_prefix(from).expect("prefix checked")), inode);
            }
        } else {
            return Err(not_found(from));
        }
        st.ops.push(FsOp::Rename(from.to_path_buf(), to.to_path_buf()));
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.tick();
        let mut st = self.state.lock();
        st.files.remove(path).ok_or_else(|| not_found(path))?;
        st.ops.push(FsOp::RemoveFile(path.to_path_buf()));
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.tick();
        if let Some(e) = self.sync_fails() {
            return Err(e);
        }
        self.record(FsOp::SyncDir(dir.to_path_buf()));
        Ok(())
    }
}

impl SegmentFile for MemFile {
    fn read_all(&mut self) -> io::Result<Vec<u8>> {
        Ok(self.inode.lock().data.clone())
    }
    fn append(&mut self, buf: &[u8]) -> io::Result<()> {
        self.fs.tick();
        if let Some(e) = self.fs.append_fails() {
            return Err(e);
        }
        self.inode.lock().data.extend_from_slice(buf);
        self.fs.record(FsOp::Append(self.path.clone(), buf.len()));
        Ok(())
    }
    fn truncate(&mut self, len: u64) -> io::Result<()> {
        self.fs.tick();
        let len = usize::try_from(len).map_err(|_| io::Error::other("memfs: length too large"))?;
        self.inode.lock().data.resize(len, 0);
        self.fs.record(FsOp::Truncate(self.path.clone(), len as u64));
        Ok(())
    }
    fn sync(&mut self) -> io::Result<()> {
        self.fs.tick();
        if let Some(e) = self.fs.sync_fails() {
            return Err(e);
        }
        let mut guard = self.inode.lock();
        let MemInode { data, synced } = &mut *guard;
        synced.clone_from(data);
        drop(guard);
        self.fs.record(FsOp::SyncFile(self.path.clone()));
        Ok(())
    }
}
