//! The 8-byte record header that starts every FastCGI record.

/// Length of a record header in bytes.
pub const HEADER_LEN: usize = 8;
/// The only protocol version FastCGI 1.0 defines.
pub const VERSION_1: u8 = 1;
/// Largest content a single record can carry (`contentLength` is a u16).
pub const MAX_CONTENT_LEN: usize = u16::MAX as usize;
/// Request id reserved for management records (GET_VALUES, UNKNOWN_TYPE).
pub const MANAGEMENT_ID: u16 = 0;

/// A record type; values the spec does not define are kept as [`RecordType::Other`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordType {
    BeginRequest,
    AbortRequest,
    EndRequest,
    Params,
    Stdin,
    Stdout,
    Stderr,
    Data,
    GetValues,
    GetValuesResult,
    UnknownType,
    /// A type byte FastCGI 1.0 does not define (0 or 12..=255).
    Other(u8),
}

impl RecordType {
    /// Maps the type byte of a header to a record type.
    pub const fn from_u8(value: u8) -> Self {
        match value {
            1 => Self::BeginRequest,
            2 => Self::AbortRequest,
            3 => Self::EndRequest,
            4 => Self::Params,
            5 => Self::Stdin,
            6 => Self::Stdout,
            7 => Self::Stderr,
            8 => Self::Data,
            9 => Self::GetValues,
            10 => Self::GetValuesResult,
            11 => Self::UnknownType,
            other => Self::Other(other),
        }
    }

    /// The type byte written on the wire.
    pub const fn to_u8(self) -> u8 {
        match self {
            Self::BeginRequest => 1,
            Self::AbortRequest => 2,
            Self::EndRequest => 3,
            Self::Params => 4,
            Self::Stdin => 5,
            Self::Stdout => 6,
            Self::Stderr => 7,
            Self::Data => 8,
            Self::GetValues => 9,
            Self::GetValuesResult => 10,
            Self::UnknownType => 11,
            Self::Other(other) => other,
        }
    }
}

/// A decoded record header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub version: u8,
    pub record_type: RecordType,
    pub request_id: u16,
    pub content_length: u16,
    pub padding_length: u8,
}

impl Header {
    /// A version-1 header with no padding.
    pub const fn new(record_type: RecordType, request_id: u16, content_length: u16) -> Self {
        Self { version: VERSION_1, record_type, request_id, content_length, padding_length: 0 }
    }

    /// Decodes a header; any 8 bytes decode (the version is checked by the caller).
    pub const fn parse(bytes: &[u8; HEADER_LEN]) -> Self {
        Self {
            version: bytes[0],
            record_type: RecordType::from_u8(bytes[1]),
            request_id: u16::from_be_bytes([bytes[2], bytes[3]]),
            content_length: u16::from_be_bytes([bytes[4], bytes[5]]),
            padding_length: bytes[6],
        }
    }

    /// Encodes the header; the reserved byte is zero.
    pub const fn encode(&self) -> [u8; HEADER_LEN] {
        let id = self.request_id.to_be_bytes();
        let len = self.content_length.to_be_bytes();
        [self.version, self.record_type.to_u8(), id[0], id[1], len[0], len[1], self.padding_length, 0]
    }

    /// Whether this is a management record (request id 0).
    pub const fn is_management(&self) -> bool {
        self.request_id == MANAGEMENT_ID
    }
}

#[cfg(test)]
mod test {
    use super::*;

    static BEGIN_HEADER: [u8; 8] = [0x01, 0x01, 0x00, 0x01, 0x00, 0x08, 0x00, 0x00];
    static STDIN_HEADER_PADDED: [u8; 8] = [0x01, 0x05, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00];

    #[test]
    fn test_parse_begin() {
        let h = Header::parse(&BEGIN_HEADER);
        assert_eq!(h, Header::new(RecordType::BeginRequest, 1, 8));
    }

    #[test]
    fn test_parse_extremes() {
        let h = Header::parse(&STDIN_HEADER_PADDED);
        assert_eq!(h.record_type, RecordType::Stdin);
        assert_eq!(h.request_id, 65535);
        assert_eq!(h.content_length, 65535);
        assert_eq!(h.padding_length, 255);
        let mut back = h.encode();
        back[7] = 0;
        assert_eq!(back, STDIN_HEADER_PADDED);
    }

    #[test]
    fn test_emit() {
        assert_eq!(Header::new(RecordType::BeginRequest, 1, 8).encode(), BEGIN_HEADER);
        assert_eq!(Header::new(RecordType::Stdout, 0x0102, 0x0304).encode(), [1, 6, 1, 2, 3, 4, 0, 0]);
    }

    #[test]
    fn test_reserved_byte_ignored_and_zeroed() {
        let h = Header::parse(&[1, 4, 0, 7, 0, 0, 3, 0xAA]);
        assert_eq!(h.padding_length, 3);
        assert_eq!(h.encode(), [1, 4, 0, 7, 0, 0, 3, 0]);
    }

    #[test]
    fn test_type_round_trip_all_bytes() {
        for b in 0..=255u8 {
            assert_eq!(RecordType::from_u8(b).to_u8(), b);
        }
        assert_eq!(RecordType::from_u8(0), RecordType::Other(0));
        assert_eq!(RecordType::from_u8(12), RecordType::Other(12));
        assert_eq!(RecordType::from_u8(11), RecordType::UnknownType);
    }
}
