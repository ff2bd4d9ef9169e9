//! The async twin of [`crate::client::Client`], over any `futures-io` stream (smol's
//! `Async<TcpStream>`, an in-memory pipe...), for tests that run the client on the same
//! executor as the server.

use std::io;

use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::decode::Framer;
use crate::reply::{Record, Reply, ReplyReader};
use crate::wire::request_bytes;

/// An async FastCGI client connection.
#[derive(Debug)]
pub struct AsyncClient<S> {
    pub stream: S,
    framer: Framer,
    /// Management records (request id 0) received while reading replies.
    pub management: Vec<Record>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncClient<S> {
    pub fn new(stream: S) -> Self {
        Self { stream, framer: Framer::new(), management: Vec::new() }
    }

    pub async fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes).await?;
        self.stream.flush().await
    }

    /// The next record; `None` at EOF (see [`crate::client::Client::try_record`]).
    pub async fn try_record(&mut self) -> io::Result<Option<Record>> {
        loop {
            if let Some(r) = self.framer.next_record().unwrap_or_else(|e| panic!("from the server: {e}")) {
                return Ok(Some(r));
            }
            match self.stream.read(self.framer.spare()).await {
                Ok(0) if self.framer.buffered() == 0 => return Ok(None),
                Ok(0) => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "record cut short")),
                Ok(n) => self.framer.filled(n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Reads records up to the END_REQUEST of `id`; `None` if the connection closed first.
    pub async fn try_reply(&mut self, id: u16) -> io::Result<Option<Reply>> {
        let mut reader = ReplyReader::new(id);
        loop {
            let Some(r) = self.try_record().await? else { return Ok(None) };
            if let Some(reply) = reader.take(r, &mut self.management) {
                return Ok(Some(reply));
            }
        }
    }

    pub async fn reply(&mut self, id: u16) -> Reply {
        self.try_reply(id).await.expect("read reply").expect("connection closed before END_REQUEST")
    }

    /// Sends a whole request (id 1) and reads its reply.
    pub async fn request(&mut self, keep_conn: bool, script: &str, query: &str, body: &[u8]) -> Reply {
        self.send(&request_bytes(1, keep_conn, script, query, body)).await.expect("send");
        self.reply(1).await
    }
}

#[cfg(test)]
mod tests {
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use super::*;
    use crate::wire::*;

    /// Reads a canned response one byte at a time; records what is written.
    struct Canned {
        input: Vec<u8>,
        at: usize,
        written: Vec<u8>,
    }

    impl AsyncRead for Canned {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut [u8],
        ) -> Poll<io::Result<usize>> {
            let n = usize::from(self.at < self.input.len() && !buf.is_empty());
            if n == 1 {
                buf[0] = self.input[self.at];
                self.at += 1;
            }
            Poll::Ready(Ok(n))
        }
    }

    impl AsyncWrite for Canned {
        fn poll_write(mut self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
            self.written.extend_from_slice(buf);
            Poll::Ready(Ok(buf.len()))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[test]
    fn request_and_reply() {
        let mut input = record(GET_VALUES_RESULT, 0, b"");
        input.extend(record(STDOUT, 1, b"Status: 200\r\n\r\nok"));
        input.extend(record(STDOUT, 1, b""));
        input.extend(record(END_REQUEST, 1, &end_body(0, REQUEST_COMPLETE)));
        let mut c = AsyncClient::new(Canned { input, at: 0, written: Vec::new() });
        let reply = futures_lite::future::block_on(c.request(false, "/x", "", b""));
        assert_eq!((reply.body(), reply.protocol_status), (&b"ok"[..], REQUEST_COMPLETE));
        assert_eq!(c.management.len(), 1);
        assert_eq!(c.stream.written, request_bytes(1, false, "/x", "", b""));
        assert!(futures_lite::future::block_on(c.try_record()).unwrap().is_none());
    }
}
