//! Responses assembled from records, checking the framing rules an application must keep
//! (spec sections 5.3 and 6): STDOUT and STDERR end with one empty record and nothing
//! follows it, END_REQUEST has an 8-byte body, comes once, after STDOUT is closed, and
//! nothing of the request follows it.

use std::fmt;

use crate::wire::{END_REQUEST, REQUEST_COMPLETE, STDERR, STDOUT};

/// One record received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub kind: u8,
    pub id: u16,
    pub content: Vec<u8>,
}

/// What the application answered to one request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reply {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// Non-empty STDOUT records (a flushed write shows up as a record of its own).
    pub stdout_records: usize,
    pub app_status: u32,
    pub protocol_status: u8,
}

impl Reply {
    /// The body after the CGI head (everything when there is no head).
    pub fn body(&self) -> &[u8] {
        let at = self.stdout.windows(4).position(|w| w == b"\r\n\r\n").map_or(0, |p| p + 4);
        &self.stdout[at..]
    }

    pub fn body_str(&self) -> String {
        String::from_utf8_lossy(self.body()).into_owned()
    }

    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// The CGI head and the body, as text; panics without a head.
    pub fn split(&self) -> (String, String) {
        let text = self.stdout_text();
        let (head, body) = text.split_once("\r\n\r\n").expect("no CGI head in STDOUT");
        (head.to_owned(), body.to_owned())
    }

    /// The `Status:` code of the CGI head (200 when absent).
    pub fn status(&self) -> u16 {
        let head = String::from_utf8_lossy(&self.stdout);
        head.lines()
            .take_while(|l| !l.is_empty())
            .find_map(|l| l.strip_prefix("Status: "))
            .and_then(|s| s.get(..3))
            .map_or(200, |s| s.parse().expect("bad status"))
    }
}

/// A broken framing rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Violation {
    /// A record of a type an application does not send for a request.
    UnexpectedType(Record),
    /// A STDOUT or STDERR record after that stream's empty record.
    AfterStreamEnd(Record),
    /// An END_REQUEST whose body is not 8 bytes.
    EndBody(Record),
    /// REQUEST_COMPLETE before the empty STDOUT record (or, when STDERR was used, STDERR's).
    EndBeforeStreamEnd(Record),
    /// A record of the request after its END_REQUEST.
    AfterEnd(Record),
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnexpectedType(r) => write!(f, "record type {} for request {}: {r:?}", r.kind, r.id),
            Self::AfterStreamEnd(r) => write!(f, "stream record after the stream's end: {r:?}"),
            Self::EndBody(r) => write!(f, "END_REQUEST body of {} bytes, not 8: {r:?}", r.content.len()),
            Self::EndBeforeStreamEnd(r) => write!(f, "END_REQUEST before the streams were closed: {r:?}"),
            Self::AfterEnd(r) => write!(f, "record after END_REQUEST: {r:?}"),
        }
    }
}

impl std::error::Error for Violation {}

/// Builds one request's [`Reply`] from its records, checking the framing.
#[derive(Clone, Debug, Default)]
pub struct ReplyBuilder {
    reply: Reply,
    stdout_closed: bool,
    stderr_closed: bool,
    done: bool,
}

impl ReplyBuilder {
    /// Takes the next record of the request; `Ok(true)` once END_REQUEST arrived.
    pub fn add(&mut self, r: Record) -> Result<bool, Violation> {
        if self.done {
            return Err(Violation::AfterEnd(r));
        }
        match r.kind {
            STDOUT if self.stdout_closed => return Err(Violation::AfterStreamEnd(r)),
            STDERR if self.stderr_closed => return Err(Violation::AfterStreamEnd(r)),
            STDOUT if r.content.is_empty() => self.stdout_closed = true,
            STDERR if r.content.is_empty() => self.stderr_closed = true,
            STDOUT => {
                self.reply.stdout.extend_from_slice(&r.content);
                self.reply.stdout_records += 1;
            }
            STDERR => self.reply.stderr.extend_from_slice(&r.content),
            END_REQUEST => {
                let Ok(c) = <[u8; 8]>::try_from(r.content.as_slice()) else {
                    return Err(Violation::EndBody(r));
                };
                self.reply.app_status = u32::from_be_bytes([c[0], c[1], c[2], c[3]]);
                self.reply.protocol_status = c[4];
                let streams_open =
                    !self.stdout_closed || (!self.reply.stderr.is_empty() && !self.stderr_closed);
                if self.reply.protocol_status == REQUEST_COMPLETE && streams_open {
                    return Err(Violation::EndBeforeStreamEnd(r));
                }
                self.done = true;
            }
            _ => return Err(Violation::UnexpectedType(r)),
        }
        Ok(self.done)
    }

    pub fn is_done(&self) -> bool {
        self.done
    }

    /// The reply so far.
    pub fn reply(&self) -> &Reply {
        &self.reply
    }

    pub fn into_reply(self) -> Reply {
        self.reply
    }
}

/// Reads the reply of request `id` from a stream of records: management records (id 0)
/// are set apart; a record of another request or a broken framing rule fails the test.
#[derive(Clone, Debug)]
pub struct ReplyReader {
    id: u16,
    builder: ReplyBuilder,
}

impl ReplyReader {
    pub fn new(id: u16) -> Self {
        Self { id, builder: ReplyBuilder::default() }
    }

    /// Takes the next record; the reply once its END_REQUEST arrived.
    pub fn take(&mut self, r: Record, management: &mut Vec<Record>) -> Option<Reply> {
        if r.id == 0 {
            management.push(r);
            return None;
        }
        assert_eq!(r.id, self.id, "record for another request: {r:?}");
        let done = self.builder.add(r).unwrap_or_else(|e| panic!("request {}: {e}", self.id));
        done.then(|| std::mem::take(&mut self.builder).into_reply())
    }
}

/// What a whole output stream answered.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Replies {
    /// By request id, in order of first appearance (a request may still be open).
    pub by_id: Vec<(u16, Reply)>,
    /// Management records (id 0).
    pub management: Vec<Record>,
}

/// The replies in a whole output stream, with the framing checked.
pub fn replies(records: &[Record]) -> Result<Replies, Violation> {
    let mut open: Vec<(u16, ReplyBuilder)> = Vec::new();
    let mut management = Vec::new();
    for r in records {
        if r.id == 0 {
            management.push(r.clone());
            continue;
        }
        let k = match open.iter().position(|(id, _)| *id == r.id) {
            Some(k) => k,
            None => {
                open.push((r.id, ReplyBuilder::default()));
                open.len() - 1
            }
        };
        open[k].1.add(r.clone())?;
    }
    Ok(Replies { by_id: open.into_iter().map(|(id, b)| (id, b.into_reply())).collect(), management })
}

/// The concatenated content of the records of type `kind` for `id`.
pub fn stream(records: &[Record], kind: u8, id: u16) -> Vec<u8> {
    records.iter().filter(|r| r.kind == kind && r.id == id).flat_map(|r| r.content.iter().copied()).collect()
}

/// The END_REQUEST records as (id, app status, protocol status).
pub fn ends(records: &[Record]) -> Vec<(u16, u32, u8)> {
    records
        .iter()
        .filter(|r| r.kind == END_REQUEST)
        .map(|r| {
            let c = &r.content;
            assert_eq!(c.len(), 8, "END_REQUEST body: {r:?}");
            (r.id, u32::from_be_bytes([c[0], c[1], c[2], c[3]]), c[4])
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::end_body;

    fn rec(kind: u8, content: &[u8]) -> Record {
        Record { kind, id: 1, content: content.to_vec() }
    }

    #[test]
    fn assembles_and_checks() {
        let mut b = ReplyBuilder::default();
        assert_eq!(b.add(rec(STDOUT, b"Status: 404\r\n\r\nno")), Ok(false));
        assert_eq!(b.add(rec(STDERR, b"w")), Ok(false));
        assert_eq!(b.add(rec(STDERR, b"")), Ok(false));
        assert_eq!(b.add(rec(STDOUT, b"")), Ok(false));
        assert!(matches!(b.add(rec(STDOUT, b"x")), Err(Violation::AfterStreamEnd(_))));
        assert_eq!(b.add(rec(END_REQUEST, &end_body(7, 0))), Ok(true));
        assert!(matches!(b.add(rec(STDOUT, b"")), Err(Violation::AfterEnd(_))));
        let reply = b.into_reply();
        assert_eq!(
            (reply.status(), reply.body(), reply.app_status, reply.stdout_records),
            (404, &b"no"[..], 7, 1)
        );

        let mut early = ReplyBuilder::default();
        early.add(rec(STDOUT, b"x")).unwrap();
        assert!(matches!(
            early.add(rec(END_REQUEST, &end_body(0, 0))),
            Err(Violation::EndBeforeStreamEnd(_))
        ));
        let mut rejected = ReplyBuilder::default();
        assert_eq!(rejected.add(rec(END_REQUEST, &end_body(0, 3))), Ok(true));
        assert!(matches!(ReplyBuilder::default().add(rec(END_REQUEST, &[0; 5])), Err(Violation::EndBody(_))));
        assert!(matches!(ReplyBuilder::default().add(rec(9, b"")), Err(Violation::UnexpectedType(_))));
    }

    #[test]
    fn replies_of_a_whole_stream() {
        let mut bytes = crate::wire::record(crate::wire::GET_VALUES_RESULT, 0, b"");
        for id in [2, 1] {
            bytes.extend(crate::wire::record(STDOUT, id, b"x"));
        }
        for id in [1, 2] {
            bytes.extend(crate::wire::record(STDOUT, id, b""));
            bytes.extend(crate::wire::record(END_REQUEST, id, &end_body(u32::from(id), 0)));
        }
        let all = replies(&crate::decode::parse(&bytes).unwrap()).unwrap();
        assert_eq!(all.management.len(), 1);
        let ids: Vec<(u16, u32)> = all.by_id.iter().map(|(id, r)| (*id, r.app_status)).collect();
        assert_eq!(ids, [(2, 2), (1, 1)]);
        assert_eq!(stream(&crate::decode::parse(&bytes).unwrap(), STDOUT, 1), b"x");
        assert_eq!(ends(&crate::decode::parse(&bytes).unwrap()), [(1, 1, 0), (2, 2, 0)]);
        bytes.extend(crate::wire::record(STDOUT, 1, b"late"));
        assert!(matches!(replies(&crate::decode::parse(&bytes).unwrap()), Err(Violation::AfterEnd(_))));
    }
}
