//! Handler errors and function handlers through the real driver: what goes to stdout,
//! stderr and END_REQUEST.

use core::cell::Cell;
use core::fmt;
use std::vec;

use super::client::*;
use crate::{HandlerError, Request, Response, StreamError, handler_fn};

/// An application error, as a database or file layer would return it.
#[derive(Debug)]
struct DiskOnFire(u32);

impl fmt::Display for DiskOnFire {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "disk {} is on fire", self.0)
    }
}

impl core::error::Error for DiskOnFire {}

fn store(disk: u32) -> Result<(), DiskOnFire> {
    Err(DiskOnFire(disk))
}

const ERROR_500: &[u8] =
    b"Status: 500 Internal Server Error\r\nContent-Type: text/plain\r\n\r\nInternal Server Error\n";

#[test]
fn app_error_before_output_is_500_with_its_text_on_stderr() {
    let handler = handler_fn(async |_req: &mut Request<'_>, _res: &mut Response<'_>| {
        store(3)?;
        Ok(())
    });
    let (out, result) = run(&handler, &request(1, false, &[], b""));
    assert!(result.is_ok());
    let recs = parse(&out);
    assert_eq!(stream(&recs, 6, 1), ERROR_500);
    assert_eq!(stream(&recs, 7, 1), b"disk 3 is on fire\n");
    assert_eq!(ends(&recs), vec![(1, 1, 0)]);
}

#[test]
fn app_error_after_output_keeps_the_output_and_logs() {
    let handler = handler_fn(async |_req: &mut Request<'_>, res: &mut Response<'_>| {
        let mut out = res.send_head(200, &[("Content-Type", "text/plain")]).await?;
        out.write_all(b"partial").await?;
        Err(HandlerError::msg("lost the rest"))
    });
    let (out, _) = run(&handler, &request(1, false, &[], b""));
    let recs = parse(&out);
    assert_eq!(stream(&recs, 6, 1), b"Status: 200 OK\r\nContent-Type: text/plain\r\n\r\npartial");
    assert_eq!(stream(&recs, 7, 1), b"lost the rest\n");
    assert_eq!(ends(&recs), vec![(1, 1, 0)]);
}

#[test]
fn app_status_set_by_the_handler_is_kept() {
    let handler = handler_fn(async |_req: &mut Request<'_>, res: &mut Response<'_>| {
        res.set_app_status(42);
        Err(HandlerError::msg("bad"))
    });
    let (out, _) = run(&handler, &request(1, false, &[], b""));
    assert_eq!(ends(&parse(&out)), vec![(1, 42, 0)]);
}

#[test]
fn abort_error_is_not_logged_or_answered() {
    let handler =
        handler_fn(async |_req: &mut Request<'_>, _res: &mut Response<'_>| Err(StreamError::Aborted.into()));
    let (out, _) = run(&handler, &request(1, false, &[], b""));
    let recs = parse(&out);
    assert_eq!(stream(&recs, 6, 1), b"");
    assert_eq!(stream(&recs, 7, 1), b"");
    assert_eq!(ends(&recs), vec![(1, 0, 0)]);
}

#[test]
fn closure_handler_shares_state_across_requests() {
    let served = Cell::new(0u8);
    let handler = handler_fn(async |_req: &mut Request<'_>, res: &mut Response<'_>| {
        served.set(served.get() + 1);
        res.send_response(200, "text/plain", &[b'0' + served.get()]).await?;
        Ok(())
    });
    let (first, second) = (request(1, true, &[], b""), request(1, false, &[], b""));
    let (out, _) = run_each(&handler, &[&first, &second]);
    assert_eq!(served.get(), 2);
    assert!(stream(&parse(&out), 6, 1).ends_with(b"\r\n\r\n2"));
}

async fn by_fn(_req: &mut Request<'_>, res: &mut Response<'_>) -> Result<(), HandlerError> {
    res.send_response(204, "text/plain", b"").await?;
    Ok(())
}

#[test]
fn async_fn_is_a_handler() {
    let (out, _) = run(&handler_fn(by_fn), &request(1, false, &[], b""));
    assert!(stream(&parse(&out), 6, 1).starts_with(b"Status: 204 No Content\r\n"));
}
