//! Upload: `POST /?name=report.pdf` (or `PUT`) streams the request body, of any size, to a
//! file in `--dir`, in constant memory (one 64 KiB buffer), and answers `201 Created`:
//!
//! ```text
//! {"name":"report.pdf","size":1048576,"sha256":"<hex>"}
//! ```
//!
//! The name is sanitized to its last path component made of `[A-Za-z0-9._-]` (other bytes
//! become `_`, leading dots are dropped, at most 100 bytes); without a usable name one is
//! generated (`upload-<millis>-<n>.bin`). The body goes to a hidden `.NAME.<n>.part` file
//! first and is renamed into place only when it arrived whole (a body shorter than
//! `CONTENT_LENGTH` or an aborted request leaves nothing behind). An existing file of the
//! same name is replaced.
//!
//! The file is written through the `blocking` crate's thread pool (`blocking::Unblock`),
//! which wakes the handler when each write is done: the loop never waits for the disk, and
//! the handler is the same code on mio and smol.
//!
//! ```text
//! cargo run --release --example upload -- --dir /tmp/uploads --listen 127.0.0.1:9000
//! curl --data-binary @file 'http://localhost:8080/?name=file'
//! ```

mod common;

use std::io;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use blocking::{Unblock, unblock};
use ember_fcgi::form;
use ember_fcgi::prelude::*;
use ember_fcgi::server::Limits;
use futures_lite::AsyncWriteExt;
use sha2::{Digest, Sha256};

struct Upload {
    dir: PathBuf,
    counter: AtomicU64,
}

/// Keeps `[A-Za-z0-9._-]` of the last path component, drops leading dots, caps the length.
fn sanitize(raw: &[u8]) -> Option<String> {
    let last = raw.rsplit(|&b| b == b'/' || b == b'\\').next().unwrap_or_default();
    let cleaned: String = last
        .iter()
        .map(|&b| if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-') { b as char } else { '_' })
        .skip_while(|&c| c == '.')
        .take(100)
        .collect();
    (!cleaned.is_empty()).then_some(cleaned)
}

impl Upload {
    /// Streams the body into `part`, returning its size and SHA-256. A disk error says
    /// which file failed.
    async fn store(&self, req: &mut Request<'_>, part: &Path) -> Result<(u64, String), HandlerError> {
        let path = part.to_owned();
        let file =
            unblock(move || std::fs::File::create(path)).await.map_err(|e| disk("creating", part, e))?;
        let mut file = Unblock::with_capacity(64 * 1024, file);
        let mut buf = vec![0u8; 64 * 1024];
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        loop {
            let n = req.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            size += n as u64;
            file.write_all(&buf[..n]).await.map_err(|e| disk("writing", part, e))?;
        }
        file.flush().await.map_err(|e| disk("writing", part, e))?;
        Ok((size, common::hex(&hasher.finalize())))
    }
}

/// A file-system error with what was being done to which file (for the web server's log).
fn disk(doing: &str, path: &Path, e: io::Error) -> HandlerError {
    HandlerError::msg(&format_args!("upload: {doing} {}: {e}", path.display()))
}

impl Handler for Upload {
    async fn handle(&self, req: &mut Request<'_>, res: &mut Response<'_>) -> Result<(), HandlerError> {
        if !matches!(req.params().request_method(), Some("POST" | "PUT")) {
            let mut out =
                res.send_head(405, &[("Allow", "POST, PUT"), ("Content-Type", content_type::TEXT)]).await?;
            out.write_all(b"POST or PUT the file as the request body\n").await?;
            return Ok(());
        }
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let name = form::query_value(&req.params(), "name")
            .and_then(|raw| sanitize(raw.as_bytes()))
            .unwrap_or_else(|| format!("upload-{}-{n}.bin", common::unix_millis(SystemTime::now())));
        let part = self.dir.join(format!(".{name}.{n}.part"));
        let target = self.dir.join(&name);
        let stored = match self.store(req, &part).await {
            Ok(stored) => {
                let from = part.clone();
                unblock(move || std::fs::rename(from, target))
                    .await
                    .map(|()| stored)
                    .map_err(|e| disk("renaming", &part, e))
            }
            Err(e) => Err(e),
        };
        let (size, sha) = match stored {
            Ok(stored) => stored,
            Err(e) => {
                // A short or aborted body, or a disk error: leave nothing behind.
                let _ = unblock(move || std::fs::remove_file(part)).await;
                return Err(e);
            }
        };
        let mut body = String::from("{\"name\":");
        common::json_string(&mut body, &name);
        body += &format!(",\"size\":{size},\"sha256\":\"{sha}\"}}\n");
        res.send_response(201, content_type::JSON, body.as_bytes()).await?;
        Ok(())
    }
}

fn main() -> ExitCode {
    let opts = [common::Opt {
        name: "dir",
        value: "DIR",
        required: true,
        help: "the directory the uploaded files are stored in",
    }];
    let args = common::parse_args("upload", &opts);
    let dir = PathBuf::from(args.get("dir").unwrap_or_default());
    if !dir.is_dir() {
        eprintln!("upload: --dir {} is not a directory", dir.display());
        return ExitCode::from(2);
    }
    let handler = Upload { dir, counter: AtomicU64::new(0) };
    common::serve(&args, handler, Limits::default())
}
