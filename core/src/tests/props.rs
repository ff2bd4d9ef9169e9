//! Property tests through the engine: arbitrary input (no panic, no hang, well-formed
//! output), and framing independence of valid conversations.

use std::collections::BTreeMap;
use std::string::String;
use std::sync::mpsc;
use std::time::Duration;
use std::vec;
use std::vec::Vec;

use embedded_io_async::{Read, Write};
use proptest::prelude::*;

use ember_fcgi_testkit as tk;

use super::client::*;
use super::handlers::*;
use super::props_wire::{cut, encode_all};
use crate::wire::body::Role;
use crate::{
    Buffers, Config, ConnectionError, DefaultBuffers, Handler, HandlerError, Request, Response, Roles,
};

/// How long one engine run may take before it counts as a hang (runs take milliseconds).
const HANG_LIMIT: Duration = Duration::from_secs(20);

// ---- running the engine with a hang watchdog --------------------------------------------

type RunResult = (Vec<u8>, Result<(), ConnectionError<core::convert::Infallible>>);

/// A blocking reader: one segment at a time (a read never spans two), in reads whose sizes
/// cycle through `sizes`.
struct Reads {
    segments: Vec<Vec<u8>>,
    sizes: Vec<usize>,
    next: usize,
}

impl embedded_io::ErrorType for Reads {
    type Error = core::convert::Infallible;
}

impl embedded_io::Read for Reads {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
        while self.segments.first().is_some_and(|s| s.is_empty()) {
            self.segments.remove(0);
        }
        let Some(segment) = self.segments.first_mut() else {
            return Ok(0);
        };
        let size = self.sizes[self.next % self.sizes.len()].max(1);
        self.next += 1;
        let n = buf.len().min(size).min(segment.len());
        buf[..n].copy_from_slice(&segment[..n]);
        segment.drain(..n);
        Ok(n)
    }
}

/// Handlers the engine properties run.
#[derive(Clone, Copy, Debug)]
enum Kind {
    Hello,
    Echo,
    StreamEcho,
    BodyCheck,
    WithStderr,
    Fails,
    Big,
}

/// Connection memories the engine properties run.
#[derive(Clone, Copy, Debug)]
enum Mem {
    Default,
    Small,
    Tiny,
    Mux2,
    Mux3,
}

/// Echoes the body to STDOUT as it is read, and for a Filter the data too, with flushes
/// and a STDERR line: exercises interleaved reads, writes and flushes.
struct StreamEcho;

impl Handler for StreamEcho {
    async fn handle(&self, req: &mut Request<'_>, res: &mut Response<'_>) -> Result<(), HandlerError> {
        res.raw_output().write_all(b"Status: 200 OK\r\n\r\n").await?;
        let mut buf = [0u8; 37];
        let mut reads = 0u32;
        loop {
            let n = req.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            res.raw_output().write_all(&buf[..n]).await?;
            reads += 1;
            if reads.is_multiple_of(5) {
                res.raw_output().flush().await?;
            }
        }
        if req.role() == Role::Filter {
            let mut data = req.data();
            loop {
                let n = data.read(&mut buf).await?;
                if n == 0 {
                    break;
                }
                res.raw_output().write_all(&buf[..n]).await?;
            }
        }
        res.stderr().write_all(b"done").await?;
        res.raw_output().flush().await?;
        Ok(())
    }
}

fn run_kind<B: crate::ConnectionBuffers + Default>(kind: Kind, config: &Config, reader: Reads) -> RunResult {
    fn go<B: crate::ConnectionBuffers + Default, H: Handler>(
        h: &H,
        config: &Config,
        reader: Reads,
    ) -> RunResult {
        let mut out = Vec::new();
        let mut buffers = B::default();
        let result = crate::serve_blocking(reader, Sink(&mut out), h, &mut buffers, config, &mut crate::Spin);
        (out, result)
    }
    match kind {
        Kind::Hello => go::<B, _>(&Hello, config, reader),
        Kind::Echo => go::<B, _>(&Echo, config, reader),
        Kind::StreamEcho => go::<B, _>(&StreamEcho, config, reader),
        Kind::BodyCheck => go::<B, _>(&BodyCheck, config, reader),
        Kind::WithStderr => go::<B, _>(&WithStderr, config, reader),
        Kind::Fails => go::<B, _>(&Fails, config, reader),
        Kind::Big => go::<B, _>(&Big { n: 70_000, chunk: 997 }, config, reader),
    }
}

/// Runs the engine on another thread; fails the test if it does not return in time.
fn run_watched(kind: Kind, mem: Mem, config: Config, segments: Vec<Vec<u8>>, sizes: Vec<usize>) -> RunResult {
    let (tx, rx) = mpsc::channel();
    let reader = Reads { segments: segments.clone(), sizes: sizes.clone(), next: 0 };
    std::thread::spawn(move || {
        let r = match mem {
            Mem::Default => run_kind::<DefaultBuffers>(kind, &config, reader),
            Mem::Small => run_kind::<Small>(kind, &config, reader),
            Mem::Tiny => run_kind::<Buffers<16, 128, 128, 1>>(kind, &config, reader),
            Mem::Mux2 => run_kind::<Buffers<64, 256, 512, 2>>(kind, &config, reader),
            Mem::Mux3 => run_kind::<Buffers<16, 128, 256, 3>>(kind, &config, reader),
        };
        let _ = tx.send(r);
    });
    match rx.recv_timeout(HANG_LIMIT) {
        Ok(r) => r,
        Err(mpsc::RecvTimeoutError::Timeout) => {
            panic!("engine hung: {kind:?} {mem:?} {config:?} reads {sizes:?} input {segments:?}")
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            panic!("engine panicked: {kind:?} {mem:?} {config:?} reads {sizes:?} input {segments:?}")
        }
    }
}

/// BEGIN_REQUEST records per id in an input stream, walking it as the engine does.
fn begins_in(input: &[u8]) -> BTreeMap<u16, usize> {
    let mut counts = BTreeMap::new();
    let mut rest = input;
    while rest.len() >= 8 {
        let h = tk::Header::decode(rest[..8].try_into().unwrap());
        if h.kind == tk::BEGIN_REQUEST {
            *counts.entry(h.request_id).or_insert(0) += 1;
        }
        let skip = (8 + usize::from(h.content_len) + usize::from(h.padding_len)).min(rest.len());
        rest = &rest[skip..];
    }
    counts
}

/// Checks that `out` is well-formed output of a FastCGI application: whole records, no
/// padding, only application record types, a sane END_REQUEST body, and per request id a
/// sequence of responses `(STDOUT | STDERR)* END`, where each stream ends at most once, a
/// complete response closes STDOUT and a rejection carries no stream. Returns the records.
fn check_output(out: &[u8], input: &[u8]) -> Vec<Record> {
    let mut rest = out;
    while !rest.is_empty() {
        assert!(rest.len() >= 8, "truncated header in output");
        assert_eq!(rest[6], 0, "output padding");
        assert_eq!(rest[7], 0, "reserved byte");
        let len = usize::from(u16::from_be_bytes([rest[4], rest[5]]));
        assert!(rest.len() >= 8 + len, "truncated record in output");
        rest = &rest[8 + len..];
    }
    let recs = parse(out);
    #[derive(Default)]
    struct Open {
        stdout_closed: bool,
        stderr_closed: bool,
        streams: usize,
    }
    let mut open: BTreeMap<u16, Open> = BTreeMap::new();
    let mut end_count: BTreeMap<u16, usize> = BTreeMap::new();
    for r in &recs {
        match (r.kind, r.id) {
            (10 | 11, 0) => {}
            (10 | 11, id) => panic!("management record for id {id}"),
            (_, 0) => panic!("application record type {} with id 0", r.kind),
            (6 | 7, id) => {
                let o = open.entry(id).or_default();
                let closed = if r.kind == 6 { &mut o.stdout_closed } else { &mut o.stderr_closed };
                assert!(!*closed, "stream {} of {id} after its end", r.kind);
                *closed = r.content.is_empty();
                o.streams += 1;
            }
            (3, id) => {
                assert_eq!(r.content.len(), 8, "END_REQUEST body");
                assert!(r.content[4] <= 3 && r.content[5..] == [0, 0, 0], "END_REQUEST body {:?}", r.content);
                let o = open.remove(&id).unwrap_or_default();
                if r.content[4] == 0 {
                    assert!(o.stdout_closed, "END_REQUEST complete for {id} before the empty STDOUT");
                } else {
                    assert_eq!(o.streams, 0, "a rejected request {id} had output");
                }
                *end_count.entry(id).or_insert(0) += 1;
            }
            (ty, id) => panic!("record type {ty} (id {id}) in output"),
        }
    }
    let begins = begins_in(input);
    for (id, n) in end_count {
        let b = begins.get(&id).copied().unwrap_or(0);
        assert!(n <= b, "{n} END_REQUEST for id {id} but {b} BEGIN_REQUEST");
    }
    recs
}

// ---- arbitrary input --------------------------------------------------------------------

/// A piece of an arbitrary input stream: raw bytes, or a record with arbitrary fields
/// (mostly version 1, so the engine gets past the header).
#[derive(Clone, Debug)]
enum Piece {
    Raw(Vec<u8>),
    Begin { id: u16, role: u16, flags: u8 },
    Record { version: u8, ty: u8, id: u16, content: Vec<u8>, padding: u8 },
}

fn id() -> impl Strategy<Value = u16> {
    prop_oneof![4 => 0u16..4, 1 => Just(65535), 1 => any::<u16>()]
}

fn content() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => proptest::collection::vec(any::<u8>(), 0..40),
        1 => Just(Vec::new()),
        // A BEGIN body: role 0..4, random flags.
        2 => (0u16..5, any::<u8>()).prop_map(|(r, f)| tk::wire::begin_body(r, f).to_vec()),
        // Name-value pairs, well-formed or cut short.
        2 => (proptest::collection::vec((nv_bytes_small(), nv_bytes_small()), 0..4), any::<bool>(), any::<u8>())
            .prop_map(|(pairs, truncate, at)| {
                let (mut bytes, _) = encode_all(&pairs, &[false]);
                if truncate && !bytes.is_empty() {
                    bytes.truncate(usize::from(at) % bytes.len());
                }
                bytes
            }),
        1 => proptest::collection::vec(any::<u8>(), 0..3000),
    ]
}

fn nv_bytes_small() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(b"CONTENT_LENGTH".to_vec()),
        Just(b"FCGI_MAX_CONNS".to_vec()),
        Just(b"FCGI_MPXS_CONNS".to_vec()),
        Just(b"3".to_vec()),
        proptest::collection::vec(any::<u8>(), 0..6),
        proptest::collection::vec(any::<u8>(), 120..140),
    ]
}

fn piece() -> impl Strategy<Value = Piece> {
    prop_oneof![
        1 => proptest::collection::vec(any::<u8>(), 0..24).prop_map(Piece::Raw),
        3 => (id(), prop_oneof![6 => Just(1u16), 1 => 0u16..5, 1 => any::<u16>()], any::<u8>())
            .prop_map(|(id, role, flags)| Piece::Begin { id, role, flags }),
        12 => (
            prop_oneof![20 => Just(1u8), 1 => any::<u8>()],
            prop_oneof![8 => 1u8..=9, 1 => any::<u8>()],
            id(),
            content(),
            prop_oneof![4 => Just(0u8), 2 => 0u8..8, 1 => Just(255u8)],
        )
            .prop_map(|(version, ty, id, content, padding)| Piece::Record { version, ty, id, content, padding }),
    ]
}

fn encode_pieces(pieces: &[Piece]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in pieces {
        match p {
            Piece::Raw(b) => out.extend_from_slice(b),
            Piece::Begin { id, role, flags } => {
                out.extend(record(1, *id, &ember_fcgi_testkit::wire::begin_body(*role, *flags), 0))
            }
            Piece::Record { version, ty, id, content, padding } => {
                let mut r = record(*ty, *id, content, *padding);
                r[0] = *version;
                out.extend(r);
            }
        }
    }
    out
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        Just(Kind::Hello),
        Just(Kind::Echo),
        Just(Kind::StreamEcho),
        Just(Kind::BodyCheck),
        Just(Kind::WithStderr),
        Just(Kind::Fails),
        Just(Kind::Big),
    ]
}

fn mem() -> impl Strategy<Value = Mem> {
    prop_oneof![Just(Mem::Default), Just(Mem::Small), Just(Mem::Tiny), Just(Mem::Mux2), Just(Mem::Mux3)]
}

fn config() -> impl Strategy<Value = Config> {
    prop_oneof![Just(Roles::RESPONDER), Just(Roles::ALL), Just(Roles::RESPONDER | Roles::FILTER)]
        .prop_map(|roles| Config { roles, ..Config::default() })
}

fn read_sizes() -> impl Strategy<Value = Vec<usize>> {
    prop_oneof![
        Just(vec![usize::MAX]),
        Just(vec![1]),
        proptest::collection::vec(1usize..64, 1..6),
        proptest::collection::vec(1usize..5000, 1..4),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_input_never_panics_or_hangs_and_output_is_well_formed(
        pieces in proptest::collection::vec(piece(), 0..24),
        splits in proptest::collection::vec(any::<prop::sample::Index>(), 0..3),
        sizes in read_sizes(),
        kind in kind(),
        mem in mem(),
        config in config(),
    ) {
        let input = encode_pieces(&pieces);
        // Cut the input into a few segments (separate sends of the web server).
        let mut cuts: Vec<usize> = splits.iter().map(|i| i.index(input.len() + 1)).collect();
        cuts.sort_unstable();
        let mut segments = Vec::new();
        let mut from = 0;
        for c in cuts.into_iter().chain([input.len()]) {
            segments.push(input[from..c].to_vec());
            from = c;
        }
        let (out, result) = run_watched(kind, mem, config, segments, sizes);
        prop_assert!(matches!(result, Ok(()) | Err(ConnectionError::Protocol(_))), "{:?}", result);
        check_output(&out, &input);
    }
}

// ---- framing independence of valid conversations ----------------------------------------

/// One request of a valid conversation.
#[derive(Clone, Debug)]
struct Req {
    id: u16,
    params: Vec<(Vec<u8>, Vec<u8>)>,
    body: Vec<u8>,
    keep_conn: bool,
    /// Sizes that cut the params and the body into records.
    params_cuts: Vec<usize>,
    body_cuts: Vec<usize>,
    /// Padding of the records, cycled.
    padding: Vec<u8>,
    /// Where GET_VALUES queries go: after the record with this index (of this request).
    get_values_at: Vec<prop::sample::Index>,
}

fn param_name() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(b"REQUEST_METHOD".to_vec()),
        Just(b"QUERY_STRING".to_vec()),
        Just(b"HTTP_USER_AGENT".to_vec()),
        "[A-Z_]{1,20}".prop_map(String::into_bytes),
        proptest::collection::vec(any::<u8>(), 0..200),
    ]
}

fn param_value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => proptest::collection::vec(any::<u8>(), 0..40),
        1 => proptest::collection::vec(any::<u8>(), 120..300),
        // Params that overflow the store (431 path) now and then.
        1 => proptest::collection::vec(any::<u8>(), 1000..3000),
    ]
}

fn req() -> impl Strategy<Value = Req> {
    (
        prop_oneof![4 => Just(1u16), 1 => any::<u16>().prop_map(|i| i.max(1))],
        proptest::collection::vec((param_name(), param_value()), 0..12),
        prop_oneof![
            2 => proptest::collection::vec(any::<u8>(), 0..200),
            1 => proptest::collection::vec(any::<u8>(), 0..9000),
        ],
        any::<bool>(),
        proptest::collection::vec(1usize..400, 1..5),
        proptest::collection::vec(1usize..3000, 1..5),
        proptest::collection::vec(prop_oneof![3 => Just(0u8), 2 => any::<u8>()], 1..5),
        proptest::collection::vec(any::<prop::sample::Index>(), 0..3),
    )
        .prop_map(|(id, params, body, with_length, params_cuts, body_cuts, padding, get_values_at)| {
            let mut params = params;
            if with_length {
                params.push((b"CONTENT_LENGTH".to_vec(), std::format!("{}", body.len()).into_bytes()));
            }
            Req { id, params, body, keep_conn: true, params_cuts, body_cuts, padding, get_values_at }
        })
}

fn pairs_ref(params: &[(Vec<u8>, Vec<u8>)]) -> Vec<(&[u8], &[u8])> {
    params.iter().map(|(n, v)| (&n[..], &v[..])).collect()
}

/// The records of `r` as nginx sends them: one PARAMS record, one STDIN record, no padding.
fn plain(r: &Req) -> Vec<u8> {
    request(r.id, r.keep_conn, &pairs_ref(&r.params), &r.body)
}

/// The records of `r` cut and padded as `r` says, with `query` after the chosen records.
fn framed(r: &Req, query: &[u8]) -> (Vec<u8>, usize) {
    let mut records = vec![begin(r.id, RESPONDER, r.keep_conn)];
    let params = nv(&pairs_ref(&r.params));
    for piece in cut(&params, &r.params_cuts) {
        records.push(record(4, r.id, piece, 0));
    }
    let params_end = records.len();
    records.push(record(4, r.id, b"", 0));
    for piece in cut(&r.body, &r.body_cuts) {
        records.push(record(5, r.id, piece, 0));
    }
    records.push(record(5, r.id, b"", 0));
    // Re-pad every record.
    for (i, rec) in records.iter_mut().enumerate() {
        let padding = r.padding[i % r.padding.len()];
        rec.truncate(8 + usize::from(u16::from_be_bytes([rec[4], rec[5]])));
        rec[6] = padding;
        rec.extend(std::iter::repeat_n(0u8, usize::from(padding)));
    }
    // Without FCGI_KEEP_CONN the connection closes after END_REQUEST, and a handler may
    // finish before reading STDIN, so a query after PARAMS ended may legitimately go
    // unanswered: put queries before the empty PARAMS record then.
    let places = if r.keep_conn { records.len() } else { params_end };
    let mut after: Vec<usize> = r.get_values_at.iter().map(|i| i.index(places)).collect();
    after.sort_unstable();
    let mut out = Vec::new();
    for (i, rec) in records.iter().enumerate() {
        out.extend_from_slice(rec);
        for _ in after.iter().filter(|&&a| a == i) {
            out.extend_from_slice(query);
        }
    }
    (out, after.len())
}

/// Output reduced to what must not depend on framing: the records with adjacent non-empty
/// records of the same stream merged (a GET_VALUES reply may seal a STDOUT record early),
/// and GET_VALUES_RESULT records taken out and counted.
fn logical(out: &[u8]) -> (Vec<Record>, Vec<Record>) {
    let mut recs: Vec<Record> = Vec::new();
    let mut values = Vec::new();
    for r in parse(out) {
        if r.kind == 10 {
            values.push(r);
            continue;
        }
        if let Some(last) = recs.last_mut()
            && last.kind == r.kind
            && last.id == r.id
            && matches!(r.kind, 6 | 7)
            && !last.content.is_empty()
            && !r.content.is_empty()
        {
            last.content.extend_from_slice(&r.content);
            continue;
        }
        recs.push(r);
    }
    (recs, values)
}

/// Types, ids and content lengths of the records in `out`, for failure messages.
fn summary(out: &[u8]) -> Vec<(u8, u16, usize)> {
    parse(out).iter().map(|r| (r.kind, r.id, r.content.len())).collect()
}

fn conversation_kind() -> impl Strategy<Value = Kind> {
    prop_oneof![Just(Kind::Echo), Just(Kind::StreamEcho), Just(Kind::Hello), Just(Kind::BodyCheck)]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

    #[test]
    fn output_does_not_depend_on_framing(
        reqs in proptest::collection::vec(req(), 1..4),
        last_keeps in any::<bool>(),
        query_names in proptest::collection::vec(
            prop_oneof![
                Just(b"FCGI_MAX_CONNS".to_vec()),
                Just(b"FCGI_MAX_REQS".to_vec()),
                Just(b"FCGI_MPXS_CONNS".to_vec()),
                Just(b"OTHER".to_vec()),
            ],
            0..4,
        ),
        query_padding in any::<u8>(),
        sizes in read_sizes(),
        kind in conversation_kind(),
        mem in prop_oneof![Just(Mem::Default), Just(Mem::Small), Just(Mem::Tiny)],
    ) {
        let mut reqs = reqs;
        if let Some(last) = reqs.last_mut() {
            last.keep_conn = last_keeps;
        }
        let config = Config::default();
        // Reference: nginx framing, each request one send, read whole.
        let plain_segments: Vec<Vec<u8>> = reqs.iter().map(plain).collect();
        let plain_input = plain_segments.concat();
        let (expected, result) = run_watched(kind, mem, config, plain_segments, vec![usize::MAX]);
        prop_assert!(result.is_ok(), "{:?}", result);
        check_output(&expected, &plain_input);
        prop_assert_eq!(crate::tests::client::ends(&parse(&expected)).len(), reqs.len());

        let pairs: Vec<(&[u8], &[u8])> = query_names.iter().map(|n| (&n[..], &b""[..])).collect();
        let query = record(9, 0, &nv(&pairs), query_padding);
        let mut queries = 0;
        let mut segments = Vec::new();
        for r in &reqs {
            let (bytes, n) = framed(r, &query);
            queries += n;
            segments.push(bytes);
        }
        let input = segments.concat();
        let (out, result) = run_watched(kind, mem, config, segments, sizes);
        prop_assert!(result.is_ok(), "{:?}", result);
        check_output(&out, &input);
        // Flushes (StreamEcho flushes every 5th read) and GET_VALUES replies seal the open
        // STDOUT record, so only then may record boundaries differ.
        if queries == 0 && !matches!(kind, Kind::StreamEcho) {
            prop_assert!(out == expected, "framing changed the output bytes");
        } else {
            let (recs, values) = logical(&out);
            let (expected_recs, none) = logical(&expected);
            prop_assert!(none.is_empty());
            prop_assert_eq!(recs, expected_recs);
            prop_assert_eq!(values.len(), queries, "{:?} {:?}", summary(&out), summary(&expected));
            let (alone, _) = run_watched(Kind::Hello, mem, config, vec![query.clone()], vec![usize::MAX]);
            for v in &values {
                prop_assert_eq!(record(v.kind, v.id, &v.content, 0), alone.clone());
            }
        }
    }
}
