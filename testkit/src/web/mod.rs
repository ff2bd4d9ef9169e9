//! Running web servers and FastCGI tools in front of an application under test: nginx
//! ([`nginx`]), lighttpd, Apache httpd and Caddy ([`servers`]), each from a generated
//! config in a temporary directory on a free loopback port and stopped on drop, and
//! libfcgi's `cgi-fcgi` ([`cgi_fcgi`]).

pub mod cgi_fcgi;
pub mod nginx;
pub mod process;
pub mod servers;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::client::{Client, Stream};

pub use nginx::{FASTCGI_PARAMS, Nginx, NginxConf, nginx_conf};
pub use servers::{Kind, WebServer};

/// A fresh directory under the system temp dir, removed on drop.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        // Short: Unix socket paths are limited to 107 bytes.
        let path = std::env::temp_dir().join(format!("ember-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create temp dir");
        Self(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A loopback port that was free a moment ago and that this process has not handed out
/// before (tests run in parallel: two that drew the same port would race for it).
pub fn free_port() -> u16 {
    static GIVEN: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    loop {
        let port =
            TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("bind 127.0.0.1:0").port();
        let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

/// Where a FastCGI application listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl Endpoint {
    /// The address as nginx's `server` / `fastcgi_pass` take it.
    pub fn nginx_address(&self) -> String {
        match self {
            Self::Tcp(addr) => addr.to_string(),
            Self::Unix(path) => format!("unix:{}", path.display()),
        }
    }

    /// The address as `cgi-fcgi -connect` takes it (a path has no colon).
    pub fn cgi_fcgi_address(&self) -> String {
        match self {
            Self::Tcp(addr) => addr.to_string(),
            Self::Unix(path) => path.display().to_string(),
        }
    }

    /// A FastCGI client connection, retried for up to 5 s while the app starts.
    pub fn connect(&self) -> Client {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let attempt = match self {
                Self::Tcp(addr) => TcpStream::connect(addr).map(Stream::Tcp),
                Self::Unix(path) => UnixStream::connect(path).map(Stream::Unix),
            };
            match attempt {
                Ok(stream) => {
                    stream.set_write_timeout(Some(Duration::from_secs(30))).expect("set_write_timeout");
                    return Client::new(stream);
                }
                Err(e) if Instant::now() > deadline => panic!("connect to {self:?}: {e}"),
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }
}
