//! Directory listing, as in the seeds: `GET /?path=sub/dir` streams one NDJSON record per
//! entry of `ROOT/sub/dir`, flushed as each entry is read:
//!
//! ```text
//! {"name":"a.txt","type":"file","size":12,"mtime":1732370000123}
//! {"name":"sub","type":"dir","size":4096,"mtime":1732370000456}
//! ```
//!
//! `mtime` is in milliseconds since the epoch; entries that are neither files nor
//! directories (after following symlinks) are skipped. The path is percent-decoded and
//! confined to `--root`: a path whose `..` climbs out of the root is refused with 403 before
//! the file system is touched, then the path is canonicalized and must still lie under the
//! root (so a symlink cannot lead out either, 403). A missing path or one that is not a
//! directory is 404.
//!
//! The file-system calls run on the `blocking` crate's thread pool (`blocking::unblock`,
//! which wakes the handler when they are done), so the loop never waits for the disk and
//! the handler is the same code on mio and smol: the directory is read in batches of 64
//! entries, and each entry's record is flushed on its own as it is written.
//!
//! ```text
//! cargo run --release --example dirlist -- --root . --listen 127.0.0.1:9000 [--transport smol]
//! ```

mod common;

use std::fs::ReadDir;
use std::io;
use std::path::{Component, Path, PathBuf};
use std::process::ExitCode;

use blocking::unblock;
use ember_fcgi::form;
use ember_fcgi::prelude::*;
use ember_fcgi::server::Limits;

/// Entries read per trip to the thread pool.
const BATCH: usize = 64;

struct DirList {
    /// Canonical.
    root: PathBuf,
}

/// Why a path cannot be listed.
enum Refusal {
    Forbidden,
    NotFound,
}

impl DirList {
    /// `ROOT/relative`, or a refusal; never a path outside the root. Blocking.
    fn resolve(root: &Path, relative: &Path) -> Result<PathBuf, Refusal> {
        // Lexical check first, so `../..` learns nothing about what exists outside.
        let mut joined = root.to_owned();
        let mut depth = 0usize;
        for component in relative.components() {
            match component {
                Component::Normal(name) => {
                    joined.push(name);
                    depth += 1;
                }
                Component::ParentDir if depth == 0 => return Err(Refusal::Forbidden),
                Component::ParentDir => {
                    joined.pop();
                    depth -= 1;
                }
                Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
            }
        }
        let canonical = std::fs::canonicalize(&joined).map_err(|_| Refusal::NotFound)?;
        if !canonical.starts_with(root) {
            return Err(Refusal::Forbidden); // a symlink pointing out of the root
        }
        if !std::fs::metadata(&canonical).is_ok_and(|m| m.is_dir()) {
            return Err(Refusal::NotFound);
        }
        Ok(canonical)
    }
}

/// The NDJSON line of one entry, or `None` to skip it. Blocking.
fn record(dir: &Path, name: &std::ffi::OsStr) -> Option<String> {
    let meta = std::fs::metadata(dir.join(name)).ok()?;
    let kind = if meta.is_dir() {
        "dir"
    } else if meta.is_file() {
        "file"
    } else {
        return None;
    };
    let mut line = String::from("{\"name\":");
    common::json_string(&mut line, &name.to_string_lossy());
    line += &format!(",\"type\":\"{kind}\",\"size\":{}", meta.len());
    if let Ok(mtime) = meta.modified() {
        line += &format!(",\"mtime\":{}", common::unix_millis(mtime));
    }
    line += "}\n";
    Some(line)
}

/// The records of the next `BATCH` entries of `entries`; `None` at the end. Blocking.
fn next_batch(dir: &Path, entries: &mut ReadDir) -> io::Result<Option<Vec<String>>> {
    let mut lines = Vec::new();
    let mut seen = 0;
    for entry in entries.by_ref().take(BATCH) {
        seen += 1;
        lines.extend(record(dir, &entry?.file_name()));
    }
    Ok((seen > 0).then_some(lines))
}

impl Handler for DirList {
    async fn handle(&self, req: &mut Request<'_>, res: &mut Response<'_>) -> Result<(), HandlerError> {
        let relative = PathBuf::from(form::query_value(&req.params(), "path").unwrap_or_default().as_ref());
        let root = self.root.clone();
        let dir = match unblock(move || DirList::resolve(&root, &relative)).await {
            Ok(dir) => dir,
            Err(Refusal::Forbidden) => {
                return Ok(res.send_response(403, content_type::TEXT, b"forbidden\n").await?);
            }
            Err(Refusal::NotFound) => {
                return Ok(res.send_response(404, content_type::TEXT, b"not found\n").await?);
            }
        };
        // An error before the head is a 500 (the library answers it and logs the text).
        let (mut entries, mut dir) = unblock(move || std::fs::read_dir(&dir).map(|entries| (entries, dir)))
            .await
            .map_err(|e| HandlerError::msg(&format_args!("dirlist: cannot read the directory: {e}")))?;
        let mut out = res.send_head(200, &[("Content-Type", content_type::NDJSON)]).await?;
        loop {
            let (batch, back) = unblock(move || (next_batch(&dir, &mut entries), (entries, dir))).await;
            (entries, dir) = back;
            // After the head the status cannot change: an error ends the listing, logged.
            let batch = batch.map_err(|e| {
                HandlerError::msg(&format_args!("dirlist: listing {} stopped: {e}", dir.display()))
            })?;
            let Some(batch) = batch else { return Ok(()) };
            for line in batch {
                out.write_all(line.as_bytes()).await?;
                out.flush().await?;
            }
        }
    }
}

fn main() -> ExitCode {
    let opts = [common::Opt {
        name: "root",
        value: "DIR",
        required: true,
        help: "the directory to list; nothing outside it is served",
    }];
    let args = common::parse_args("dirlist", &opts);
    let root = args.get("root").unwrap_or_default();
    let root = match std::fs::canonicalize(root) {
        Ok(root) if root.is_dir() => root,
        Ok(_) => {
            eprintln!("dirlist: --root {} is not a directory", root.display());
            return ExitCode::from(2);
        }
        Err(e) => {
            eprintln!("dirlist: --root {}: {e}", root.display());
            return ExitCode::from(2);
        }
    };
    common::serve(&args, DirList { root }, Limits::default())
}
