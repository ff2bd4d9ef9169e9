//! The connection driver: runs the protocol and the handlers of one connection over
//! `embedded-io-async` (or blocking `embedded-io`) I/O, with no allocator.
//!
//! Three kinds of task share the [`ConnState`] through a `RefCell` (never borrowed across
//! an `.await`) and are polled together by a small join: the writer (sends sealed output),
//! one task per request slot (runs the handler, then writes the closing records), and the
//! reader (refills the empty input buffer and runs the parser). The join polls them in
//! that order and goes round again while any of them made progress.

use core::cell::RefCell;
use core::future::{Future, poll_fn};
use core::pin::pin;
use core::task::{Context, Poll, Waker};

use embedded_io_async::{Read, Write};

use crate::buffers::{ConnectionBuffers, Parts};
use crate::config::Config;
use crate::conn::{self, ConnState, ConnectionStatus, IoMode, state_mut};
use crate::error::ConnectionError;
use crate::handler::{Conn, Handler, Request, Response};
use crate::handler_error::HandlerError;
use crate::params::Arena;

/// Rounds of the join in one poll before it yields to the executor.
const MAX_ROUNDS: usize = 64;

/// What a handler that returned an error (before writing anything) answers.
const INTERNAL_ERROR_HEAD: &[u8] =
    b"Status: 500 Internal Server Error\r\nContent-Type: text/plain\r\n\r\nInternal Server Error\n";
/// The answer to a request whose params do not fit the params store.
const PARAMS_TOO_LARGE: &[u8] =
    b"Status: 431 Request Header Fields Too Large\r\nContent-Type: text/plain\r\n\r\nRequest header fields too large\n";

/// Serves one FastCGI connection until the web server closes it, a request without
/// FCGI_KEEP_CONN completes, or an error; `Ok(())` means the caller should close the
/// connection gracefully (shutdown, then a bounded drain of unread input).
///
/// The reader and writer are the two halves of one connection; the driver reads ahead
/// while handlers run, so it notices FCGI_ABORT_REQUEST, answers FCGI_GET_VALUES and sees
/// other requests and the peer's EOF while a handler is busy, as long as an unread body
/// fits its request's window (past that, input waits for the handler: see
/// [`Request::discard_body`]) and a reply the engine owes (GET_VALUES_RESULT, UNKNOWN_TYPE,
/// a refusing END_REQUEST) fits the output buffer (else input waits for the writer).
/// END_REQUEST is sent at most once per request: none once the connection failed or timed
/// out, nor for a request whose input was incomplete when the peer closed its side.
/// `status` is kept current for the transport's timeouts, and says when the future may be
/// dropped and started again later without the peer noticing
/// ([`ConnectionStatus::is_idle_at_boundary`]).
pub fn serve_connection<R, W, H, B>(
    reader: R,
    writer: W,
    handler: &H,
    buffers: &mut B,
    config: &Config,
    status: &ConnectionStatus,
) -> impl Future<Output = Result<(), ConnectionError<R::Error>>>
where
    R: Read,
    W: Write<Error = R::Error>,
    H: Handler,
    B: ConnectionBuffers,
{
    // Not an `async fn`: that would keep another copy of its arguments in the future.
    drive(reader, writer, handler, buffers, config, IoMode::ReadAhead, status)
}

/// How a blocking host waits while a handler awaits something other than its request and
/// response (a timer, a channel): [`serve_blocking`] polls with [`waker`](Park::waker) and
/// calls [`park`](Park::park) when nothing can go on; the waker must end the wait.
/// On std, `ember_fcgi::host::ThreadPark` parks the thread; [`Spin`] suits bare metal.
pub trait Park {
    /// The waker handed to the handlers' futures.
    fn waker(&self) -> Waker;
    /// Waits until the waker was woken (returning early is harmless).
    fn park(&mut self);
}

/// A [`Park`] that spins (`core::hint::spin_loop`): for bare-metal hosts whose handlers
/// await only their request and response, where nothing else could wake them.
#[derive(Clone, Copy, Debug, Default)]
pub struct Spin;

impl Park for Spin {
    fn waker(&self) -> Waker {
        Waker::noop().clone()
    }
    fn park(&mut self) {
        core::hint::spin_loop();
    }
}

/// Serves one connection over blocking I/O on the calling thread, for hosts with no
/// executor. It reads only when a handler waits for input or a request is complete, so a
/// blocking read never holds back output. When a handler awaits anything else, the driver
/// waits with `park` (see [`Park`]).
pub fn serve_blocking<R, W, H, B, P>(
    reader: R,
    writer: W,
    handler: &H,
    buffers: &mut B,
    config: &Config,
    park: &mut P,
) -> Result<(), ConnectionError<R::Error>>
where
    R: embedded_io::Read,
    W: embedded_io::Write<Error = R::Error>,
    H: Handler,
    B: ConnectionBuffers,
    P: Park,
{
    let status = ConnectionStatus::new();
    let mut future =
        pin!(drive(Blocking(reader), Blocking(writer), handler, buffers, config, IoMode::OnDemand, &status));
    let waker = park.waker();
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(result) = future.as_mut().poll(&mut cx) {
            return result;
        }
        park.park();
    }
}

async fn drive<R, W, H, B>(
    mut reader: R,
    mut writer: W,
    handler: &H,
    buffers: &mut B,
    config: &Config,
    mode: IoMode,
    status: &ConnectionStatus,
) -> Result<(), ConnectionError<R::Error>>
where
    R: Read,
    W: Write<Error = R::Error>,
    H: Handler,
    B: ConnectionBuffers,
{
    // Taken apart at once: a borrowed local would be kept in the future across awaits.
    let Parts { memory, params } = buffers.parts();
    let used = memory.slots.len();
    let params = params.as_ref();
    let state = RefCell::new(ConnState::new(memory, params, *config, mode, status));
    let mut reader_task = pin!(read_task(&state, &mut reader));
    let mut writer_task = pin!(write_task(&state, &mut writer));
    let mut slot_tasks = pin!(B::join_slots(used, |i| slot_task(&state, params, handler, i)));
    let mut reader_finished = false;
    poll_fn(|cx| {
        let mut st = state_mut(&state);
        st.set_top_waker(cx.waker());
        let expired = st.note_expired();
        drop(st);
        if expired {
            // Handlers see `TimedOut` from their next call; give them one round to return.
            let _ = slot_tasks.as_mut().poll(cx);
            return Poll::Ready(Err(ConnectionError::TimedOut));
        }
        for _ in 0..MAX_ROUNDS {
            let before = conn::state(&state).progress;
            if let Poll::Ready(error) = writer_task.as_mut().poll(cx) {
                return Poll::Ready(Err(error));
            }
            let _ = slot_tasks.as_mut().poll(cx);
            if !reader_finished && let Poll::Ready(result) = reader_task.as_mut().poll(cx) {
                reader_finished = true;
                if let Err(error) = result {
                    return Poll::Ready(Err(ConnectionError::Read(error)));
                }
            }
            let st = conn::state(&state);
            if let Some(error) = st.failure {
                return Poll::Ready(Err(ConnectionError::Protocol(error)));
            }
            if st.finished() {
                return Poll::Ready(Ok(()));
            }
            if st.progress == before {
                st.publish_idle();
                return Poll::Pending;
            }
        }
        status.set_idle_at_boundary(false);
        cx.waker().wake_by_ref();
        Poll::Pending
    })
    .await
}

/// Refills the input buffer whenever the state allows, and feeds it to the parser.
async fn read_task<R: Read>(state: &RefCell<ConnState<'_, '_>>, reader: &mut R) -> Result<(), R::Error> {
    loop {
        let buf = poll_fn(|_| {
            let mut st = state_mut(state);
            if st.reader_done() {
                return Poll::Ready(None);
            }
            st.take_input().map_or(Poll::Pending, |buf| Poll::Ready(Some(buf)))
        })
        .await;
        let Some(buf) = buf else {
            return Ok(());
        };
        conn::state(state).publish_discardable();
        match reader.read(buf).await {
            Ok(n) => {
                let n = n.min(buf.len());
                let mut st = state_mut(state);
                st.apply_discarded();
                st.return_input(buf, n);
            }
            Err(error) => {
                state_mut(state).io_failed(Some(buf));
                return Err(error);
            }
        }
    }
}

/// Sends sealed output and flushes the transport when everything is sent. Returns only
/// when writing fails.
async fn write_task<W: Write>(
    state: &RefCell<ConnState<'_, '_>>,
    writer: &mut W,
) -> ConnectionError<W::Error> {
    loop {
        let job = poll_fn(|_| {
            let mut st = state_mut(state);
            if let Some(job) = st.take_output() {
                return Poll::Ready(Some(job));
            }
            if st.wants_flush() { Poll::Ready(None) } else { Poll::Pending }
        })
        .await;
        match job {
            Some((buf, from, to)) => match writer.write(&buf[from..to]).await {
                Ok(0) => {
                    state_mut(state).output_failed(buf);
                    return ConnectionError::WriteZero;
                }
                Ok(n) => state_mut(state).return_output(buf, n.min(to - from)),
                Err(error) => {
                    state_mut(state).output_failed(buf);
                    return ConnectionError::Write(error);
                }
            },
            None => match writer.flush().await {
                Ok(()) => state_mut(state).flushed(),
                Err(error) => {
                    state_mut(state).io_failed(None);
                    return ConnectionError::Write(error);
                }
            },
        }
    }
}

/// Runs the handler for each request that lands in slot `i`, then closes the request.
async fn slot_task<H: Handler>(
    state: &RefCell<ConnState<'_, '_>>,
    params: &[&RefCell<Arena<'_>>],
    handler: &H,
    i: usize,
) {
    let conn: &dyn Conn = state;
    loop {
        let overflowed =
            poll_fn(|_| state_mut(state).start_handler(i).map_or(Poll::Pending, Poll::Ready)).await;
        if let Some(arena) = params.get(i).and_then(|cell| cell.try_borrow().ok()) {
            let mut request = Request::new(conn, i, arena);
            let mut response = Response::new(conn, i);
            let outcome = if request.aborted() {
                Ok(())
            } else if overflowed {
                response.stdout().write_all(PARAMS_TOO_LARGE).await.map_err(HandlerError::from)
            } else {
                let mut handling = pin!(handler.handle(&mut request, &mut response));
                poll_fn(|cx| {
                    let poll = handling.as_mut().poll(cx);
                    state_mut(state).handler_polled(i);
                    poll
                })
                .await
            };
            drop(request);
            if let Err(error) = outcome {
                report(&mut response, error).await;
            }
        } else {
            // Nothing else borrows a running slot's params: the parser's borrow ends with
            // each step, and the previous request's `Request` was dropped before it closed.
            debug_assert!(false, "params of slot {i} missing or borrowed as its handler starts");
        }
        poll_fn(|_| state_mut(state).poll_close(i)).await;
    }
}

/// Ends the response of a handler that failed (unless it was an abort): a CGI 500 if
/// nothing was written yet, the error's text to FCGI_STDERR (the web server's error log),
/// app status 1 unless the handler set one. Not an `async fn`, and `error` moves in
/// unborrowed: so the error lives only in this future, which shares its memory with the
/// handler's, not beside it.
#[allow(clippy::manual_async_fn)]
fn report<'r>(response: &'r mut Response<'_>, error: HandlerError) -> impl Future<Output = ()> + 'r {
    async move {
        if error.is_abort() {
            return;
        }
        if response.bytes_written() == 0 {
            let _ = response.stdout().write_all(INTERNAL_ERROR_HEAD).await;
        }
        let mut stderr = response.stderr();
        let _ = stderr.write_all(error.message().as_bytes()).await;
        let _ = stderr.write_all(b"\n").await;
        if response.app_status() == 0 {
            response.set_app_status(1);
        }
    }
}

/// Presents blocking `embedded-io` I/O as `embedded-io-async` (every call completes at once).
struct Blocking<T>(T);

impl<T: embedded_io::ErrorType> embedded_io_async::ErrorType for Blocking<T> {
    type Error = T::Error;
}

impl<T: embedded_io::Read> Read for Blocking<T> {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, T::Error> {
        self.0.read(buf)
    }
}

impl<T: embedded_io::Write> Write for Blocking<T> {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, T::Error> {
        self.0.write(buf)
    }

    async fn flush(&mut self) -> Result<(), T::Error> {
        self.0.flush()
    }
}
