//! Parking the thread for [`serve_blocking`](ember_fcgi_core::serve_blocking) on std.

use std::sync::Arc;
use std::task::{Wake, Waker};
use std::thread::{self, Thread};

use ember_fcgi_core::Park;

/// Parks the calling thread while a handler awaits something else; the handler's waker
/// unparks it. CPU stays idle while a request waits.
#[derive(Debug)]
pub struct ThreadPark {
    waker: Waker,
}

struct Unpark(Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

impl ThreadPark {
    /// For the calling thread (the one that will run `serve_blocking`).
    pub fn new() -> Self {
        Self { waker: Waker::from(Arc::new(Unpark(thread::current()))) }
    }
}

impl Default for ThreadPark {
    fn default() -> Self {
        Self::new()
    }
}

impl Park for ThreadPark {
    fn waker(&self) -> Waker {
        self.waker.clone()
    }
    fn park(&mut self) {
        thread::park();
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::task::Poll;
    use std::time::{Duration, Instant};

    use ember_fcgi_core::prelude::*;
    use ember_fcgi_core::{DefaultBuffers, Park, serve_blocking};

    use super::ThreadPark;

    /// Counts how often the driver had to wait.
    struct Counting(ThreadPark, Cell<u32>);

    impl Park for Counting {
        fn waker(&self) -> std::task::Waker {
            self.0.waker()
        }
        fn park(&mut self) {
            self.1.set(self.1.get() + 1);
            self.0.park();
        }
    }

    /// Waits for a flag another thread sets after 50 ms, then answers.
    struct Waits(std::sync::Arc<AtomicBool>);

    impl Handler for Waits {
        async fn handle(&self, _: &mut Request<'_>, res: &mut Response<'_>) -> Result<(), HandlerError> {
            let flag = std::sync::Arc::clone(&self.0);
            let mut started = false;
            std::future::poll_fn(|cx| {
                if flag.load(Ordering::Acquire) {
                    return Poll::Ready(());
                }
                if !started {
                    started = true;
                    let (waker, flag) = (cx.waker().clone(), std::sync::Arc::clone(&flag));
                    std::thread::spawn(move || {
                        std::thread::sleep(Duration::from_millis(50));
                        flag.store(true, Ordering::Release);
                        waker.wake();
                    });
                }
                Poll::Pending
            })
            .await;
            Ok(res.raw_output().write_all(b"done").await?)
        }
    }

    struct Input<'a>(&'a [u8]);
    impl embedded_io::ErrorType for Input<'_> {
        type Error = core::convert::Infallible;
    }
    impl embedded_io::Read for Input<'_> {
        fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
            let n = buf.len().min(self.0.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }
    struct Output(Vec<u8>);
    impl embedded_io::ErrorType for Output {
        type Error = core::convert::Infallible;
    }
    impl embedded_io::Write for Output {
        fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
            self.0.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> Result<(), Self::Error> {
            Ok(())
        }
    }
    use ember_fcgi_core::embedded_io;

    #[test]
    fn a_waiting_handler_parks_the_thread_instead_of_spinning() {
        // BEGIN (responder), empty PARAMS, empty STDIN: request 1 without keep-conn.
        let input: &[u8] = &[
            1, 1, 0, 1, 0, 8, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, //
            1, 4, 0, 1, 0, 0, 0, 0, //
            1, 5, 0, 1, 0, 0, 0, 0,
        ];
        let mut out = Output(Vec::new());
        let mut park = Counting(ThreadPark::new(), Cell::new(0));
        let mut buffers = DefaultBuffers::new();
        let handler = Waits(Default::default());
        let started = Instant::now();
        let result =
            serve_blocking(Input(input), &mut out, &handler, &mut buffers, &Default::default(), &mut park);
        assert!(result.is_ok());
        assert!(started.elapsed() >= Duration::from_millis(50));
        // A spinning driver polls ~10^5 times in 50 ms; a parked one a handful.
        assert!(park.1.get() <= 5, "parked {} times", park.1.get());
        assert!(out.0.starts_with(&[1, 6, 0, 1, 0, 4, 0, 0, b'd', b'o', b'n', b'e']));
    }
}
