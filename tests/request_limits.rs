//! The request deadline, the slow-request log and the access log end to end: a server in
//! this process behind a real nginx, its log lines caught by a test logger. A handler that
//! never finishes reaches the browser as nginx's pass-through of the CGI 504; the slow
//! line and the timeout line name the request; each finished request has one access line
//! with its status and the FCGI_STDOUT bytes it sent. Then the examples' flags: `hello`
//! with `--access-log --log warn` writes its access line to stderr and nothing at info.
//! A missing nginx fails the test.

mod support;

use std::future::pending;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use ember_fcgi::mio::Server;
use ember_fcgi::prelude::*;
use ember_fcgi::server::{Limits, Listen};
use ember_fcgi_testkit::web::{Endpoint, Nginx};
use ember_fcgi_testkit::{Client, REQUEST_COMPLETE, begin_bytes, params_bytes, tools};

/// Every log line: `LEVEL target: message`.
struct Catch(Mutex<Vec<String>>);

impl log::Log for Catch {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &log::Record<'_>) {
        let line = format!("{} {}: {}", record.level(), record.target(), record.args());
        self.0.lock().unwrap().push(line);
    }
    fn flush(&self) {}
}

fn lines() -> &'static Catch {
    static LOGGER: OnceLock<&'static Catch> = OnceLock::new();
    LOGGER.get_or_init(|| {
        let catch: &'static Catch = Box::leak(Box::new(Catch(Mutex::new(Vec::new()))));
        log::set_logger(catch).expect("the only logger");
        log::set_max_level(log::LevelFilter::Info);
        catch
    })
}

/// `/hang` never finishes; `/raw` writes its own head; `/read` reads its body first;
/// anything else answers "hello".
struct App;

impl Handler for App {
    async fn handle(&self, req: &mut Request<'_>, res: &mut Response<'_>) -> Result<(), HandlerError> {
        match req.params().script_name().unwrap_or("") {
            "/hang" => pending::<()>().await,
            "/raw" => res.raw_output().write_all(b"Status: 201 Created\r\n\r\nraw").await?,
            "/read" => {
                let mut body = [0u8; 16];
                req.read_into_slice(&mut body).await?;
            }
            _ => res.send_response(200, "text/plain", b"hello").await?,
        }
        Ok(())
    }
}

const TIMEOUT: Duration = Duration::from_millis(800);
const GATEWAY_TIMEOUT: &str =
    "Status: 504 Gateway Timeout\r\nContent-Type: text/plain\r\n\r\nGateway Timeout\n";
const HELLO: &str = "Status: 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello";

#[test]
fn timeout_slow_and_access_lines_through_nginx() {
    let caught = lines();
    let limits = Limits::default()
        .with_request_timeout(TIMEOUT)
        .with_slow_request_after(Duration::from_millis(200))
        .with_shutdown_timeout(Duration::from_millis(200));
    let server = Server::bind(&Listen::Tcp("127.0.0.1:0".parse().unwrap()), App, limits).expect("bind");
    let (addr, stats, stop) = (server.local_addr().unwrap(), server.stats(), server.shutdown_handle());
    let thread = std::thread::spawn(move || server.run());
    let nginx = Nginx::start(&tools::nginx(), &Endpoint::Tcp(addr), true);
    let agent = ureq::AgentBuilder::new().timeout_read(Duration::from_secs(30)).build();
    let get = |path: &str| match agent.get(&nginx.url(path)).call() {
        Ok(r) | Err(ureq::Error::Status(_, r)) => (r.status(), r.into_string().unwrap()),
        Err(e) => panic!("GET {path}: {e}"),
    };

    let started = Instant::now();
    assert_eq!(get("/hang?q=1"), (504, "Gateway Timeout\n".to_owned()));
    let took = started.elapsed();
    assert!(took >= TIMEOUT && took < TIMEOUT + Duration::from_secs(2), "answered after {took:?}");
    assert_eq!(get("/hello?x=1"), (200, "hello".to_owned()));
    assert_eq!(get("/raw"), (201, "raw".to_owned()));

    let deadline = Instant::now() + Duration::from_secs(10);
    while stats.snapshot().memory_lent != 0 {
        assert!(Instant::now() < deadline, "request memory not back: {:?}", stats.snapshot());
        std::thread::sleep(Duration::from_millis(5));
    }
    let s = stats.snapshot();
    assert_eq!((s.requests, s.request_timeouts, s.slow_requests), (3, 1, 1));
    // Straight to the server: a request whose body never comes (nor REQUEST_URI).
    let mut client = Client::tcp(addr);
    let mut head = begin_bytes(1, true);
    let pairs = [("REQUEST_METHOD", "POST"), ("SCRIPT_NAME", "/read"), ("QUERY_STRING", "x=1")];
    head.extend(params_bytes(1, &[pairs[0], pairs[1], pairs[2], ("CONTENT_LENGTH", "5")]));
    client.send(&head);
    let reply = client.reply(1);
    assert_eq!(
        (reply.stdout.as_slice(), reply.protocol_status),
        (GATEWAY_TIMEOUT.as_bytes(), REQUEST_COMPLETE)
    );
    drop(client);
    let s = stats.snapshot();
    assert_eq!((s.requests, s.request_timeouts, s.slow_requests), (4, 2, 2));
    stop.shutdown();
    thread.join().unwrap().unwrap();
    drop(nginx);

    let lines = caught.0.lock().unwrap().clone();
    let text = lines.join("\n");
    let one = |what: &str, pred: &dyn Fn(&str) -> bool| {
        let found: Vec<_> = lines.iter().filter(|l| pred(l)).collect();
        assert_eq!(found.len(), 1, "one {what} line in:\n{text}");
        found[0].clone()
    };
    let slow = one("slow", &|l| l.starts_with("WARN ember_fcgi: slow request: GET /hang?q=1 running for "));
    assert!(slow.ends_with(", in its handler"), "{slow}");
    // The URI without REQUEST_URI: SCRIPT_NAME?QUERY_STRING.
    let slow = one("slow", &|l| l.starts_with("WARN ember_fcgi: slow request: POST /read?x=1 running for "));
    assert!(slow.ends_with(", reading its body"), "{slow}");
    one("timeout", &|l| {
        l == "WARN ember_fcgi: request GET /hang?q=1 ran past request_timeout (800ms): answered 504"
    });
    // `client "METHOD URI" STATUS BYTES DURATIONms id=ID`.
    let access = |uri: &str| one("access", &|l| l.contains(&format!("\"GET {uri}\"")));
    let hang = access("/hang?q=1");
    let prefix =
        format!("INFO ember_fcgi::access: 127.0.0.1 \"GET /hang?q=1\" 504 {} ", GATEWAY_TIMEOUT.len());
    assert!(hang.starts_with(&prefix) && hang.ends_with("ms id=1"), "{hang}");
    let ms: f64 = hang[prefix.len()..].trim_end_matches("ms id=1").parse().expect("milliseconds");
    assert!(ms >= TIMEOUT.as_secs_f64() * 1000.0 && ms < 3000.0, "{hang}");
    let hello = access("/hello?x=1");
    let prefix = format!("INFO ember_fcgi::access: 127.0.0.1 \"GET /hello?x=1\" 200 {} ", HELLO.len());
    assert!(hello.starts_with(&prefix) && hello.ends_with("ms id=1"), "{hello}");
    // Raw output's status is not parsed: `-`.
    let raw = access("/raw");
    assert!(raw.starts_with("INFO ember_fcgi::access: 127.0.0.1 \"GET /raw\" - 26 "), "{raw}");
}

#[test]
fn the_examples_access_log_flag_behind_nginx() {
    use std::ffi::OsStr;
    use support::{Combo, Socket, Stack, Transport};
    let combo = Combo { transport: Transport::Mio, socket: Socket::Tcp, keepalive: true };
    let args = ["--access-log", "--log", "warn", "--request-timeout", "5", "--slow-request", "5"];
    let stack = Stack::start("hello", combo, &args.map(OsStr::new));
    let reply = support::send(support::agent().get(&stack.url("/?a=b")).call());
    assert_eq!((reply.status, reply.body.as_str()), (200, "Hello, World!\n"));
    // `Status: 200 OK`, Content-Type, Content-Length: 14, the empty line, the body.
    let line = "ember_fcgi::access] 127.0.0.1 \"GET /?a=b\" 200 78 ";
    let deadline = Instant::now() + Duration::from_secs(10);
    while !stack.app.log().contains(line) {
        assert!(Instant::now() < deadline, "no access line {line:?} in:\n{}", stack.app.log());
        std::thread::sleep(Duration::from_millis(10));
    }
    let log = stack.app.log();
    let access = log.lines().find(|l| l.contains(line)).unwrap();
    assert!(access.ends_with("ms id=1"), "{access}");
    assert!(!log.contains(" INFO  ember_fcgi]"), "--log warn hides the startup line:\n{log}");
}
