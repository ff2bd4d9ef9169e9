//! Incremental validation of one FastCGI response, fed with decoder events.

use ember_fcgi_testkit::decode::Event;
use ember_fcgi_testkit::{END_REQUEST, REQUEST_COMPLETE, STDERR, STDOUT, VERSION_1};

use super::request::REQUEST_ID;

/// How many stdout bytes to keep for the CGI head and body-prefix checks.
const CAPTURE: usize = 16 * 1024;

/// Per-connection response state; reused across requests without reallocating.
pub struct Check {
    kind: u8,
    stdout_closed: bool,
    stdout: Vec<u8>,
    end: [u8; 8],
    end_len: usize,
}

impl Default for Check {
    fn default() -> Self {
        Self::new()
    }
}

impl Check {
    pub fn new() -> Self {
        Check { kind: 0, stdout_closed: false, stdout: Vec::with_capacity(CAPTURE), end: [0; 8], end_len: 0 }
    }

    /// Forget the previous response.
    pub fn reset(&mut self) {
        self.kind = 0;
        self.stdout_closed = false;
        self.stdout.clear();
        self.end_len = 0;
    }

    /// Feed one event: `Ok(true)` once a valid END_REQUEST completes the response.
    pub fn on_event(&mut self, ev: Event<'_>, prefix: Option<&[u8]>) -> Result<bool, &'static str> {
        match ev {
            Event::Header(h) => {
                if h.version != VERSION_1 {
                    return Err("bad record version");
                }
                if h.request_id != REQUEST_ID {
                    return Err("wrong request id");
                }
                match h.kind {
                    STDOUT if self.stdout_closed => return Err("STDOUT after end of stream"),
                    STDOUT => self.stdout_closed = h.content_len == 0,
                    STDERR => {}
                    END_REQUEST if h.content_len != 8 => return Err("END_REQUEST length is not 8"),
                    END_REQUEST if !self.stdout_closed => {
                        return Err("END_REQUEST before empty STDOUT");
                    }
                    END_REQUEST => {}
                    _ => return Err("unexpected record type"),
                }
                self.kind = h.kind;
            }
            Event::Content(c) => match self.kind {
                STDOUT => {
                    let room = (CAPTURE + prefix.map_or(0, <[u8]>::len)).saturating_sub(self.stdout.len());
                    self.stdout.extend_from_slice(&c[..c.len().min(room)]);
                }
                END_REQUEST => {
                    self.end[self.end_len..self.end_len + c.len()].copy_from_slice(c);
                    self.end_len += c.len();
                }
                _ => {}
            },
            Event::End if self.kind == END_REQUEST => {
                if self.end[4] != REQUEST_COMPLETE {
                    return Err("protocolStatus is not REQUEST_COMPLETE");
                }
                let body_at = head_end(&self.stdout).ok_or("no CGI head in STDOUT")?;
                if let Some(p) = prefix {
                    if !self.stdout[body_at..].starts_with(p) {
                        return Err("body does not start with the expected prefix");
                    }
                }
                return Ok(true);
            }
            Event::End => {}
        }
        Ok(false)
    }
}

/// Offset just past the blank line ending a CGI head (`\n\n` or `\n\r\n`).
fn head_end(s: &[u8]) -> Option<usize> {
    s.iter().enumerate().find_map(|(i, &b)| match (b, s.get(i + 1), s.get(i + 2)) {
        (b'\n', Some(b'\n'), _) => Some(i + 2),
        (b'\n', Some(b'\r'), Some(b'\n')) => Some(i + 3),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ember_fcgi_testkit::decode::Decoder;
    use ember_fcgi_testkit::{end_body, push_record};

    fn check(bytes: &[u8], prefix: Option<&[u8]>) -> Result<bool, &'static str> {
        let mut c = Check::new();
        let mut d = Decoder::new();
        let mut input = bytes;
        let mut done = false;
        while let Some(ev) = d.next(&mut input) {
            assert!(!done, "events after completion");
            done = c.on_event(ev, prefix)?;
        }
        Ok(done)
    }

    fn response(stdout: &[&[u8]], status: u8) -> Vec<u8> {
        let mut v = Vec::new();
        for s in stdout {
            push_record(&mut v, STDOUT, 1, s);
        }
        push_record(&mut v, STDERR, 1, b"ignored");
        push_record(&mut v, STDOUT, 1, b"");
        push_record(&mut v, END_REQUEST, 1, &end_body(0, status));
        v
    }

    #[test]
    fn valid_responses() {
        let ok = response(&[b"Status: 200 OK\r\nContent-Type: text/plain\r\n", b"\r\nHello"], 0);
        assert_eq!(check(&ok, Some(b"Hell")), Ok(true));
        assert_eq!(check(&response(&[b"Content-Type: x\n\nbody"], 0), Some(b"body")), Ok(true));
        assert_eq!(check(&ok[..ok.len() - 1], None), Ok(false), "incomplete");
    }

    #[test]
    fn invalid_responses() {
        assert_eq!(
            check(&response(&[b"A: b\r\n\r\nHello"], 0), Some(b"Bye")),
            Err("body does not start with the expected prefix")
        );
        assert_eq!(check(&response(&[b"no head"], 0), None), Err("no CGI head in STDOUT"));
        assert_eq!(check(&response(&[b"A: b\n\n"], 1), None), Err("protocolStatus is not REQUEST_COMPLETE"));
        let mut v = Vec::new();
        push_record(&mut v, END_REQUEST, 1, &end_body(0, 0));
        assert_eq!(check(&v, None), Err("END_REQUEST before empty STDOUT"));
        let mut v = Vec::new();
        push_record(&mut v, STDOUT, 2, b"x");
        assert_eq!(check(&v, None), Err("wrong request id"));
    }
}
