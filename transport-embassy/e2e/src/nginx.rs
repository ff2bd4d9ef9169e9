//! nginx in front of the FastCGI app, from a config of its own: `/ka/` keeps FastCGI
//! connections open (`upstream { keepalive }` + `fastcgi_keep_conn on`), `/close/` opens
//! one per request. Killed on drop.

use std::fmt::Write as _;
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The params nginx sends (Debian's `fastcgi_params`, inlined).
const FASTCGI_PARAMS: &[(&str, &str)] = &[
    ("QUERY_STRING", "$query_string"),
    ("REQUEST_METHOD", "$request_method"),
    ("CONTENT_TYPE", "$content_type"),
    ("CONTENT_LENGTH", "$content_length"),
    ("SCRIPT_NAME", "$fastcgi_script_name"),
    ("REQUEST_URI", "$request_uri"),
    ("DOCUMENT_URI", "$document_uri"),
    ("DOCUMENT_ROOT", "$document_root"),
    ("SERVER_PROTOCOL", "$server_protocol"),
    ("REQUEST_SCHEME", "$scheme"),
    ("GATEWAY_INTERFACE", "CGI/1.1"),
    ("SERVER_SOFTWARE", "nginx/$nginx_version"),
    ("REMOTE_ADDR", "$remote_addr"),
    ("REMOTE_PORT", "$remote_port"),
    ("SERVER_ADDR", "$server_addr"),
    ("SERVER_PORT", "$server_port"),
    ("SERVER_NAME", "$server_name"),
    ("REDIRECT_STATUS", "200"),
];

fn config(dir: &Path, port: u16, upstream: &str) -> String {
    let dir = dir.display();
    let mut text = format!(
        "daemon off;
master_process off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log notice;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {dir}/client_body_temp;
    fastcgi_temp_path {dir}/fastcgi_temp;
    proxy_temp_path {dir}/proxy_temp;
    uwsgi_temp_path {dir}/uwsgi_temp;
    scgi_temp_path {dir}/scgi_temp;
    client_max_body_size 0;
    large_client_header_buffers 4 16k;
    upstream ember {{
        server {upstream};
        keepalive 8;
    }}
    server {{
        listen 127.0.0.1:{port};
"
    );
    for (location, pass, keep) in [("/ka/", "ember", true), ("/close/", upstream, false)] {
        let _ = writeln!(text, "        location {location} {{\n            fastcgi_pass {pass};");
        if keep {
            text.push_str("            fastcgi_keep_conn on;\n");
        }
        for (name, value) in FASTCGI_PARAMS {
            let _ = writeln!(text, "            fastcgi_param {name} {value};");
        }
        text.push_str("        }\n");
    }
    text.push_str("    }\n}\n");
    text
}

/// A running nginx listening on 127.0.0.1 (of the network namespace of the calling thread).
pub struct Nginx {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Nginx {
    /// Starts `binary` passing to `upstream` (`HOST:PORT`); returns once it accepts.
    pub fn start(binary: &Path, upstream: &str) -> Self {
        let dir = tempfile::Builder::new().prefix("ember-embassy-nginx").tempdir().expect("temp dir");
        let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port").port();
        let conf = dir.path().join("nginx.conf");
        std::fs::write(&conf, config(dir.path(), port, upstream)).expect("write nginx.conf");
        let error_log = dir.path().join("error.log");
        let mut child = Command::new(binary)
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(&conf)
            .arg("-e")
            .arg(&error_log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn nginx");
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "nginx exited with {status}:\n{}",
                    std::fs::read_to_string(&error_log).unwrap_or_default()
                );
            }
            assert!(Instant::now() < deadline, "nginx did not accept on {port} within 10 s");
            std::thread::sleep(Duration::from_millis(20));
        }
        Self { child, port, dir }
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Lines of error.log at level error or worse.
    pub fn errors(&self) -> Vec<String> {
        let log = std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default();
        log.lines()
            .filter(|l| ["[error]", "[crit]", "[alert]", "[emerg]"].iter().any(|level| l.contains(level)))
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
