//! The fixed 8-byte bodies of BEGIN_REQUEST, END_REQUEST and UNKNOWN_TYPE records.

use super::header::{HEADER_LEN, Header, RecordType};

/// Length of every fixed-size body.
pub const BODY_LEN: usize = 8;
/// BEGIN_REQUEST flag: the web server keeps the connection open after the response.
pub const FLAG_KEEP_CONN: u8 = 1;

/// The role a web server asks the application to play.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Responder,
    Authorizer,
    Filter,
    /// A role number FastCGI 1.0 does not define.
    Other(u16),
}

impl Role {
    pub const fn from_u16(value: u16) -> Self {
        match value {
            1 => Self::Responder,
            2 => Self::Authorizer,
            3 => Self::Filter,
            other => Self::Other(other),
        }
    }

    pub const fn to_u16(self) -> u16 {
        match self {
            Self::Responder => 1,
            Self::Authorizer => 2,
            Self::Filter => 3,
            Self::Other(other) => other,
        }
    }
}

/// `protocolStatus` of END_REQUEST.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProtocolStatus {
    /// Normal end of the request.
    RequestComplete,
    /// A second request on a connection that does not multiplex.
    CantMpxConn,
    /// The application ran out of a resource (here: request slots).
    Overloaded,
    /// The application does not play the requested role.
    UnknownRole,
}

impl ProtocolStatus {
    pub const fn to_u8(self) -> u8 {
        match self {
            Self::RequestComplete => 0,
            Self::CantMpxConn => 1,
            Self::Overloaded => 2,
            Self::UnknownRole => 3,
        }
    }
}

/// Body of BEGIN_REQUEST: the role and the flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BeginRequestBody {
    pub role: Role,
    pub flags: u8,
}

impl BeginRequestBody {
    /// Decodes the body; the five reserved bytes are ignored.
    pub const fn parse(bytes: &[u8; BODY_LEN]) -> Self {
        Self { role: Role::from_u16(u16::from_be_bytes([bytes[0], bytes[1]])), flags: bytes[2] }
    }

    pub const fn encode(&self) -> [u8; BODY_LEN] {
        let role = self.role.to_u16().to_be_bytes();
        [role[0], role[1], self.flags, 0, 0, 0, 0, 0]
    }

    /// Whether the web server asked to keep the connection after this request.
    pub const fn keep_conn(&self) -> bool {
        self.flags & FLAG_KEEP_CONN != 0
    }
}

/// Body of END_REQUEST: the application's exit status and the protocol status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EndRequestBody {
    pub app_status: u32,
    pub protocol_status: ProtocolStatus,
}

impl EndRequestBody {
    pub const fn encode(&self) -> [u8; BODY_LEN] {
        let s = self.app_status.to_be_bytes();
        [s[0], s[1], s[2], s[3], self.protocol_status.to_u8(), 0, 0, 0]
    }

    /// The whole 16-byte END_REQUEST record for `request_id`.
    pub const fn record(&self, request_id: u16) -> [u8; HEADER_LEN + BODY_LEN] {
        fixed_record(RecordType::EndRequest, request_id, self.encode())
    }
}

/// Body of UNKNOWN_TYPE: the management record type the application did not understand.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnknownTypeBody {
    pub record_type: u8,
}

impl UnknownTypeBody {
    pub const fn encode(&self) -> [u8; BODY_LEN] {
        [self.record_type, 0, 0, 0, 0, 0, 0, 0]
    }

    /// The whole 16-byte UNKNOWN_TYPE record (always request id 0).
    pub const fn record(&self) -> [u8; HEADER_LEN + BODY_LEN] {
        fixed_record(RecordType::UnknownType, 0, self.encode())
    }
}

const fn fixed_record(
    record_type: RecordType,
    request_id: u16,
    body: [u8; BODY_LEN],
) -> [u8; HEADER_LEN + BODY_LEN] {
    let h = Header::new(record_type, request_id, BODY_LEN as u16).encode();
    [
        h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7], body[0], body[1], body[2], body[3], body[4], body[5],
        body[6], body[7],
    ]
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn test_parse_begin_responder_keep_conn() {
        let b = BeginRequestBody::parse(&[0, 1, 1, 0, 0, 0, 0, 0]);
        assert_eq!(b.role, Role::Responder);
        assert!(b.keep_conn());
        let b = BeginRequestBody::parse(&[0, 3, 0, 9, 9, 9, 9, 9]);
        assert_eq!(b.role, Role::Filter);
        assert!(!b.keep_conn());
        assert_eq!(BeginRequestBody::parse(&[0xff, 0xff, 0xfe, 0, 0, 0, 0, 0]).role, Role::Other(0xffff));
        assert!(!BeginRequestBody::parse(&[0, 2, 0xfe, 0, 0, 0, 0, 0]).keep_conn());
    }

    #[test]
    fn test_emit_begin() {
        let b = BeginRequestBody { role: Role::Authorizer, flags: 1 };
        assert_eq!(b.encode(), [0, 2, 1, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn test_emit_end_request_record() {
        let end = EndRequestBody { app_status: 0x01020304, protocol_status: ProtocolStatus::Overloaded };
        assert_eq!(end.record(0x0a0b), [1, 3, 0x0a, 0x0b, 0, 8, 0, 0, 1, 2, 3, 4, 2, 0, 0, 0]);
        let end = EndRequestBody { app_status: 0, protocol_status: ProtocolStatus::RequestComplete };
        assert_eq!(end.record(1), [1, 3, 0, 1, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(ProtocolStatus::CantMpxConn.to_u8(), 1);
        assert_eq!(ProtocolStatus::UnknownRole.to_u8(), 3);
    }

    #[test]
    fn test_emit_unknown_type_record() {
        assert_eq!(
            UnknownTypeBody { record_type: 0xC8 }.record(),
            [1, 11, 0, 0, 0, 8, 0, 0, 0xC8, 0, 0, 0, 0, 0, 0, 0]
        );
    }

    #[test]
    fn test_role_round_trip() {
        for v in [0u16, 1, 2, 3, 4, 0xffff] {
            assert_eq!(Role::from_u16(v).to_u16(), v);
        }
    }
}
