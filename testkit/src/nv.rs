//! Name-value pairs (spec section 3.4): each length is one byte below 128, or four bytes
//! big-endian with the top bit set; the 4-byte form is legal for any length, and both
//! forms must be accepted.

use std::fmt;

/// Which form a length takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LenForm {
    /// One byte below 128, else four.
    Shortest,
    /// Always four bytes (legal for any length).
    Long,
}

/// Appends one length in `form`.
pub fn push_len(out: &mut Vec<u8>, len: usize, form: LenForm) {
    if len < 128 && form == LenForm::Shortest {
        out.push(len as u8);
    } else {
        let len = u32::try_from(len).ok().filter(|l| *l < 1 << 31).expect("name-value length over 2^31 - 1");
        out.extend_from_slice(&(len | 1 << 31).to_be_bytes());
    }
}

/// Appends one pair with its lengths in the forms given.
pub fn push_nv_as(out: &mut Vec<u8>, name: &[u8], value: &[u8], name_form: LenForm, value_form: LenForm) {
    push_len(out, name.len(), name_form);
    push_len(out, value.len(), value_form);
    out.extend_from_slice(name);
    out.extend_from_slice(value);
}

/// Appends one pair with the shortest lengths.
pub fn push_nv(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    push_nv_as(out, name, value, LenForm::Shortest, LenForm::Shortest);
}

/// Encodes text pairs with the shortest lengths (PARAMS or GET_VALUES content).
pub fn encode_pairs(pairs: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in pairs {
        push_nv(&mut out, name.as_bytes(), value.as_bytes());
    }
    out
}

/// Encodes byte pairs with the shortest lengths.
pub fn encode_byte_pairs(pairs: &[(&[u8], &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in pairs {
        push_nv(&mut out, name, value);
    }
    out
}

/// Why name-value content did not decode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NvError {
    /// The content ends inside a length or a name or value, at this offset.
    Truncated { at: usize },
}

impl fmt::Display for NvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated { at } => write!(f, "name-value content ends inside a pair at byte {at}"),
        }
    }
}

impl std::error::Error for NvError {}

/// A decoded name and value.
pub type Pair = (Vec<u8>, Vec<u8>);

/// Decodes whole pairs; an incomplete last pair is an error.
pub fn try_decode(data: &[u8]) -> Result<Vec<Pair>, NvError> {
    fn len(data: &[u8], at: &mut usize) -> Result<usize, NvError> {
        let first = *data.get(*at).ok_or(NvError::Truncated { at: *at })?;
        if first < 128 {
            *at += 1;
            return Ok(usize::from(first));
        }
        let b = data.get(*at..*at + 4).ok_or(NvError::Truncated { at: *at })?;
        *at += 4;
        Ok(u32::from_be_bytes([b[0] & 0x7f, b[1], b[2], b[3]]) as usize)
    }
    let mut pairs = Vec::new();
    let mut at = 0;
    while at < data.len() {
        let start = at;
        let (n, v) = (len(data, &mut at)?, len(data, &mut at)?);
        let end = at.checked_add(n).and_then(|e| e.checked_add(v)).filter(|e| *e <= data.len());
        let end = end.ok_or(NvError::Truncated { at: start })?;
        pairs.push((data[at..at + n].to_vec(), data[at + n..end].to_vec()));
        at = end;
    }
    Ok(pairs)
}

/// Decodes pairs as text (lossy); panics on malformed content (a test failure).
pub fn decode_pairs(data: &[u8]) -> Vec<(String, String)> {
    try_decode(data)
        .unwrap_or_else(|e| panic!("{e}: {data:?}"))
        .into_iter()
        .map(|(n, v)| (String::from_utf8_lossy(&n).into_owned(), String::from_utf8_lossy(&v).into_owned()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_length_forms() {
        let mut v = Vec::new();
        push_nv(&mut v, b"A", b"BC");
        assert_eq!(v, [1, 2, b'A', b'B', b'C']);
        let mut v = Vec::new();
        push_len(&mut v, 127, LenForm::Shortest);
        push_len(&mut v, 128, LenForm::Shortest);
        push_len(&mut v, 0x0001_0203, LenForm::Shortest);
        push_len(&mut v, 0, LenForm::Long);
        assert_eq!(v, [127, 0x80, 0, 0, 128, 0x80, 0x01, 0x02, 0x03, 0x80, 0, 0, 0]);
        let mut v = Vec::new();
        push_nv_as(&mut v, b"N", &[b'x'; 300], LenForm::Long, LenForm::Shortest);
        assert_eq!(&v[..9], [0x80, 0, 0, 1, 0x80, 0, 1, 44, b'N']);
        assert_eq!(v.len(), 9 + 300);
    }

    #[test]
    fn decodes_what_it_encodes_and_rejects_truncation() {
        let mut v = Vec::new();
        push_nv_as(&mut v, b"NAME", b"", LenForm::Long, LenForm::Long);
        push_nv(&mut v, &[b'n'; 200], b"v");
        let pairs = try_decode(&v).unwrap();
        assert_eq!(pairs, [(b"NAME".to_vec(), Vec::new()), (vec![b'n'; 200], b"v".to_vec())]);
        for cut in 1..v.len() {
            if cut != 12 {
                assert!(try_decode(&v[..cut]).is_err(), "cut {cut}");
            }
        }
        assert_eq!(try_decode(&v[..12]).unwrap().len(), 1);
        assert_eq!(decode_pairs(&encode_pairs(&[("a", "b")])), [("a".to_owned(), "b".to_owned())]);
    }
}
