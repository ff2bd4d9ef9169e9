//! The HTTP requests both proofs drive through nginx into the embassy server, and what
//! each answer must be.

use std::io::Read;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::nginx::Nginx;

/// What the server under test is built for.
pub struct Expect {
    /// Bytes of the POST body echoed back and checked by SHA-256.
    pub post_bytes: usize,
    /// A header this long makes the request's params overflow the params store (431).
    pub oversized_header: usize,
    /// Sequential keep-alive requests timed for the requests/s figure.
    pub timed_requests: u32,
}

/// Figures measured along the way.
#[derive(Debug)]
pub struct Report {
    pub requests_per_second: f64,
    pub post_seconds: f64,
}

fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new().timeout(Duration::from_secs(120)).build()
}

/// A whole answer: nginx's status, the handler's `X-*` headers, and the body (always read
/// to its end, so nginx never sees a client leave early and drops the upstream connection).
struct Answer {
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> &str {
        let found = self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name));
        &found.unwrap_or_else(|| panic!("no {name} header")).1
    }

    fn accepted(&self) -> u32 {
        self.header("X-Accepted").parse().expect("X-Accepted is a number")
    }
}

fn answer(response: ureq::Response) -> Answer {
    let headers = response
        .headers_names()
        .into_iter()
        .filter(|n| n.to_ascii_lowercase().starts_with("x-"))
        .map(|n| {
            let value = response.header(&n).unwrap_or_default().to_owned();
            (n, value)
        })
        .collect();
    let mut body = Vec::new();
    response.into_reader().read_to_end(&mut body).expect("read body");
    Answer { headers, body }
}

fn get(agent: &ureq::Agent, url: &str) -> Answer {
    let response = agent.get(url).call().unwrap_or_else(|e| panic!("GET {url}: {e}"));
    assert_eq!(response.status(), 200, "GET {url}");
    answer(response)
}

/// Prints nginx's error.log if a check fails, for the failure's cause.
struct ShowErrorsOnPanic<'a>(&'a Nginx);

impl Drop for ShowErrorsOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("---- nginx error.log ----\n{}", self.0.errors().join("\n"));
        }
    }
}

/// Runs every check; panics on the first wrong answer.
pub fn exercise(nginx: &Nginx, expect: &Expect) -> Report {
    let _show = ShowErrorsOnPanic(nginx);
    let agent = agent();

    // GET with params: the query string, method and keep-conn flag arrive.
    let response = get(&agent, &nginx.url("/ka/item?id=42&name=ember%20fcgi"));
    assert_eq!(response.header("X-Query"), "id=42&name=ember%20fcgi");
    assert_eq!(response.header("X-Method"), "GET");
    assert_eq!(response.header("X-Keep-Conn"), "1");
    let params: usize = response.header("X-Params").parse().expect("X-Params");
    assert!(params >= 18, "nginx sends at least its 18 fastcgi_params, got {params}");
    assert_eq!(
        response.body,
        b"STDIN-LENGTH=0\nSTDIN-SHA256=e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n"
    );

    // Keep-alive: sequential requests reuse one connection, nothing new is accepted.
    let counts: Vec<u32> =
        (0..10).map(|i| get(&agent, &nginx.url(&format!("/ka/seq?{i}"))).accepted()).collect();
    assert!(counts.windows(2).all(|w| w[0] == w[1]), "keep-alive connections were not reused: {counts:?}");

    // Without keep-alive: one connection per request, each closed after its response.
    let counts: Vec<u32> = (0..3)
        .map(|i| {
            let response = get(&agent, &nginx.url(&format!("/close/once?{i}")));
            assert_eq!(response.header("X-Keep-Conn"), "0");
            response.accepted()
        })
        .collect();
    assert!(counts.windows(2).all(|w| w[1] == w[0] + 1), "expected one connection per request: {counts:?}");

    // A POST body arrives whole: its length and SHA-256 as the server computed them.
    let sent: Vec<u8> = (0..expect.post_bytes).map(|i| (i * 31 % 251) as u8).collect();
    let start = Instant::now();
    let response = agent
        .post(&nginx.url("/ka/upload"))
        .set("Content-Type", "application/octet-stream")
        .send_bytes(&sent)
        .unwrap_or_else(|e| panic!("POST {} bytes: {e}", sent.len()));
    assert_eq!(response.status(), 200);
    let response = answer(response);
    assert_eq!(response.header("X-Method"), "POST");
    let text = String::from_utf8(response.body).expect("text answer");
    let post_seconds = start.elapsed().as_secs_f64();
    let sha: String = Sha256::digest(&sent).iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(text, format!("STDIN-LENGTH={}\nSTDIN-SHA256={sha}\n", sent.len()), "body length and SHA-256");

    // Two clients at once, each on its own nginx connection and so its own socket.
    std::thread::scope(|scope| {
        for client in 0..2 {
            scope.spawn(move || {
                let agent = self::agent();
                for i in 0..20 {
                    let query = format!("client={client}&i={i}");
                    let response = get(&agent, &nginx.url(&format!("/ka/both?{query}")));
                    assert_eq!(response.header("X-Query"), query);
                }
            });
        }
    });

    // Params over the store's capacity: 431 from the library, and the server goes on.
    let big = "b".repeat(expect.oversized_header);
    match agent.get(&nginx.url("/ka/big")).set("X-Big", &big).call() {
        Err(ureq::Error::Status(431, _)) => {}
        Err(e) => panic!("oversized params: expected 431, got {e}"),
        Ok(r) => panic!("oversized params: expected 431, got {}", r.status()),
    }
    get(&agent, &nginx.url("/ka/after-431"));

    // Informational: sequential keep-alive requests per second.
    let start = Instant::now();
    for i in 0..expect.timed_requests {
        get(&agent, &nginx.url(&format!("/ka/t?{i}")));
    }
    let requests_per_second = f64::from(expect.timed_requests) / start.elapsed().as_secs_f64();

    let errors = nginx.errors();
    assert!(errors.is_empty(), "nginx error.log:\n{}", errors.join("\n"));
    Report { requests_per_second, post_seconds }
}
