//! Record headers and fixed bodies: any bytes parse, and encode/parse round-trip.
#![no_main]

use ember_fcgi_core::wire::body::{BeginRequestBody, EndRequestBody, ProtocolStatus, UnknownTypeBody};
use ember_fcgi_core::wire::header::{HEADER_LEN, Header, RecordType};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for window in data.windows(HEADER_LEN).take(64) {
        let bytes: &[u8; HEADER_LEN] = window.try_into().unwrap();
        let h = Header::parse(bytes);
        let encoded = h.encode();
        assert_eq!(encoded[..7], bytes[..7]);
        assert_eq!(encoded[7], 0, "reserved byte is written as zero");
        assert_eq!(Header::parse(&encoded), h);
        assert_eq!(RecordType::from_u8(bytes[1]).to_u8(), bytes[1]);
        assert_eq!(h.is_management(), h.request_id == 0);

        let begin = BeginRequestBody::parse(bytes);
        let again = begin.encode();
        assert_eq!(again[..3], bytes[..3]);
        assert_eq!(again[3..], [0; 5]);
        assert_eq!(BeginRequestBody::parse(&again), begin);
        assert_eq!(begin.keep_conn(), bytes[2] & 1 == 1);

        let status = [
            ProtocolStatus::RequestComplete,
            ProtocolStatus::CantMpxConn,
            ProtocolStatus::Overloaded,
            ProtocolStatus::UnknownRole,
        ][usize::from(bytes[7] % 4)];
        let app_status = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
        let end = EndRequestBody { app_status, protocol_status: status }.record(h.request_id);
        let eh = Header::parse(end[..8].try_into().unwrap());
        assert_eq!(
            (eh.record_type, eh.request_id, eh.content_length, eh.padding_length),
            (RecordType::EndRequest, h.request_id, 8, 0)
        );
        assert_eq!(end[8..12], bytes[..4]);
        assert_eq!(end[12], status.to_u8());
        assert_eq!(end[13..], [0; 3]);

        let unknown = UnknownTypeBody { record_type: bytes[1] }.record();
        let uh = Header::parse(unknown[..8].try_into().unwrap());
        assert_eq!((uh.record_type, uh.request_id, uh.content_length), (RecordType::UnknownType, 0, 8));
        assert_eq!(unknown[8], bytes[1]);
        assert_eq!(unknown[9..], [0; 7]);
    }
});
