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
//! On the smol transport the handler awaits async file-system calls (`smol::fs`, which runs
//! them on a thread pool) for the directory and for each entry, so other requests go on
//! meanwhile; on mio, whose one thread runs every handler, it uses blocking `std::fs`.
//!
//! ```text
//! cargo run --release --example dirlist -- --root . --listen 127.0.0.1:9000 [--transport smol]
//! ```

mod common;

use std::fs::Metadata;
use std::io;
use std::path::{Component, Path, PathBuf};
use std::process::ExitCode;

use common::Transport;
use ember_fcgi::host::Limits;
use ember_fcgi::prelude::*;
use smol::stream::StreamExt;

struct DirList {
    /// Canonical.
    root: PathBuf,
    transport: Transport,
}

/// Why a path cannot be listed.
enum Refusal {
    Forbidden,
    NotFound,
}

impl DirList {
    /// `ROOT/relative`, or a refusal; never a path outside the root.
    async fn resolve(&self, relative: &Path) -> Result<PathBuf, Refusal> {
        // Lexical check first, so `../..` learns nothing about what exists outside.
        let mut joined = self.root.clone();
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
        let canonical = match self.transport {
            Transport::Smol => smol::fs::canonicalize(&joined).await,
            Transport::Mio => std::fs::canonicalize(&joined),
        };
        let canonical = canonical.map_err(|_| Refusal::NotFound)?;
        if !canonical.starts_with(&self.root) {
            return Err(Refusal::Forbidden); // a symlink pointing out of the root
        }
        if !self.metadata(&canonical).await.is_ok_and(|m| m.is_dir()) {
            return Err(Refusal::NotFound);
        }
        Ok(canonical)
    }

    /// Metadata following symlinks.
    async fn metadata(&self, path: &Path) -> io::Result<Metadata> {
        match self.transport {
            Transport::Smol => smol::fs::metadata(path).await,
            Transport::Mio => std::fs::metadata(path),
        }
    }

    /// The NDJSON line of one entry, or `None` to skip it.
    async fn record(&self, dir: &Path, name: &std::ffi::OsStr) -> Option<String> {
        let meta = self.metadata(&dir.join(name)).await.ok()?;
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

    /// Streams the records of `dir`, flushing after each.
    async fn list(&self, dir: &Path, res: &mut Response<'_>) -> Result<(), StreamError> {
        match self.transport {
            Transport::Smol => {
                let mut entries = match smol::fs::read_dir(dir).await {
                    Ok(entries) => entries,
                    Err(e) => return failed(res, dir, e).await,
                };
                res.send_head(200, &[("Content-Type", content_type::NDJSON)]).await?;
                while let Some(entry) = entries.next().await {
                    let entry = match entry {
                        Ok(entry) => entry,
                        Err(e) => return log_error(res, dir, e).await,
                    };
                    if let Some(line) = self.record(dir, &entry.file_name()).await {
                        res.write_all(line.as_bytes()).await?;
                        res.flush().await?;
                    }
                }
            }
            Transport::Mio => {
                let entries = match std::fs::read_dir(dir) {
                    Ok(entries) => entries,
                    Err(e) => return failed(res, dir, e).await,
                };
                res.send_head(200, &[("Content-Type", content_type::NDJSON)]).await?;
                for entry in entries {
                    let entry = match entry {
                        Ok(entry) => entry,
                        Err(e) => return log_error(res, dir, e).await,
                    };
                    if let Some(line) = self.record(dir, &entry.file_name()).await {
                        res.write_all(line.as_bytes()).await?;
                        res.flush().await?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// The directory could not be opened: 500, and the reason to the web server's error log.
async fn failed(res: &mut Response<'_>, dir: &Path, e: io::Error) -> Result<(), StreamError> {
    let message = format!("dirlist: cannot read {}: {e}\n", dir.display());
    res.stderr().write_all(message.as_bytes()).await?;
    res.send_response(500, content_type::TEXT, b"cannot read the directory\n").await
}

/// Listing broke off after the head was sent: the status cannot change, so log it.
async fn log_error(res: &mut Response<'_>, dir: &Path, e: io::Error) -> Result<(), StreamError> {
    let message = format!("dirlist: listing {} stopped: {e}\n", dir.display());
    res.stderr().write_all(message.as_bytes()).await
}

impl Handler for DirList {
    async fn handle(&self, req: &mut Request<'_>, res: &mut Response<'_>) -> Result<(), StreamError> {
        let path = common::query_param(req.params().query_string(), "path").unwrap_or_default();
        let relative = PathBuf::from(common::os_string(path));
        match self.resolve(&relative).await {
            Ok(dir) => self.list(&dir, res).await,
            Err(Refusal::Forbidden) => res.send_response(403, content_type::TEXT, b"forbidden\n").await,
            Err(Refusal::NotFound) => res.send_response(404, content_type::TEXT, b"not found\n").await,
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
    common::serve(&args, DirList { root, transport: args.transport }, Limits::default())
}
