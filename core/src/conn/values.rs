//! FCGI_GET_VALUES: which of the known names a query asks for, and the reply.

use super::{ConnState, MIN_OUTPUT};
use crate::error::decimal;
use crate::wire::header::{HEADER_LEN, Header, RecordType};
use crate::wire::nv::{NvDecoder, NvSink, encode_pair};

/// GET_VALUES names the library answers, in reply order.
const KNOWN_VALUES: [&[u8]; 3] = [b"FCGI_MAX_CONNS", b"FCGI_MAX_REQS", b"FCGI_MPXS_CONNS"];

/// Collects which known names a GET_VALUES query asks for.
#[derive(Clone, Debug)]
pub(super) struct ValuesQuery {
    pub(super) decoder: NvDecoder,
    pub(super) asked: u8,
    name: heapless::Vec<u8, 16>,
    name_fits: bool,
}

impl ValuesQuery {
    pub(super) const fn new() -> Self {
        Self { decoder: NvDecoder::new(), asked: 0, name: heapless::Vec::new(), name_fits: true }
    }
}

impl NvSink for ValuesQuery {
    fn start(&mut self, _name_len: u32, _value_len: u32) {
        self.name.clear();
        self.name_fits = true;
    }
    fn name(&mut self, bytes: &[u8]) {
        if self.name.extend_from_slice(bytes).is_err() {
            self.name_fits = false;
        }
    }
    fn value(&mut self, _bytes: &[u8]) {}
    fn end(&mut self) {
        if self.name_fits
            && let Some(i) = KNOWN_VALUES.iter().position(|k| *k == &self.name[..])
        {
            self.asked |= 1 << i;
        }
    }
}

impl ConnState<'_, '_> {
    /// Encodes GET_VALUES_RESULT for the names asked; returns its length.
    pub(super) fn values_reply(&self, asked: u8, out: &mut [u8; MIN_OUTPUT]) -> usize {
        let reqs = self.slots.len() as u32;
        let values = [self.config.max_conns, self.config.max_conns.saturating_mul(reqs), u32::from(reqs > 1)];
        let mut at = HEADER_LEN;
        for (k, (name, value)) in KNOWN_VALUES.iter().zip(values).enumerate() {
            if asked & (1 << k) == 0 {
                continue;
            }
            let mut digits = [0u8; 20];
            let digits = decimal(u64::from(value), &mut digits);
            // The three names and 10-digit values always fit MIN_OUTPUT.
            let pair = encode_pair(name, digits.as_bytes(), &mut out[at..]);
            debug_assert!(pair.is_ok(), "GET_VALUES_RESULT outgrew MIN_OUTPUT");
            if let Ok(n) = pair {
                at += n;
            }
        }
        let header = Header::new(RecordType::GetValuesResult, 0, (at - HEADER_LEN) as u16);
        out[..HEADER_LEN].copy_from_slice(&header.encode());
        at
    }
}
