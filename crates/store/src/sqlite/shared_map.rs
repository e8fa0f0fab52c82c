//! One memory map of the database file for all of the process's connections,
//! kept while any of them is open.
//!
//! Why by hand: SQLite's own memory map belongs to each connection, and in WAL
//! mode a connection unmaps all of it whenever its next read finds the database
//! changed (`pagerBeginReadTransaction` → `xUnfetch(0, NULL)`). After a long
//! stretch of reads that is a multi-gigabyte `munmap` per reader connection,
//! each holding the process's address-space lock in turn: at 1M posts every
//! request in flight waited 140–380 ms for the first write after a minute of
//! reads (BENCHMARKS.md). A smaller map brings back a copy per page read (a
//! 1 GiB map cost deep pages 38% of their throughput at 1M). No crate offers a
//! VFS that shares a map between connections, so this is a thin wrapper around
//! SQLite's default VFS: every call goes to it unchanged, except that the main
//! database file's pages are handed out of one shared read-only map and never
//! unmapped by a connection.
//!
//! Safety of handing out pages: SQLite asks only for pages of the database
//! file within the database's size in its snapshot (pages in the WAL are read
//! from the WAL), and in WAL mode the file's pages are rewritten only by a
//! checkpoint, never under a reader that may still need the old version; those
//! are the same terms SQLite's own map relies on. A page past the end of the
//! file as last seen is checked against the file's size first, so the map is
//! never read past the end of the file.
//!
//! The file never shrinks under a page handed out: nothing here runs VACUUM,
//! `auto_vacuum` is off, and a truncation through this VFS lowers the size
//! known before it happens.

use std::collections::HashMap;
use std::ffi::{CStr, OsStr, c_int, c_void};
use std::fs::File;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::ptr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, OnceLock, Weak};

use rusqlite::ffi;

/// The address space reserved for a database file: the largest database
/// whose every page is served from the map. Pages past it are read by copy.
const RESERVED: u64 = 16 << 30;

const NAME: &CStr = c"imagegram-shared-map";

/// The name connections open the database with (`open_with_flags_and_vfs`),
/// registered on first use.
pub fn vfs() -> &'static CStr {
    inner_vfs();
    NAME
}

/// SQLite's default VFS, which does all the work.
struct Inner(*mut ffi::sqlite3_vfs);
// SAFETY: a registered VFS is immutable and meant to be used from any thread.
unsafe impl Send for Inner {}
unsafe impl Sync for Inner {}

/// The default VFS, this one registered beside it the first time it is asked for.
fn inner_vfs() -> *mut ffi::sqlite3_vfs {
    static INNER: OnceLock<Inner> = OnceLock::new();
    INNER.get_or_init(register).0
}

fn register() -> Inner {
    // SAFETY: sqlite3_vfs_find initialises SQLite and returns the default VFS,
    // which lives as long as the process; the copy is leaked, as SQLite keeps
    // a pointer to a registered VFS for good.
    unsafe {
        let inner = ffi::sqlite3_vfs_find(ptr::null());
        assert!(!inner.is_null(), "SQLite has a default VFS");
        let mut vfs = *inner;
        vfs.pNext = ptr::null_mut();
        vfs.zName = NAME.as_ptr();
        vfs.szOsFile = (*inner).szOsFile + std::mem::size_of::<MappedFile>() as c_int;
        vfs.xOpen = Some(open);
        let rc = ffi::sqlite3_vfs_register(Box::into_raw(Box::new(vfs)), 0);
        assert_eq!(rc, ffi::SQLITE_OK, "registering the shared-map VFS");
        Inner(inner)
    }
}

/// A main database file: this header, then the default VFS's file. Other
/// files (the WAL, journals) are the default VFS's file alone.
#[repr(C)]
struct MappedFile {
    base: ffi::sqlite3_file,
    /// `Arc::into_raw` of the file's map; null when it could not be mapped.
    map: *const SharedMap,
}

/// The default VFS's file behind a main database file.
unsafe fn inner_file(file: *mut ffi::sqlite3_file) -> *mut ffi::sqlite3_file {
    // SAFETY: SQLite allocated szOsFile bytes, header then the inner file
    // (8-byte aligned: the header is two pointers).
    unsafe {
        file.cast::<u8>()
            .add(std::mem::size_of::<MappedFile>())
            .cast()
    }
}

unsafe fn inner_methods(file: *mut ffi::sqlite3_file) -> &'static ffi::sqlite3_io_methods {
    // SAFETY: only called on open files, whose inner methods are set.
    unsafe { &*(*inner_file(file)).pMethods }
}

unsafe extern "C" fn open(
    _vfs: *mut ffi::sqlite3_vfs,
    name: ffi::sqlite3_filename,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    let inner = inner_vfs();
    // SAFETY: arguments as SQLite passed them, forwarded to the default VFS.
    unsafe {
        let inner_open = (*inner).xOpen.expect("the default VFS opens files");
        if flags & ffi::SQLITE_OPEN_MAIN_DB == 0 || name.is_null() {
            return inner_open(inner, name, file, flags, out_flags);
        }
        let mapped = file.cast::<MappedFile>();
        (*mapped).base.pMethods = ptr::null();
        (*mapped).map = ptr::null();
        let rc = inner_open(inner, name, inner_file(file), flags, out_flags);
        // SQLite calls xClose whenever pMethods is set, even after a failure.
        if (*inner_file(file)).pMethods.is_null() {
            return rc;
        }
        (*mapped).base.pMethods = &METHODS;
        if rc == ffi::SQLITE_OK {
            let path = Path::new(OsStr::from_bytes(CStr::from_ptr(name).to_bytes()));
            if let Some(map) = SharedMap::of(path) {
                (*mapped).map = Arc::into_raw(map);
            }
        }
        rc
    }
}

/// The file's map, shared by every connection to it in this process.
struct SharedMap {
    at: *mut u8,
    /// How much of the file is known to exist, so that no page past its end
    /// is handed out (reading there would be SIGBUS).
    known: AtomicU64,
    key: FileKey,
    /// Pages handed out, for the tests to see the map in use.
    #[cfg(test)]
    served: AtomicU64,
}

// SAFETY: the map is read-only and lives as long as the value.
unsafe impl Send for SharedMap {}
unsafe impl Sync for SharedMap {}

/// A file by device and inode, not by name: a database deleted and made
/// again at the same path while a connection to the old one is open must not
/// be read through the old one's map.
type FileKey = (u64, u64);

/// The maps by file; `None` for a file that could not be mapped, which is
/// then never tried again (see `new`).
static MAPS: LazyLock<Mutex<HashMap<FileKey, Option<Weak<SharedMap>>>>> =
    LazyLock::new(Mutex::default);

impl SharedMap {
    /// The map of the file at `path`, made when no connection has one.
    fn of(path: &Path) -> Option<Arc<SharedMap>> {
        let meta = std::fs::metadata(path).ok()?;
        let key = (meta.dev(), meta.ino());
        let mut maps = MAPS.lock().unwrap_or_else(|e| e.into_inner());
        match maps.get(&key) {
            Some(None) => return None,
            Some(Some(map)) => {
                if let Some(map) = map.upgrade() {
                    return Some(map);
                }
            }
            None => {}
        }
        let Some(map) = Self::new(path, key).map(Arc::new) else {
            maps.insert(key, None);
            return None;
        };
        maps.insert(key, Some(Arc::downgrade(&map)));
        Some(map)
    }

    /// Maps the file through a descriptor of its own, closed at once.
    ///
    /// Closing any descriptor of a file drops every POSIX lock the process
    /// holds on it, SQLite's included (another process would then think the
    /// database unused, and delete its WAL on closing). It is closed here,
    /// while no connection of this process can hold a lock on the file: the
    /// map is made only when no open connection has one, for a connection
    /// that has just opened the file and locked nothing yet (a file that could
    /// not be mapped is not tried again, so no connection without a map is
    /// open either). Afterwards the file's size is asked of SQLite's own
    /// descriptor (`xFileSize`). When it cannot be mapped, the descriptor is
    /// left open, as nothing then says that closing it is safe.
    fn new(path: &Path, key: FileKey) -> Option<SharedMap> {
        let file = File::open(path).ok()?;
        let meta = file.metadata().ok()?;
        if (meta.dev(), meta.ino()) != key {
            // Replaced in between: read by copy.
            std::mem::forget(file);
            return None;
        }
        // SAFETY: a fresh read-only shared mapping; pages past the end of the
        // file are never touched (see `page`).
        let at = unsafe {
            libc::mmap(
                ptr::null_mut(),
                RESERVED as usize,
                libc::PROT_READ,
                libc::MAP_SHARED,
                std::os::fd::AsRawFd::as_raw_fd(&file),
                0,
            )
        };
        if at == libc::MAP_FAILED {
            std::mem::forget(file);
            tracing::warn!(path = %path.display(), "mapping the database failed; pages are read by copy");
            return None;
        }
        Some(SharedMap {
            at: at.cast(),
            known: AtomicU64::new(meta.len()),
            key,
            #[cfg(test)]
            served: AtomicU64::new(0),
        })
    }

    /// The page at `offset`, when it is within the map and the file
    /// (`file_size` asks the file's size when the page is past its end as
    /// last seen).
    fn page(
        &self,
        offset: i64,
        len: c_int,
        file_size: impl FnOnce() -> Option<u64>,
    ) -> Option<*mut c_void> {
        let end = u64::try_from(offset).ok()? + u64::try_from(len).ok()?;
        if end > RESERVED {
            return None;
        }
        if end > self.known.load(Ordering::Acquire) {
            // The file grew (a checkpoint wrote past its old end): look again.
            let size = file_size()?;
            self.known.fetch_max(size, Ordering::AcqRel);
            if end > size {
                return None;
            }
        }
        #[cfg(test)]
        self.served.fetch_add(1, Ordering::Relaxed);
        // SAFETY: within the reservation and within the file.
        Some(unsafe { self.at.add(offset as usize) }.cast())
    }

    fn truncated(&self, size: i64) {
        self.known
            .fetch_min(u64::try_from(size).unwrap_or(0), Ordering::AcqRel);
    }
}

impl Drop for SharedMap {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`; no connection holds a page of it
        // any more (each held an Arc while open).
        unsafe { libc::munmap(self.at.cast(), RESERVED as usize) };
        let mut maps = MAPS.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(Some(map)) = maps.get(&self.key)
            && map.strong_count() == 0
        {
            maps.remove(&self.key);
        }
    }
}

unsafe fn map_of(file: *mut ffi::sqlite3_file) -> Option<&'static SharedMap> {
    // SAFETY: set in `open` from a live Arc, cleared only in `close`.
    unsafe { (*file.cast::<MappedFile>()).map.as_ref() }
}

static METHODS: ffi::sqlite3_io_methods = ffi::sqlite3_io_methods {
    iVersion: 3,
    xClose: Some(close),
    xRead: Some(read),
    xWrite: Some(write),
    xTruncate: Some(truncate),
    xSync: Some(sync),
    xFileSize: Some(file_size),
    xLock: Some(lock),
    xUnlock: Some(unlock),
    xCheckReservedLock: Some(check_reserved_lock),
    xFileControl: Some(file_control),
    xSectorSize: Some(sector_size),
    xDeviceCharacteristics: Some(device_characteristics),
    xShmMap: Some(shm_map),
    xShmLock: Some(shm_lock),
    xShmBarrier: Some(shm_barrier),
    xShmUnmap: Some(shm_unmap),
    xFetch: Some(fetch),
    xUnfetch: Some(unfetch),
};

/// Calls the default VFS's method of the same name on the inner file.
macro_rules! forward {
    ($file:expr, $method:ident $(, $arg:expr)*) => {
        // SAFETY: SQLite's arguments, passed on to the file it opened.
        unsafe {
            let inner = inner_file($file);
            (inner_methods($file).$method.expect(stringify!($method)))(inner $(, $arg)*)
        }
    };
}

unsafe extern "C" fn close(file: *mut ffi::sqlite3_file) -> c_int {
    let rc = forward!(file, xClose);
    // SAFETY: the Arc made in `open`, released once.
    unsafe {
        let mapped = file.cast::<MappedFile>();
        if !(*mapped).map.is_null() {
            drop(Arc::from_raw((*mapped).map));
            (*mapped).map = ptr::null();
        }
    }
    rc
}

unsafe extern "C" fn read(f: *mut ffi::sqlite3_file, buf: *mut c_void, n: c_int, at: i64) -> c_int {
    forward!(f, xRead, buf, n, at)
}

unsafe extern "C" fn write(
    f: *mut ffi::sqlite3_file,
    buf: *const c_void,
    n: c_int,
    at: i64,
) -> c_int {
    forward!(f, xWrite, buf, n, at)
}

unsafe extern "C" fn truncate(f: *mut ffi::sqlite3_file, size: i64) -> c_int {
    // Shrunk before the truncation, so no page past the new end is handed out.
    if let Some(map) = unsafe { map_of(f) } {
        map.truncated(size);
    }
    forward!(f, xTruncate, size)
}

unsafe extern "C" fn sync(f: *mut ffi::sqlite3_file, flags: c_int) -> c_int {
    forward!(f, xSync, flags)
}

unsafe extern "C" fn file_size(f: *mut ffi::sqlite3_file, size: *mut i64) -> c_int {
    forward!(f, xFileSize, size)
}

unsafe extern "C" fn lock(f: *mut ffi::sqlite3_file, level: c_int) -> c_int {
    forward!(f, xLock, level)
}

unsafe extern "C" fn unlock(f: *mut ffi::sqlite3_file, level: c_int) -> c_int {
    forward!(f, xUnlock, level)
}

unsafe extern "C" fn check_reserved_lock(f: *mut ffi::sqlite3_file, out: *mut c_int) -> c_int {
    forward!(f, xCheckReservedLock, out)
}

unsafe extern "C" fn file_control(f: *mut ffi::sqlite3_file, op: c_int, arg: *mut c_void) -> c_int {
    // The map's size is this VFS's: told it, the default VFS would map the
    // file a second time (it maps on a size hint before a checkpoint grows it).
    if op == ffi::SQLITE_FCNTL_MMAP_SIZE && unsafe { map_of(f) }.is_some() {
        // SAFETY: SQLite passes an i64 to set to the size in force.
        unsafe { *arg.cast::<i64>() = RESERVED as i64 };
        return ffi::SQLITE_OK;
    }
    forward!(f, xFileControl, op, arg)
}

unsafe extern "C" fn sector_size(f: *mut ffi::sqlite3_file) -> c_int {
    forward!(f, xSectorSize)
}

unsafe extern "C" fn device_characteristics(f: *mut ffi::sqlite3_file) -> c_int {
    forward!(f, xDeviceCharacteristics)
}

unsafe extern "C" fn shm_map(
    f: *mut ffi::sqlite3_file,
    region: c_int,
    size: c_int,
    extend: c_int,
    out: *mut *mut c_void,
) -> c_int {
    forward!(f, xShmMap, region, size, extend, out)
}

unsafe extern "C" fn shm_lock(
    f: *mut ffi::sqlite3_file,
    at: c_int,
    n: c_int,
    flags: c_int,
) -> c_int {
    forward!(f, xShmLock, at, n, flags)
}

unsafe extern "C" fn shm_barrier(f: *mut ffi::sqlite3_file) {
    forward!(f, xShmBarrier)
}

unsafe extern "C" fn shm_unmap(f: *mut ffi::sqlite3_file, delete: c_int) -> c_int {
    forward!(f, xShmUnmap, delete)
}

unsafe extern "C" fn fetch(
    f: *mut ffi::sqlite3_file,
    at: i64,
    n: c_int,
    out: *mut *mut c_void,
) -> c_int {
    let file_size = || {
        let mut size: i64 = 0;
        let rc = forward!(f, xFileSize, &mut size);
        (rc == ffi::SQLITE_OK)
            .then(|| u64::try_from(size).ok())
            .flatten()
    };
    // SAFETY: `out` is SQLite's to fill; a null page tells it to read by copy.
    unsafe {
        *out = map_of(f)
            .and_then(|map| map.page(at, n, file_size))
            .unwrap_or(ptr::null_mut());
    }
    ffi::SQLITE_OK
}

/// Nothing to release: a page stays mapped while any connection is open, and
/// the "unmap everything" SQLite asks for after a change is what this VFS is
/// for not doing.
unsafe extern "C" fn unfetch(_f: *mut ffi::sqlite3_file, _at: i64, _page: *mut c_void) -> c_int {
    ffi::SQLITE_OK
}

#[cfg(test)]
mod tests {
    use rusqlite::{Connection, OpenFlags};

    fn open(path: &std::path::Path) -> Connection {
        let conn =
            Connection::open_with_flags_and_vfs(path, OpenFlags::default(), super::vfs()).unwrap();
        conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA mmap_size = 1073741824;")
            .unwrap();
        conn
    }

    /// The mappings of `path` in this process, by address.
    fn mappings(path: &std::path::Path) -> Vec<String> {
        let name = path.canonicalize().unwrap();
        std::fs::read_to_string("/proc/self/maps")
            .unwrap()
            .lines()
            .filter(|l| l.ends_with(name.to_str().unwrap()))
            .map(|l| l.split('-').next().unwrap().to_owned())
            .collect()
    }

    #[test]
    fn connections_share_one_map_that_a_change_does_not_unmap() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let writer = open(&path);
        writer
            .execute_batch("CREATE TABLE t (k INTEGER PRIMARY KEY, v BLOB)")
            .unwrap();
        let insert = |from: i64| {
            for k in from..from + 2_000 {
                writer
                    .execute("INSERT INTO t VALUES (?1, zeroblob(3000))", [k])
                    .unwrap();
            }
            writer
                .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
                .unwrap();
        };
        let sum = |c: &Connection| -> i64 {
            c.query_row("SELECT count(*) + sum(length(v)) FROM t", [], |r| r.get(0))
                .unwrap()
        };
        insert(0);
        let map = super::SharedMap::of(&path.canonicalize().unwrap()).unwrap();
        let served = || map.served.load(std::sync::atomic::Ordering::Relaxed);
        let readers = [open(&path), open(&path)];
        let mut seen = served();
        for r in &readers {
            assert_eq!(sum(r), 2_000 * 3_001);
            assert!(served() > seen, "the reader's pages came from the map");
            seen = served();
        }
        let before = mappings(&path);
        assert_eq!(before.len(), 1, "one map for every connection: {before:?}");

        // The file grows past what the map has seen; the readers see the
        // change, read the new pages and keep the same map.
        insert(2_000);
        for r in &readers {
            assert_eq!(sum(r), 4_000 * 3_001);
            assert!(served() > seen, "the reader's pages came from the map");
            seen = served();
        }
        assert_eq!(mappings(&path), before);
        drop(map);

        drop(readers);
        drop(writer);
        assert!(
            mappings(&path).is_empty(),
            "unmapped with the last connection"
        );
    }

    #[test]
    fn a_database_made_again_at_the_same_path_is_read_through_its_own_map() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let make = |value: &str| {
            let conn = open(&path);
            conn.execute_batch(&format!(
                "CREATE TABLE t (v TEXT); INSERT INTO t VALUES ('{value}');"
            ))
            .unwrap();
            conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
                .unwrap();
            conn
        };
        let value = |c: &Connection| -> String {
            c.query_row("SELECT v FROM t", [], |r| r.get(0)).unwrap()
        };
        let old = make("old");
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
        let _new = make("new");
        assert_eq!(value(&open(&path)), "new");
        assert_eq!(
            value(&old),
            "old",
            "the old file is still read through its own map"
        );
    }
}
