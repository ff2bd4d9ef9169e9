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
//! On the smol transport the file is written with `smol::fs` (async, on a thread pool); on
//! mio with blocking `std::fs`.
//!
//! ```text
//! cargo run --release --example upload -- --dir /tmp/uploads --listen 127.0.0.1:9000
//! curl --data-binary @file 'http://localhost:8080/?name=file'
//! ```

mod common;

use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use common::Transport;
use ember_fcgi::host::Limits;
use ember_fcgi::prelude::*;
use sha2::{Digest, Sha256};
use smol::io::AsyncWriteExt;

struct Upload {
    dir: PathBuf,
    transport: Transport,
    counter: AtomicU64,
}

/// The destination file, written through the transport's kind of file I/O.
enum File {
    Std(std::fs::File),
    Smol(smol::fs::File),
}

impl File {
    async fn create(transport: Transport, path: &Path) -> io::Result<Self> {
        Ok(match transport {
            Transport::Smol => Self::Smol(smol::fs::File::create(path).await?),
            Transport::Mio => Self::Std(std::fs::File::create(path)?),
        })
    }

    async fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Self::Std(file) => file.write_all(bytes),
            Self::Smol(file) => file.write_all(bytes).await,
        }
    }

    /// Hands everything written to the OS (async-fs buffers writes on its thread pool).
    async fn finish(self) -> io::Result<()> {
        match self {
            Self::Std(_) => Ok(()),
            Self::Smol(mut file) => file.flush().await,
        }
    }
}

/// What went wrong while storing the body.
enum Failure {
    /// Reading the request failed (truncated or aborted): the core answers.
    Request(StreamError),
    /// The file system failed: we answer 500.
    Disk(io::Error),
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
    /// Streams the body into `part`, returning its size and SHA-256.
    async fn store(&self, req: &mut Request<'_>, part: &Path) -> Result<(u64, String), Failure> {
        let mut file = File::create(self.transport, part).await.map_err(Failure::Disk)?;
        let mut buf = vec![0u8; 64 * 1024];
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        loop {
            let n = req.read(&mut buf).await.map_err(Failure::Request)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            size += n as u64;
            file.write_all(&buf[..n]).await.map_err(Failure::Disk)?;
        }
        file.finish().await.map_err(Failure::Disk)?;
        Ok((size, common::hex(&hasher.finalize())))
    }

    async fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        match self.transport {
            Transport::Smol => smol::fs::rename(from, to).await,
            Transport::Mio => std::fs::rename(from, to),
        }
    }
}

impl Handler for Upload {
    async fn handle(&self, req: &mut Request<'_>, res: &mut Response<'_>) -> Result<(), StreamError> {
        if !matches!(req.params().request_method(), Some("POST" | "PUT")) {
            res.send_head(405, &[("Allow", "POST, PUT"), ("Content-Type", content_type::TEXT)]).await?;
            return res.write_all(b"POST or PUT the file as the request body\n").await;
        }
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let name = common::query_param(req.params().query_string(), "name")
            .and_then(|raw| sanitize(&raw))
            .unwrap_or_else(|| format!("upload-{}-{n}.bin", common::unix_millis(SystemTime::now())));
        let part = self.dir.join(format!(".{name}.{n}.part"));
        let stored = match self.store(req, &part).await {
            Ok((size, sha)) => self.rename(&part, &self.dir.join(&name)).await.map(|()| (size, sha)),
            Err(Failure::Disk(e)) => Err(e),
            Err(Failure::Request(e)) => {
                let _ = std::fs::remove_file(&part);
                return Err(e);
            }
        };
        match stored {
            Ok((size, sha)) => {
                let mut body = String::from("{\"name\":");
                common::json_string(&mut body, &name);
                body += &format!(",\"size\":{size},\"sha256\":\"{sha}\"}}\n");
                res.send_response(201, content_type::JSON, body.as_bytes()).await
            }
            Err(e) => {
                let _ = std::fs::remove_file(&part);
                let message = format!("upload: storing {name}: {e}\n");
                res.stderr().write_all(message.as_bytes()).await?;
                res.send_response(500, content_type::TEXT, b"cannot store the file\n").await
            }
        }
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
    let handler = Upload { dir, transport: args.transport, counter: AtomicU64::new(0) };
    common::serve(&args, handler, Limits::default())
}
