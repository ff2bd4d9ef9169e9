//! A web server whose workers run as another user than the app, as nginx's do under
//! Debian's packaging (`www-data`): nginx's master runs as root (these tests run as root)
//! with `user nobody GROUP;`, so its worker connects to the app's Unix socket as `nobody`.
//! With the socket's default mode the worker is refused (502, "Permission denied" in
//! nginx's log); `--socket-group` with `--socket-mode 0660`, or `--socket-owner`, let it in.

mod support;

use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt as _;

use ember_fcgi_testkit::web::{NginxConf, nginx_conf};
use support::{App, Combo, Nginx, Socket, Transport, agent, send, tools};

/// nginx in front of `app` with its worker running as user `nobody`.
fn nginx_as_nobody(app: &App) -> Nginx {
    let (_, _, group) = tools::user_ids("nobody");
    let upstream = app.endpoint.nginx_address();
    Nginx::launch(&tools::nginx(), |dir, port| {
        let conf = nginx_conf(&NginxConf {
            dir,
            port,
            upstream: &upstream,
            keepalive: false,
            request_buffering: true,
        });
        // A worker drops to `user` only under a master process.
        assert!(conf.contains("master_process off;\n"), "{conf}");
        conf.replace("master_process off;\n", &format!("master_process on;\nuser nobody {group};\n"))
    })
}

/// Starts `hello` on a Unix socket with `flags`, behind nginx whose worker is `nobody`;
/// the status and body of `GET /`, and nginx's error log.
fn get_as_nobody(transport: Transport, flags: &[&str]) -> (u16, String, String) {
    tools::require_root("nginx's master must run as root to start its worker as nobody");
    let combo = Combo { transport, socket: Socket::Unix, keepalive: false };
    let flags: Vec<&OsStr> = flags.iter().map(OsStr::new).collect();
    let app = App::start("hello", combo, &flags);
    let support::Endpoint::Unix(path) = &app.endpoint else { panic!("{:?}", app.endpoint) };
    // Whatever the umask: the worker may search the socket's directory, so only the
    // socket's own permissions decide.
    let dir = path.parent().expect("socket directory");
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let nginx = nginx_as_nobody(&app);
    let reply = send(agent().get(&nginx.url("/")).call());
    (reply.status, reply.body, nginx.error_log())
}

/// The default mode (0777 less the umask: no write for others) keeps `nobody` out.
#[test]
fn default_mode_refuses_the_worker() {
    let (status, _, log) = get_as_nobody(Transport::Mio, &[]);
    assert_eq!(status, 502, "nginx's worker runs as nobody and may not write the socket");
    assert!(log.contains("Permission denied"), "{log}");
}

/// 0660 without the worker's group: still refused.
#[test]
fn mode_without_the_group_refuses_the_worker() {
    let (status, _, log) = get_as_nobody(Transport::Mio, &["--socket-mode", "0660"]);
    assert_eq!(status, 502);
    assert!(log.contains("Permission denied"), "{log}");
}

fn group_and_mode_admit_the_worker(transport: Transport) {
    let (_, _, group) = tools::user_ids("nobody");
    let (status, body, log) = get_as_nobody(transport, &["--socket-group", &group, "--socket-mode", "0660"]);
    assert_eq!((status, body.as_str()), (200, "Hello, World!\n"), "{log}");
}

#[test]
fn group_and_mode_admit_the_worker_mio() {
    group_and_mode_admit_the_worker(Transport::Mio);
}

#[test]
fn group_and_mode_admit_the_worker_smol() {
    group_and_mode_admit_the_worker(Transport::Smol);
}

/// The worker's user as the owner, with 0600.
#[test]
fn owner_admits_the_worker() {
    let (status, body, log) =
        get_as_nobody(Transport::Mio, &["--socket-owner", "nobody", "--socket-mode", "0600"]);
    assert_eq!((status, body.as_str()), (200, "Hello, World!\n"), "{log}");
}
