//! More than one process: two `hello` processes, each on its own Unix socket, behind one
//! nginx upstream that lists both (docs/deploying.md, "More than one core"). nginx reports which
//! process answered each request (`X-Upstream: $upstream_addr`), so the test sees both
//! serve; then one process stops and the other takes every request.

mod support;

use std::time::Duration;

use support::{App, Combo, Endpoint, Nginx, Socket, Transport, agent};

/// nginx, one process, with an upstream of `servers` (round robin, keep-alive).
struct Upstream(Nginx);

impl Upstream {
    fn start(binary: &std::path::Path, servers: &[&Endpoint]) -> Self {
        let servers: String =
            servers.iter().map(|s| format!("        server {};\n", s.nginx_address())).collect();
        Self(Nginx::launch(binary, |dir, port| {
            let d = dir.display();
            format!(
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
            )
        }))
    }

    /// GET `path`: the body and which upstream answered (the last one nginx tried).
    fn get(&self, agent: &ureq::Agent, path: &str) -> (String, String) {
        let response = agent.get(&self.0.url(path)).call().expect("GET");
        assert_eq!(response.status(), 200);
        let upstream = response.header("X-Upstream").expect("X-Upstream header").to_owned();
        let last = upstream.rsplit(", ").next().unwrap_or_default().to_owned();
        (response.into_string().expect("body"), last)
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
