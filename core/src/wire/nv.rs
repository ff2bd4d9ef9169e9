//! Name-value pairs (FastCGI 1.0 §3.4): the encoding of PARAMS, GET_VALUES and
//! GET_VALUES_RESULT content.
//!
//! Each length is one byte (0..=127, high bit clear) or four bytes (high bit set, 31-bit
//! big-endian value). [`NvDecoder`] decodes incrementally: input may be split anywhere,
//! even inside a length prefix, and pairs are handed to an [`NvSink`] as they arrive, so no
//! pair ever needs to fit a buffer.

use core::fmt;

/// Largest length a four-byte prefix can express.
pub const MAX_NV_LEN: u32 = 0x7fff_ffff;

/// Errors of the name-value codec.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NvError {
    /// The stream ended inside a pair.
    Truncated,
    /// A length above 2^31-1 cannot be encoded.
    TooLong,
    /// The output slice is too small; `required` bytes are needed.
    BufferTooSmall { required: usize },
}

impl fmt::Display for NvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated => f.write_str("name-value stream ended inside a pair"),
            Self::TooLong => f.write_str("name or value longer than 2^31-1 bytes"),
            Self::BufferTooSmall { required } => {
                write!(f, "output buffer too small: {required} bytes required")
            }
        }
    }
}

impl core::error::Error for NvError {}

/// Receives decoded pairs piece by piece: `start`, then name bytes, then value bytes, then
/// `end`. Pieces arrive in order; a name or value may come in several calls.
pub trait NvSink {
    /// A pair begins with these lengths.
    fn start(&mut self, name_len: u32, value_len: u32);
    /// The next bytes of the name.
    fn name(&mut self, bytes: &[u8]);
    /// The next bytes of the value.
    fn value(&mut self, bytes: &[u8]);
    /// The pair is complete.
    fn end(&mut self);

    /// A whole pair at once (the decoder's fast path when a pair arrives in one piece):
    /// `name_value` is the name followed by the value, `name_len` bytes of it the name.
    /// The same as `start`, then `name` and `value` (each skipped when empty), then `end`.
    fn pair(&mut self, name_value: &[u8], name_len: usize) {
        let (name, value) = name_value.split_at(name_len.min(name_value.len()));
        self.start(name.len() as u32, value.len() as u32);
        if !name.is_empty() {
            self.name(name);
        }
        if !value.is_empty() {
            self.value(value);
        }
        self.end();
    }

    /// A run of whole pairs at once, straight from the input (tried at each pair boundary,
    /// before `pair`): takes as many whole pairs from the front of `input` as it will and
    /// returns the bytes taken; the decoder goes on with the rest. The default takes none.
    fn pairs(&mut self, input: &[u8]) -> usize {
        let _ = input;
        0
    }
}

/// Reads one length prefix at the front of `input`: the length and the prefix's size.
fn read_len(input: &[u8]) -> Option<(usize, usize)> {
    let first = *input.first()?;
    if first & 0x80 == 0 {
        return Some((usize::from(first), 1));
    }
    let b = input.get(..4)?;
    Some((u32::from_be_bytes([first & 0x7f, b[1], b[2], b[3]]) as usize, 4))
}

/// Splits a complete pair off the front of `input`: its name and value (adjacent), the
/// name's length, and the bytes the pair spans. The params arena reads its pairs with it too.
/// Out of line on bare metal, where each caller would carry a copy (flash).
#[cfg_attr(target_os = "none", inline(never))]
#[cfg_attr(not(target_os = "none"), inline)]
pub(crate) fn split_pair(input: &[u8]) -> Option<(&[u8], usize, usize)> {
    let (name_len, a) = read_len(input)?;
    let (value_len, b) = read_len(input.get(a..)?)?;
    let name_at = a + b;
    let end = name_at.checked_add(name_len)?.checked_add(value_len)?;
    Some((input.get(name_at..end)?, name_len, end))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Part {
    NameLen,
    ValueLen,
    Name,
    Value,
}

/// Incremental decoder of a name-value stream; holds at most one partial length prefix.
#[derive(Clone, Debug)]
pub struct NvDecoder {
    part: Part,
    len_buf: [u8; 4],
    len_got: u8,
    name_len: u32,
    remaining: u32,
}

impl Default for NvDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl NvDecoder {
    pub const fn new() -> Self {
        Self { part: Part::NameLen, len_buf: [0; 4], len_got: 0, name_len: 0, remaining: 0 }
    }

    /// Decodes all of `input`, handing pieces to `sink`.
    pub fn feed<S: NvSink + ?Sized>(&mut self, mut input: &[u8], sink: &mut S) {
        while !input.is_empty() {
            if self.part == Part::NameLen && self.len_got == 0 {
                // Fast paths at a pair boundary: the run of pairs the sink takes whole, then
                // one whole pair.
                input = input.get(sink.pairs(input)..).unwrap_or_default();
                if let Some((name_value, name_len, used)) = split_pair(input) {
                    sink.pair(name_value, name_len);
                    input = &input[used..];
                    continue;
                }
                if input.is_empty() {
                    break;
                }
            }
            match self.part {
                Part::NameLen | Part::ValueLen => {
                    let used = self.take_len_byte(input[0]);
                    input = &input[used..];
                    if let Some(len) = self.finished_len() {
                        if self.part == Part::NameLen {
                            self.name_len = len;
                            self.part = Part::ValueLen;
                        } else {
                            sink.start(self.name_len, len);
                            self.remaining = self.name_len;
                            self.part = Part::Name;
                            // `remaining` for the value is kept in `len_buf` until the name is done.
                            self.len_buf = len.to_be_bytes();
                            self.skip_empty(sink);
                        }
                    }
                }
                Part::Name | Part::Value => {
                    let n = input.len().min(self.remaining as usize);
                    if self.part == Part::Name {
                        sink.name(&input[..n]);
                    } else {
                        sink.value(&input[..n]);
                    }
                    input = &input[n..];
                    self.remaining -= n as u32;
                    self.skip_empty(sink);
                }
            }
        }
    }

    /// Checks that the stream ended on a pair boundary, and resets for the next stream.
    pub fn finish(&mut self) -> Result<(), NvError> {
        let clean = self.part == Part::NameLen && self.len_got == 0;
        *self = Self::new();
        if clean { Ok(()) } else { Err(NvError::Truncated) }
    }

    /// Moves past a name or value that is complete (or empty).
    fn skip_empty<S: NvSink + ?Sized>(&mut self, sink: &mut S) {
        if self.remaining != 0 {
            return;
        }
        if self.part == Part::Name {
            self.part = Part::Value;
            self.remaining = u32::from_be_bytes(self.len_buf);
            if self.remaining != 0 {
                return;
            }
        }
        sink.end();
        self.part = Part::NameLen;
        self.len_got = 0;
    }

    fn take_len_byte(&mut self, byte: u8) -> usize {
        if self.len_got == 0 && byte & 0x80 == 0 {
            self.len_buf = [0, 0, 0, byte];
            self.len_got = 4;
        } else {
            let byte = if self.len_got == 0 { byte & 0x7f } else { byte };
            self.len_buf[self.len_got as usize] = byte;
            self.len_got += 1;
        }
        1
    }

    fn finished_len(&mut self) -> Option<u32> {
        if self.len_got < 4 {
            return None;
        }
        self.len_got = 0;
        Some(u32::from_be_bytes(self.len_buf))
    }
}

/// Bytes needed to encode a length.
pub const fn len_size(len: usize) -> usize {
    if len < 0x80 { 1 } else { 4 }
}

/// Bytes needed to encode the pair `name`, `value`.
pub const fn encoded_len(name: &[u8], value: &[u8]) -> usize {
    len_size(name.len()) + len_size(value.len()) + name.len() + value.len()
}

/// Encodes one pair into the front of `out`, returning the bytes written.
pub fn encode_pair(name: &[u8], value: &[u8], out: &mut [u8]) -> Result<usize, NvError> {
    if name.len() > MAX_NV_LEN as usize || value.len() > MAX_NV_LEN as usize {
        return Err(NvError::TooLong);
    }
    let required = encoded_len(name, value);
    if out.len() < required {
        return Err(NvError::BufferTooSmall { required });
    }
    let mut at = write_len(name.len(), out);
    at += write_len(value.len(), &mut out[at..]);
    out[at..at + name.len()].copy_from_slice(name);
    at += name.len();
    out[at..at + value.len()].copy_from_slice(value);
    Ok(at + value.len())
}

/// Writes `len` (at most [`MAX_NV_LEN`]) into the front of `out`, which has room for
/// [`len_size`] bytes; returns that size. Out of line on bare metal, where each of its three
/// callers would carry a copy (flash); inlined on hosts (speed).
#[cfg_attr(target_os = "none", inline(never))]
#[cfg_attr(not(target_os = "none"), inline)]
pub(crate) fn write_len(len: usize, out: &mut [u8]) -> usize {
    if len < 0x80 {
        out[0] = len as u8;
        1
    } else {
        out[..4].copy_from_slice(&(len as u32 | 0x8000_0000).to_be_bytes());
        4
    }
}

#[cfg(test)]
pub(crate) mod test {
    use super::*;

    /// Collects decoded pairs into fixed arrays for assertions.
    #[derive(Default)]
    pub(crate) struct Collect {
        pub pairs: heapless::Vec<(heapless::Vec<u8, 300>, heapless::Vec<u8, 300>), 8>,
        pub starts: heapless::Vec<(u32, u32), 8>,
    }

    impl NvSink for Collect {
        fn start(&mut self, n: u32, v: u32) {
            self.starts.push((n, v)).unwrap();
            self.pairs.push((heapless::Vec::new(), heapless::Vec::new())).unwrap();
        }
        fn name(&mut self, b: &[u8]) {
            self.pairs.last_mut().unwrap().0.extend_from_slice(b).unwrap();
        }
        fn value(&mut self, b: &[u8]) {
            self.pairs.last_mut().unwrap().1.extend_from_slice(b).unwrap();
        }
        fn end(&mut self) {}
    }

    // The four length combinations: 1+1, 1+4, 4+1, 4+4.
    static PAIR_11: [u8; 5] = [1, 2, b'A', b'B', b'C'];
    static PAIR_4_SMALL: [u8; 9] = [0x80, 0, 0, 1, 0x80, 0, 0, 2, b'N'];

    fn decode_all(chunks: &[&[u8]]) -> Collect {
        let mut d = NvDecoder::new();
        let mut c = Collect::default();
        for ch in chunks {
            d.feed(ch, &mut c);
        }
        d.finish().unwrap();
        c
    }

    #[test]
    fn test_decode_one_byte_lengths() {
        let c = decode_all(&[&PAIR_11]);
        assert_eq!(c.pairs.len(), 1);
        assert_eq!(&c.pairs[0].0[..], b"A");
        assert_eq!(&c.pairs[0].1[..], b"BC");
    }

    #[test]
    fn test_decode_four_byte_encoding_of_small_length() {
        let mut input = [0u8; 11];
        input[..9].copy_from_slice(&PAIR_4_SMALL);
        input[9] = b'v';
        input[10] = b'w';
        let c = decode_all(&[&input]);
        assert_eq!(&c.pairs[0].0[..], b"N");
        assert_eq!(&c.pairs[0].1[..], b"vw");
    }

    #[test]
    fn test_all_length_combinations_round_trip() {
        let long = [b'x'; 200];
        for (n, v) in [
            (&long[..1], &long[..3]),
            (&long[..1], &long[..200]),
            (&long[..128], &long[..0]),
            (&long[..200], &long[..127]),
        ] {
            let mut out = [0u8; 512];
            let len = encode_pair(n, v, &mut out).unwrap();
            assert_eq!(len, encoded_len(n, v));
            assert_eq!(out[0] & 0x80 != 0, n.len() >= 128);
            // Every split point gives the same result.
            for split in 0..=len {
                let c = decode_all(&[&out[..split], &out[split..len]]);
                assert_eq!(&c.pairs[0].0[..], n);
                assert_eq!(&c.pairs[0].1[..], v);
            }
        }
    }

    #[test]
    fn test_encode_length_boundaries() {
        let mut out = [0u8; 300];
        assert_eq!(encode_pair(&[b'a'; 127], b"", &mut out), Ok(129));
        assert_eq!(out[0], 127);
        assert_eq!(encode_pair(&[b'a'; 128], b"", &mut out), Ok(133));
        assert_eq!(&out[..5], &[0x80, 0, 0, 128, 0]);
        assert_eq!(encode_pair(b"ab", b"c", &mut out[..4]), Err(NvError::BufferTooSmall { required: 5 }));
    }

    #[test]
    fn test_decode_max_length_prefix() {
        // 2^31-1 announced; the decoder streams it without holding it.
        let mut d = NvDecoder::new();
        let mut c = Collect::default();
        d.feed(&[0xff, 0xff, 0xff, 0xff, 0x00, b'a', b'b'], &mut c);
        assert_eq!(c.starts[0], (MAX_NV_LEN, 0));
        assert_eq!(&c.pairs[0].0[..], b"ab");
        assert_eq!(d.finish(), Err(NvError::Truncated));
    }

    #[test]
    fn test_empty_name_and_value() {
        let c = decode_all(&[&[0, 0, 0, 0]]);
        assert_eq!(c.pairs.len(), 2);
        assert!(c.pairs[0].0.is_empty() && c.pairs[0].1.is_empty());
    }

    #[test]
    fn test_truncated_inside_prefix_and_body() {
        for cut in [&[0x80u8, 0][..], &[3, 1, b'a'][..], &[1][..]] {
            let mut d = NvDecoder::new();
            d.feed(cut, &mut Collect::default());
            assert_eq!(d.finish(), Err(NvError::Truncated));
        }
    }

    /// Takes runs of pairs with one-byte lengths through `pairs`, the rest as `Collect` does.
    #[derive(Default)]
    struct Runs {
        c: Collect,
        run_pairs: usize,
    }

    impl NvSink for Runs {
        fn start(&mut self, n: u32, v: u32) {
            self.c.start(n, v);
        }
        fn name(&mut self, b: &[u8]) {
            self.c.name(b);
        }
        fn value(&mut self, b: &[u8]) {
            self.c.value(b);
        }
        fn end(&mut self) {}
        fn pairs(&mut self, input: &[u8]) -> usize {
            let mut at = 0;
            while let Some(&[n, v]) = input[at..].first_chunk::<2>()
                && (n | v) < 0x80
                && let Some(nv) = input.get(at + 2..at + 2 + usize::from(n) + usize::from(v))
            {
                self.c.pair(nv, usize::from(n));
                self.run_pairs += 1;
                at += 2 + nv.len();
            }
            at
        }
    }

    #[test]
    fn test_runs_then_the_other_paths_in_any_split() {
        // Short pairs, a four-byte length (the run stops), short pairs, a pair at the end.
        let input = [
            1, 1, b'A', b'a', 2, 0, b'B', b'B', 0x80, 0, 0, 1, 1, b'C', b'c', 1, 2, b'D', b'd', b'd', 0, 0,
            1, 1, b'E', b'e',
        ];
        let want: [(&[u8], &[u8]); 6] =
            [(b"A", b"a"), (b"BB", b""), (b"C", b"c"), (b"D", b"dd"), (b"", b""), (b"E", b"e")];
        for chunk in [input.len(), 9, 5, 1] {
            let mut d = NvDecoder::new();
            let mut r = Runs::default();
            for piece in input.chunks(chunk) {
                d.feed(piece, &mut r);
            }
            d.finish().unwrap();
            assert_eq!(r.c.pairs.len(), 6, "chunk {chunk}");
            for (got, (n, v)) in r.c.pairs.iter().zip(want) {
                assert_eq!((&got.0[..], &got.1[..]), (n, v), "chunk {chunk}");
            }
            if chunk == input.len() {
                // All but the four-byte one came in runs.
                assert_eq!(r.run_pairs, 5);
            }
        }
    }

    #[test]
    fn test_byte_at_a_time() {
        let input = [4, 3, b'N', b'A', b'M', b'E', b'v', b'a', b'l', 1, 0, b'Z'];
        let chunks: heapless::Vec<&[u8], 12> = input.chunks(1).collect();
        let c = decode_all(&chunks);
        assert_eq!(c.pairs.len(), 2);
        assert_eq!(&c.pairs[0].0[..], b"NAME");
        assert_eq!(&c.pairs[0].1[..], b"val");
        assert_eq!(&c.pairs[1].0[..], b"Z");
    }
}
