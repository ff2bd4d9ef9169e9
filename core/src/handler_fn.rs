//! Function handlers: an async closure or `async fn` as a [`Handler`], with no struct and
//! no trait impl.

use core::fmt;

use crate::handler::{Handler, Request, Response};
use crate::handler_error::HandlerError;

/// Makes a [`Handler`] of an async closure or `async fn` taking the request and the
/// response. State is captured by reference or in an `Arc`; the closure may return any
/// error that converts into [`HandlerError`].
///
/// ```
/// use core::sync::atomic::{AtomicU32, Ordering};
/// use ember_fcgi_core::prelude::*;
/// use ember_fcgi_core::handler_fn;
///
/// let hits = AtomicU32::new(0); // state shared by every request
/// let handler = handler_fn(async |_req: &mut Request<'_>, res: &mut Response<'_>| {
///     let n = hits.fetch_add(1, Ordering::Relaxed);
///     let mut body = res.send_head(200, &[("Content-Type", content_type::TEXT)]).await?;
///     body.write_all(if n == 0 { b"first\n" } else { b"again\n" }).await?;
///     Ok(())
/// });
/// # fn takes<H: Handler>(_: &H) {}
/// # takes(&handler);
///
/// async fn hello(_req: &mut Request<'_>, res: &mut Response<'_>) -> Result<(), HandlerError> {
///     res.send_response(200, content_type::TEXT, b"Hello\n").await?;
///     Ok(())
/// }
/// # takes(&handler_fn(hello));
/// ```
pub fn handler_fn<F>(f: F) -> FnHandler<F>
where
    F: AsyncFn(&mut Request<'_>, &mut Response<'_>) -> Result<(), HandlerError>,
{
    FnHandler(f)
}

/// A closure serving as a [`Handler`]; made by [`handler_fn`].
#[derive(Clone, Copy)]
pub struct FnHandler<F>(F);

impl<F> Handler for FnHandler<F>
where
    F: AsyncFn(&mut Request<'_>, &mut Response<'_>) -> Result<(), HandlerError>,
{
    async fn handle(
        &self,
        request: &mut Request<'_>,
        response: &mut Response<'_>,
    ) -> Result<(), HandlerError> {
        (self.0)(request, response).await
    }
}

impl<F> fmt::Debug for FnHandler<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FnHandler")
    }
}
