//! The name-value decoder: arbitrary bytes in arbitrary chunks give the same pairs as the
//! whole input, the sink sees a well-ordered call sequence, and decoded pairs re-encode
//! and decode to themselves.
#![no_main]

use ember_fcgi_core::wire::nv::{NvDecoder, NvSink, encode_pair, encoded_len};
use libfuzzer_sys::fuzz_target;

/// A pair seen: announced lengths, name and value bytes, and whether `end` came.
type Pair = (u32, u32, Vec<u8>, Vec<u8>, bool);

#[derive(Default, Debug, PartialEq, Eq)]
struct Pairs(Vec<Pair>);

impl NvSink for Pairs {
    fn start(&mut self, n: u32, v: u32) {
        assert!(self.0.last().is_none_or(|p| p.4), "start inside a pair");
        assert!(n <= 0x7fff_ffff && v <= 0x7fff_ffff);
        self.0.push((n, v, Vec::new(), Vec::new(), false));
    }
    fn name(&mut self, b: &[u8]) {
        let p = self.0.last_mut().expect("name before start");
        assert!(p.3.is_empty() && !p.4);
        p.2.extend_from_slice(b);
        assert!(p.2.len() <= p.0 as usize);
    }
    fn value(&mut self, b: &[u8]) {
        let p = self.0.last_mut().expect("value before start");
        assert!(p.2.len() == p.0 as usize && !p.4);
        p.3.extend_from_slice(b);
        assert!(p.3.len() <= p.1 as usize);
    }
    fn end(&mut self) {
        let p = self.0.last_mut().expect("end before start");
        assert!(p.2.len() == p.0 as usize && p.3.len() == p.1 as usize && !p.4);
        p.4 = true;
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&sizes, input)) = data.split_first() else {
        return;
    };
    // Two chunk sizes, alternating: 1..=16 and 1..=16.
    let sizes = [usize::from(sizes & 15) + 1, usize::from(sizes >> 4) + 1];

    let mut decoder = NvDecoder::new();
    let mut whole = Pairs::default();
    decoder.feed(input, &mut whole);
    let whole_ok = decoder.finish().is_ok();
    assert_eq!(whole_ok, whole.0.last().is_none_or(|p| p.4) && clean_end(input));

    let mut chunked = Pairs::default();
    let mut rest = input;
    let mut i = 0;
    while !rest.is_empty() {
        let n = sizes[i % 2].min(rest.len());
        decoder.feed(&rest[..n], &mut chunked);
        rest = &rest[n..];
        i += 1;
    }
    assert_eq!(decoder.finish().is_ok(), whole_ok);
    assert_eq!(chunked, whole);

    // Canonical re-encoding of the complete pairs decodes to the same pairs.
    let mut encoded = Vec::new();
    for (_, _, n, v, ended) in &whole.0 {
        if *ended {
            let mut buf = vec![0u8; encoded_len(n, v)];
            assert_eq!(encode_pair(n, v, &mut buf), Ok(buf.len()));
            encoded.extend_from_slice(&buf);
        }
    }
    let mut again = Pairs::default();
    decoder.feed(&encoded, &mut again);
    assert_eq!(decoder.finish(), Ok(()));
    let complete: Vec<_> = whole.0.into_iter().filter(|p| p.4).collect();
    assert_eq!(again.0, complete);
});

/// Whether `input` ends on a pair boundary, by a straightforward reference walk.
fn clean_end(mut input: &[u8]) -> bool {
    fn len(input: &mut &[u8]) -> Option<u64> {
        let first = *input.first()?;
        if first & 0x80 == 0 {
            *input = &input[1..];
            Some(u64::from(first))
        } else {
            let b = input.get(..4)?;
            let v = u32::from_be_bytes([b[0] & 0x7f, b[1], b[2], b[3]]);
            *input = &input[4..];
            Some(u64::from(v))
        }
    }
    while !input.is_empty() {
        let (Some(n), Some(v)) = (len(&mut input), len(&mut input)) else {
            return false;
        };
        let total = n + v;
        if total > input.len() as u64 {
            return false;
        }
        input = &input[total as usize..];
    }
    true
}
