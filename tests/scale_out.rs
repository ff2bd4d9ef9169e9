//! More than one process: two `hello` processes, each on its own Unix socket, behind one
//! nginx upstream that lists both (README, "More than one core"). nginx reports which
//! process answered each request (`X-Upstream: $upstream_addr`), so the test sees both
//! serve; then one process stops and the other takes every request.

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{App, Combo, Endpoint, Socket, TempDir, Transport, agent, free_port};

/// nginx, one process, with an upstream of `servers` (round robin, keep-alive).
struct Upstream {
    child: std::process::Child,
    port: u16,
    dir: TempDir,
}

impl Upstream {
    fn start(binary: &std::path::Path, servers: &[&Endpoint]) -> Self {
        let dir = TempDir::new("nginx-up");
        let d = dir.path().display();
        let servers: String =
            servers.iter().map(|s| format!("        server {};\n", s.nginx_address())).collect();
        for _attempt in 0..5 {
            let port = free_port();
            let conf = format!(
                "daemon off;
master_process off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log notice;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {d}/client_body_temp;
    fastcgi_temp_path {d}/fastcgi_temp;
    proxy_temp_path {d}/proxy_temp;
    uwsgi_temp_path {d}/uwsgi_temp;
    scgi_temp_path {d}/scgi_temp;
    upstream app {{
{servers}        keepalive 16;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            fastcgi_pass app;
            fastcgi_keep_conn on;
            fastcgi_param QUERY_STRING $query_string;
            fastcgi_param REQUEST_METHOD $request_method;
            fastcgi_param SCRIPT_NAME $fastcgi_script_name;
            add_header X-Upstream $upstream_addr always;
        }}
    }}
}}
"
            );
            let conf_path = dir.path().join("nginx.conf");
            std::fs::write(&conf_path, conf).expect("write nginx.conf");
            let error_log = dir.path().join("error.log");
            let _ = std::fs::remove_file(&error_log);
            let mut child = Command::new(binary)
                .arg("-p")
                .arg(dir.path())
                .arg("-c")
                .arg(&conf_path)
                .arg("-e")
                .arg(&error_log)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn nginx");
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Self { child, port, dir };
                }
                if let Some(status) = child.try_wait().expect("try_wait") {
                    let log = std::fs::read_to_string(&error_log).unwrap_or_default();
                    if log.contains("Address already in use") {
                        break;
                    }
                    panic!("nginx exited with {status}; error.log:\n{log}");
                }
                assert!(Instant::now() < deadline, "nginx did not accept on {port} within 10 s");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        panic!("nginx: no free port after 5 attempts");
    }

    /// GET `path`: the body and which upstream answered (the last one nginx tried).
    fn get(&self, agent: &ureq::Agent, path: &str) -> (String, String) {
        let response = agent.get(&format!("http://127.0.0.1:{}{path}", self.port)).call().expect("GET");
        assert_eq!(response.status(), 200);
        let upstream = response.header("X-Upstream").expect("X-Upstream header").to_owned();
        let last = upstream.rsplit(", ").next().unwrap_or_default().to_owned();
        (response.into_string().expect("body"), last)
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default();
            support::loud(&format!("---- nginx error.log ----\n{log}"));
        }
    }
}

fn two_processes(transport: Transport) {
    let binary = support::tools::nginx();
    let combo = Combo { transport, socket: Socket::Unix, keepalive: true };
    let mut apps = [App::start("hello", combo, &[]), App::start("hello", combo, &[])];
    let addresses: Vec<String> = apps.iter().map(|a| a.endpoint.nginx_address()).collect();
    let nginx = Upstream::start(&binary, &[&apps[0].endpoint, &apps[1].endpoint]);
    let agent = agent();

    let mut served = [0usize; 2];
    for i in 0..40 {
        let (body, upstream) = nginx.get(&agent, &format!("/?i={i}"));
        assert_eq!(body, "Hello, World!\n");
        let which = addresses.iter().position(|a| *a == upstream);
        let which =
            which.unwrap_or_else(|| panic!("unknown upstream {upstream:?}, not one of {addresses:?}"));
        served[which] += 1;
    }
    assert!(served[0] > 0 && served[1] > 0, "both processes serve: {served:?}");
    assert_eq!(served[0] + served[1], 40);

    // One process stops (a deploy, a crash): the other takes every request.
    apps[1].terminate();
    assert_eq!(apps[1].wait_exit(Duration::from_secs(15)), Some(0), "graceful exit");
    for i in 0..20 {
        let (body, upstream) = nginx.get(&agent, &format!("/after?i={i}"));
        assert_eq!(body, "Hello, World!\n");
        assert_eq!(upstream, addresses[0], "the remaining process answers");
    }
}

#[test]
fn two_mio_processes_behind_one_upstream() {
    two_processes(Transport::Mio);
}

#[test]
fn two_smol_processes_behind_one_upstream() {
    two_processes(Transport::Smol);
}
