//! Property tests of the wire codec and the params store: name-value pairs, record headers
//! and bodies round trip through the spec bytes; pairs that fit the store come back whole.

use std::vec;
use std::vec::Vec;

use proptest::prelude::*;

use ember_fcgi_testkit::{self as tk, nv::LenForm};

use super::client::*;
use crate::wire::body::{BeginRequestBody, EndRequestBody, ProtocolStatus, Role};
use crate::wire::header::{Header, RecordType};
use crate::wire::nv::{NvDecoder, NvSink, encode_pair, encoded_len};

// ---- name-value codec ------------------------------------------------------------------

/// A decoded pair: announced name and value lengths, the bytes, and whether it ended.
type Pair = (u32, u32, Vec<u8>, Vec<u8>, bool);

/// Records every sink call, merging consecutive name or value pieces.
#[derive(Default, Debug, PartialEq, Eq)]
struct Pairs {
    pairs: Vec<Pair>,
}

impl NvSink for Pairs {
    fn start(&mut self, n: u32, v: u32) {
        if let Some(last) = self.pairs.last() {
            assert!(last.4, "start before the previous pair ended");
        }
        self.pairs.push((n, v, Vec::new(), Vec::new(), false));
    }
    fn name(&mut self, b: &[u8]) {
        let p = self.pairs.last_mut().expect("name before start");
        assert!(p.3.is_empty() && !p.4, "name after value or end");
        p.2.extend_from_slice(b);
        assert!(p.2.len() <= p.0 as usize, "more name bytes than announced");
    }
    fn value(&mut self, b: &[u8]) {
        let p = self.pairs.last_mut().expect("value before start");
        assert!(p.2.len() == p.0 as usize && !p.4, "value before the name is complete");
        p.3.extend_from_slice(b);
        assert!(p.3.len() <= p.1 as usize, "more value bytes than announced");
    }
    fn end(&mut self) {
        let p = self.pairs.last_mut().expect("end before start");
        assert!(p.2.len() == p.0 as usize && p.3.len() == p.1 as usize && !p.4);
        p.4 = true;
    }
}

fn nv_len() -> impl Strategy<Value = usize> {
    prop_oneof![0usize..=3, Just(127), Just(128), Just(129), 0usize..300, 0usize..4096]
}

fn nv_bytes() -> impl Strategy<Value = Vec<u8>> {
    nv_len().prop_flat_map(|n| proptest::collection::vec(any::<u8>(), n))
}

fn nv_pairs() -> impl Strategy<Value = Vec<(Vec<u8>, Vec<u8>)>> {
    proptest::collection::vec((nv_bytes(), nv_bytes()), 0..6)
}

/// Cuts `bytes` into pieces whose sizes cycle through `sizes` (each 1 or more).
pub(super) fn cut<'a>(bytes: &'a [u8], sizes: &[usize]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut rest = bytes;
    let mut i = 0;
    while !rest.is_empty() {
        let n = sizes[i % sizes.len()].clamp(1, rest.len());
        out.push(&rest[..n]);
        rest = &rest[n..];
        i += 1;
    }
    out
}

/// The pairs encoded by the independent testkit, each length in the 4-byte form where
/// `long` (cycled) says so, else the shortest; and the offsets where pairs end.
pub(super) fn encode_all(pairs: &[(Vec<u8>, Vec<u8>)], long: &[bool]) -> (Vec<u8>, Vec<usize>) {
    let form = |k: usize| if long[k % long.len()] { LenForm::Long } else { LenForm::Shortest };
    let mut out = Vec::new();
    let mut boundaries = vec![0];
    for (k, (n, v)) in pairs.iter().enumerate() {
        tk::nv::push_nv_as(&mut out, n, v, form(2 * k), form(2 * k + 1));
        boundaries.push(out.len());
    }
    (out, boundaries)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn nv_round_trip_in_any_chunking(
        pairs in nv_pairs(),
        sizes in proptest::collection::vec(1usize..700, 1..8),
        long in proptest::collection::vec(any::<bool>(), 1..5),
    ) {
        let (bytes, _) = encode_all(&pairs, &long);
        let mut d = NvDecoder::new();
        let mut got = Pairs::default();
        for piece in cut(&bytes, &sizes) {
            d.feed(piece, &mut got);
        }
        prop_assert_eq!(d.finish(), Ok(()));
        prop_assert_eq!(got.pairs.len(), pairs.len());
        for ((n_len, v_len, n, v, ended), (en, ev)) in got.pairs.iter().zip(&pairs) {
            prop_assert!(*ended);
            prop_assert_eq!((*n_len as usize, *v_len as usize), (en.len(), ev.len()));
            prop_assert_eq!(n, en);
            prop_assert_eq!(v, ev);
        }
    }

    #[test]
    fn nv_prefix_is_truncated_unless_on_a_pair_boundary(pairs in nv_pairs(), at in any::<prop::sample::Index>()) {
        let (bytes, boundaries) = encode_all(&pairs, &[false, true]);
        let at = at.index(bytes.len() + 1);
        let mut d = NvDecoder::new();
        let mut got = Pairs::default();
        d.feed(&bytes[..at], &mut got);
        let on_boundary = boundaries.contains(&at);
        prop_assert_eq!(d.finish().is_ok(), on_boundary);
        // `finish` resets: the decoder decodes a fresh stream afterwards.
        let mut again = Pairs::default();
        d.feed(&bytes, &mut again);
        prop_assert_eq!(d.finish(), Ok(()));
        prop_assert_eq!(again.pairs.len(), pairs.len());
    }

    #[test]
    fn nv_decoder_never_panics_on_garbage(
        bytes in proptest::collection::vec(any::<u8>(), 0..600),
        sizes in proptest::collection::vec(1usize..50, 1..6),
    ) {
        let mut whole = Pairs::default();
        let mut d = NvDecoder::new();
        d.feed(&bytes, &mut whole);
        let whole_ok = d.finish().is_ok();
        let mut chunked = Pairs::default();
        for piece in cut(&bytes, &sizes) {
            d.feed(piece, &mut chunked);
        }
        prop_assert_eq!(d.finish().is_ok(), whole_ok);
        prop_assert_eq!(chunked, whole);
    }

    #[test]
    fn encode_pair_writes_the_spec_bytes(pairs in nv_pairs()) {
        for (n, v) in &pairs {
            let mut expected = Vec::new();
            tk::nv::push_nv(&mut expected, n, v);
            let mut buf = vec![0u8; encoded_len(n, v)];
            prop_assert_eq!(buf.len(), expected.len());
            prop_assert_eq!(encode_pair(n, v, &mut buf), Ok(buf.len()));
            prop_assert_eq!(&buf, &expected);
        }
    }

    #[test]
    fn header_encode_parse_match_the_spec_bytes(
        ty in any::<u8>(), id in any::<u16>(), len in any::<u16>(), padding in any::<u8>(),
    ) {
        let mut h = Header::new(RecordType::from_u8(ty), id, len);
        h.padding_length = padding;
        let spec = tk::Header { version: 1, kind: ty, request_id: id, content_len: len, padding_len: padding }.encode();
        prop_assert_eq!(h.encode(), spec);
        prop_assert_eq!(Header::parse(&spec), h);
    }

    #[test]
    fn header_parse_encode_round_trip(bytes in any::<[u8; 8]>()) {
        let h = Header::parse(&bytes);
        let mut expected = bytes;
        expected[7] = 0;
        prop_assert_eq!(h.encode(), expected);
        prop_assert_eq!(h.is_management(), bytes[2] == 0 && bytes[3] == 0);
    }

    #[test]
    fn begin_body_round_trips(role in any::<u16>(), flags in any::<u8>(), reserved in any::<[u8; 5]>()) {
        let body = BeginRequestBody { role: Role::from_u16(role), flags };
        let bytes = tk::wire::begin_body(role, flags);
        prop_assert_eq!(body.encode(), bytes);
        prop_assert_eq!(BeginRequestBody::parse(&bytes), body);
        let mut wire = bytes;
        wire[3..].copy_from_slice(&reserved);
        prop_assert_eq!(BeginRequestBody::parse(&wire), body, "reserved bytes are ignored");
        prop_assert_eq!(body.keep_conn(), flags & 1 == 1);
    }

    #[test]
    fn end_body_round_trips(app_status in any::<u32>(), status in 0u8..4, id in any::<u16>()) {
        let protocol_status = [
            ProtocolStatus::RequestComplete,
            ProtocolStatus::CantMpxConn,
            ProtocolStatus::Overloaded,
            ProtocolStatus::UnknownRole,
        ][usize::from(status)];
        let end = EndRequestBody { app_status, protocol_status };
        let rec = end.record(id);
        prop_assert_eq!(&rec[..], &record(tk::END_REQUEST, id, &tk::wire::end_body(app_status, status), 0)[..]);
        let recs = parse(&rec);
        prop_assert_eq!(recs.len(), 1);
        prop_assert_eq!((recs[0].kind, recs[0].id), (3, id));
        let c = &recs[0].content;
        prop_assert_eq!(u32::from_be_bytes([c[0], c[1], c[2], c[3]]), app_status);
        prop_assert_eq!(c[4], status);
        prop_assert_eq!(&c[5..], &[0u8; 3][..]);
    }
}

// ---- params store ----------------------------------------------------------------------

/// Name and value lengths for the params store: small, around 128, and past 65535 (which a
/// 16-bit length could not hold).
fn arena_len() -> impl Strategy<Value = usize> {
    prop_oneof![6 => nv_len(), 1 => 65_530usize..65_545, 1 => 65_536usize..70_001]
}

fn arena_pairs() -> impl Strategy<Value = Vec<(Vec<u8>, Vec<u8>)>> {
    let bytes = || arena_len().prop_flat_map(|n| proptest::collection::vec(any::<u8>(), n));
    // Now and then a CONTENT_LENGTH, with digits or not: the store notes it as it stores it.
    let name = prop_oneof![6 => bytes(), 1 => Just(b"CONTENT_LENGTH".to_vec())];
    let value = prop_oneof![6 => bytes(), 1 => proptest::collection::vec(b'0'..=b'9', 1..22)];
    proptest::collection::vec((name, value), 0..8)
}

/// Bytes a pair takes in the params store: its lengths as §3.4 encodes them (one byte
/// below 128, else four), then its name and value.
fn stored_len(name: &[u8], value: &[u8]) -> usize {
    let len = |n: usize| if n < 128 { 1 } else { 4 };
    len(name.len()) + len(value.len()) + name.len() + value.len()
}

/// Pairs as owned name and value bytes.
type OwnedPairs = Vec<(Vec<u8>, Vec<u8>)>;

/// Feeds the testkit's encoding of `pairs` (lengths in the forms `long` picks), cut into
/// pieces of `sizes`, into a params store of `capacity` bytes; returns whether it
/// overflowed and the pairs it holds.
fn through_arena(
    pairs: &[(Vec<u8>, Vec<u8>)],
    long: &[bool],
    sizes: &[usize],
    capacity: usize,
) -> (bool, OwnedPairs) {
    let (stream, _) = encode_all(pairs, long);
    let mut bytes = vec![0u8; capacity];
    let mut arena = crate::params::ParamArena::over(&mut bytes[..]);
    let a: &mut crate::params::Arena<'_> = &mut arena;
    let mut d = NvDecoder::new();
    for piece in cut(&stream, sizes) {
        d.feed(piece, &mut a.writer());
    }
    assert_eq!(d.finish(), Ok(()));
    let params = a.params();
    assert_eq!(params.len(), params.iter().count());
    // Whatever the split and the path each pair took: the kept pairs in their shortest
    // encoding, and the CONTENT_LENGTH a scan of them finds.
    let mut canonical = Vec::new();
    for (n, v) in params.iter() {
        tk::nv::push_nv(&mut canonical, n, v);
    }
    assert!(params.encoded() == &canonical[..], "stored bytes are not the shortest encoding");
    assert_eq!(a.content_length(), params.content_length());
    (a.overflowed(), params.iter().map(|(n, v)| (n.to_vec(), v.to_vec())).collect())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn params_that_fit_round_trip_through_the_store(
        pairs in arena_pairs(),
        long in proptest::collection::vec(any::<bool>(), 1..5),
        sizes in proptest::collection::vec(prop_oneof![1usize..700, 60_000usize..200_000], 1..8),
        slack in prop_oneof![3 => Just(0usize), 1 => 0usize..10],
    ) {
        let need: usize = pairs.iter().map(|(n, v)| stored_len(n, v)).sum();
        let (overflowed, got) = through_arena(&pairs, &long, &sizes, need + slack);
        prop_assert!(!overflowed);
        prop_assert!(got == pairs, "pairs differ");
    }

    #[test]
    fn params_over_the_store_keep_the_prefix_that_fits(
        pairs in arena_pairs(),
        long in proptest::collection::vec(any::<bool>(), 1..5),
        sizes in proptest::collection::vec(prop_oneof![1usize..700, 60_000usize..200_000], 1..8),
        short_by in prop_oneof![3 => Just(1usize), 1 => 1usize..300],
    ) {
        let need: usize = pairs.iter().map(|(n, v)| stored_len(n, v)).sum();
        let capacity = need.saturating_sub(short_by);
        // The longest prefix whose pairs fit; everything from the first misfit on is dropped.
        let mut used = 0;
        let fit = pairs
            .iter()
            .take_while(|(n, v)| {
                used += stored_len(n, v);
                used <= capacity
            })
            .count();
        let (overflowed, got) = through_arena(&pairs, &long, &sizes, capacity);
        prop_assert_eq!(overflowed, !pairs.is_empty());
        prop_assert!(got[..] == pairs[..fit], "kept {} pairs, expected {}", got.len(), fit);
    }
}
