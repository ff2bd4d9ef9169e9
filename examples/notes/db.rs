//! Storage: SQLite through a small pool of connections, every call on the `blocking`
//! thread pool so the server loop never waits for the disk.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use blocking::unblock;
use rusqlite::{Connection, OptionalExtension, params};

/// Idle connections kept for reuse (more are opened while many calls run at once).
const KEEP_IDLE: usize = 8;

/// One stored note.
#[derive(Clone, Debug)]
pub struct Note {
    pub id: i64,
    pub title: String,
    pub body: String,
    /// Milliseconds since the epoch.
    pub created: i64,
}

/// The database: its file and the idle connections, shared by every request.
#[derive(Debug)]
pub struct Db {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl Db {
    /// Opens (or creates) the database file and its table.
    pub fn open(path: &Path) -> rusqlite::Result<Arc<Self>> {
        let db = Self { path: path.to_owned(), idle: Mutex::new(Vec::new()) };
        let conn = db.connect()?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS notes (
                 id INTEGER PRIMARY KEY AUTOINCREMENT,
                 title TEXT NOT NULL,
                 body TEXT NOT NULL,
                 created INTEGER NOT NULL
             );",
        )?;
        db.idle.lock().unwrap_or_else(PoisonError::into_inner).push(conn);
        Ok(Arc::new(db))
    }

    /// A new connection: WAL, so readers do not wait for the writer; writers wait for each
    /// other up to 5 s.
    fn connect(&self) -> rusqlite::Result<Connection> {
        let conn = Connection::open(&self.path)?;
        conn.busy_timeout(Duration::from_secs(5))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        Ok(conn)
    }

    /// Runs `f` with a connection on the blocking pool and awaits its result.
    pub async fn call<T, F>(self: &Arc<Self>, f: F) -> rusqlite::Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let db = Arc::clone(self);
        unblock(move || {
            let idle = db.idle.lock().unwrap_or_else(PoisonError::into_inner).pop();
            let conn = match idle {
                Some(conn) => conn,
                None => db.connect()?,
            };
            let result = f(&conn);
            let mut idle = db.idle.lock().unwrap_or_else(PoisonError::into_inner);
            if idle.len() < KEEP_IDLE {
                idle.push(conn);
            }
            result
        })
        .await
    }
}

fn note(row: &rusqlite::Row<'_>) -> rusqlite::Result<Note> {
    Ok(Note { id: row.get(0)?, title: row.get(1)?, body: row.get(2)?, created: row.get(3)? })
}

/// Stores a note; returns it with its id.
pub fn insert(conn: &Connection, title: String, body: String, created: i64) -> rusqlite::Result<Note> {
    conn.execute(
        "INSERT INTO notes (title, body, created) VALUES (?1, ?2, ?3)",
        params![title, body, created],
    )?;
    Ok(Note { id: conn.last_insert_rowid(), title, body, created })
}

/// The note `id`, if there is one.
pub fn get(conn: &Connection, id: i64) -> rusqlite::Result<Option<Note>> {
    conn.query_row("SELECT id, title, body, created FROM notes WHERE id = ?1", [id], note).optional()
}

/// Up to `limit` notes with ids above `after`, in id order (one page of a listing).
pub fn page(conn: &Connection, after: i64, limit: u32) -> rusqlite::Result<Vec<Note>> {
    let mut stmt =
        conn.prepare_cached("SELECT id, title, body, created FROM notes WHERE id > ?1 ORDER BY id LIMIT ?2")?;
    stmt.query_map(params![after, limit], note)?.collect()
}

/// Deletes the note `id`; whether there was one.
pub fn delete(conn: &Connection, id: i64) -> rusqlite::Result<bool> {
    Ok(conn.execute("DELETE FROM notes WHERE id = ?1", [id])? == 1)
}
