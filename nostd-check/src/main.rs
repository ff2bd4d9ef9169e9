//! Proof that `ember-fcgi-core` works with no std and no allocator: a bare-metal binary
//! (no `alloc` crate anywhere, `panic = "abort"`) that runs the blocking driver over byte
//! slices with a small handler, so the whole engine is linked.
//!
//! `cargo build --manifest-path nostd-check/Cargo.toml --target thumbv7em-none-eabihf --release`
#![no_std]
#![no_main]

use core::convert::Infallible;
use core::panic::PanicInfo;

use ember_fcgi_core::prelude::*;
use ember_fcgi_core::{Buffers, Config, embedded_io, serve_blocking};

/// Reads stdin to its end and answers with its length.
struct Count;

impl Handler for Count {
    async fn handle(&self, req: &mut Request<'_>, res: &mut Response<'_>) -> Result<(), HandlerError> {
        let mut buf = [0u8; 64];
        let mut total: u32 = 0;
        loop {
            let n = req.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            total = total.wrapping_add(n as u32);
        }
        let method = req.params().request_method().unwrap_or("?");
        let mut out = res.send_head(200, &[("Content-Type", content_type::TEXT), ("X-Method", method)]).await?;
        out.write_all(&total.to_be_bytes()).await?;
        Ok(())
    }
}

struct SliceReader<'a>(&'a [u8]);

impl embedded_io::ErrorType for SliceReader<'_> {
    type Error = Infallible;
}

impl embedded_io::Read for SliceReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Infallible> {
        let n = buf.len().min(self.0.len());
        buf[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        Ok(n)
    }
}

/// Writes into a fixed slice; drops what does not fit.
struct SliceWriter<'a> {
    out: &'a mut [u8],
    len: usize,
}

impl embedded_io::ErrorType for SliceWriter<'_> {
    type Error = Infallible;
}

impl embedded_io::Write for SliceWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> Result<usize, Infallible> {
        let n = buf.len().min(self.out.len() - self.len);
        self.out[self.len..self.len + n].copy_from_slice(&buf[..n]);
        self.len += n;
        Ok(buf.len())
    }
    fn flush(&mut self) -> Result<(), Infallible> {
        Ok(())
    }
}

/// Serves one connection whose input is `input`; writes the response into `out` and
/// returns its length, or -1 on a protocol error.
pub fn serve(input: &[u8], out: &mut [u8]) -> isize {
    let mut buffers = Buffers::<256, 256, 512, 1>::new();
    let mut writer = SliceWriter { out, len: 0 };
    match serve_blocking(SliceReader(input), &mut writer, &Count, &mut buffers, &Config::new(), &mut ember_fcgi_core::Spin) {
        Ok(()) => writer.len as isize,
        Err(_) => -1,
    }
}

/// C entry point for firmware that links this as a library.
///
/// # Safety
/// `input` must point to `input_len` readable bytes and `out` to `out_len` writable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ember_fcgi_serve(
    input: *const u8,
    input_len: usize,
    out: *mut u8,
    out_len: usize,
) -> isize {
    // SAFETY: the caller guarantees both ranges.
    let (input, out) = unsafe {
        (core::slice::from_raw_parts(input, input_len), core::slice::from_raw_parts_mut(out, out_len))
    };
    serve(input, out)
}

/// BEGIN (responder, no keep-conn), PARAMS `REQUEST_METHOD=POST`, empty PARAMS,
/// STDIN "hi", empty STDIN.
static REQUEST: [u8; 80] = [
    1, 1, 0, 1, 0, 8, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, //
    1, 4, 0, 1, 0, 20, 4, 0, 14, 4, b'R', b'E', b'Q', b'U', b'E', b'S', b'T', b'_', b'M', b'E', b'T', b'H',
    b'O', b'D', b'P', b'O', b'S', b'T', 0, 0, 0, 0, //
    1, 4, 0, 1, 0, 0, 0, 0, //
    1, 5, 0, 1, 0, 2, 6, 0, b'h', b'i', 0, 0, 0, 0, 0, 0, //
    1, 5, 0, 1, 0, 0, 0, 0,
];

static mut OUTPUT: [u8; 512] = [0; 512];

/// Reset entry: serves the static request (no runtime, nothing to return to).
#[unsafe(no_mangle)]
pub extern "C" fn _start() -> ! {
    let input = core::hint::black_box(&REQUEST[..]);
    // SAFETY: single-threaded bare metal; nothing else touches OUTPUT.
    let out = unsafe { &mut *core::ptr::addr_of_mut!(OUTPUT) };
    let n = serve(input, out);
    core::hint::black_box(n);
    loop {
        core::hint::spin_loop();
    }
}

#[panic_handler]
fn panic(_: &PanicInfo) -> ! {
    loop {
        core::hint::spin_loop();
    }
}
