//! `Server::serve` as a future beside an application's other tasks, on a
//! `smol::LocalExecutor`, with a handler that is not `Send`.

mod common;

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use common::*;
use ember_fcgi_core::prelude::*;
use ember_fcgi_smol::{Limits, Listen, Server};

/// Counts requests in an `Rc<Cell<_>>` (so it is `!Send`) and reports another task's ticks.
struct Local {
    hits: Rc<Cell<u32>>,
    ticks: Rc<Cell<u32>>,
}

impl Handler for Local {
    async fn handle(&self, _: &mut Request<'_>, res: &mut Response<'_>) -> Result<(), HandlerError> {
        self.hits.set(self.hits.get() + 1);
        smol::Timer::after(Duration::from_millis(1)).await;
        let body = format!("hit {} tick {}\n", self.hits.get(), self.ticks.get());
        res.send_response(200, content_type::TEXT, body.as_bytes()).await?;
        Ok(())
    }
}

#[test]
fn serve_on_a_local_executor_beside_other_tasks() {
    let hits = Rc::new(Cell::new(0));
    let ticks = Rc::new(Cell::new(0));
    let handler = Local { hits: Rc::clone(&hits), ticks: Rc::clone(&ticks) };
    let listen = Listen::Tcp("127.0.0.1:0".parse().unwrap());
    let server = Server::bind(&listen, handler, Limits::default()).expect("bind");
    let addr = server.local_addr().expect("tcp");
    let stop = server.shutdown_handle();
    let stats = server.stats();

    let ex = smol::LocalExecutor::new();
    let replies = smol::block_on(ex.run(async {
        let fastcgi = ex.spawn(server.serve());
        let ticker = ex.spawn({
            let ticks = Rc::clone(&ticks);
            async move {
                loop {
                    smol::Timer::after(Duration::from_millis(2)).await;
                    ticks.set(ticks.get() + 1);
                }
            }
        });
        // The blocking client runs on smol's thread pool.
        let replies = smol::unblock(move || {
            let mut c = Client::tcp(addr);
            (0..30).map(|_| c.request(true, "/", "", b"").body_str()).collect::<Vec<_>>()
        })
        .await;
        stop.shutdown();
        fastcgi.await.expect("serve returns Ok");
        drop(ticker);
        replies
    }));
    assert_eq!(hits.get(), 30);
    assert!(replies.iter().enumerate().all(|(i, r)| r.starts_with(&format!("hit {} tick ", i + 1))));
    assert!(ticks.get() > 0, "the other task ran meanwhile");
    let s = stats.snapshot();
    assert_eq!((s.accepted, s.requests, s.open_connections), (1, 30, 0));
}

#[test]
fn serve_in_block_on_with_the_test_app() {
    let app = TestApp::default();
    let server = Server::bind(&"127.0.0.1:0".parse().unwrap(), app, test_limits()).expect("bind");
    let addr = server.local_addr().expect("tcp");
    let stop = server.shutdown_handle();
    let stats = server.stats();
    let thread = std::thread::spawn(move || smol::block_on(server.serve()));
    let mut c = Client::tcp(addr);
    for i in 0..20 {
        let body = vec![i as u8; 100_000];
        assert!(c.request(true, "/echo", "", &body).body() == body.as_slice());
    }
    let reply = c.request(true, "/ndjson", "n=3&ms=5", b"");
    assert_eq!(reply.body_str(), "{\"line\":0}\n{\"line\":1}\n{\"line\":2}\n");
    drop(c);
    stop.shutdown();
    thread.join().expect("thread").expect("serve returns Ok");
    assert_eq!(stats.snapshot().open_connections, 0);
}

/// The testkit's async client and the server as two tasks of one thread's executor: no
/// thread pool, no blocking call.
#[test]
fn async_client_on_the_servers_executor() {
    let app = TestApp::default();
    let server = Server::bind(&"127.0.0.1:0".parse().unwrap(), app, test_limits()).expect("bind");
    let addr = server.local_addr().expect("tcp");
    let stop = server.shutdown_handle();
    let stats = server.stats();
    let ex = smol::LocalExecutor::new();
    smol::block_on(ex.run(async {
        let fastcgi = ex.spawn(server.serve());
        let stream = smol::Async::<std::net::TcpStream>::connect(addr).await.expect("connect");
        let mut c = ember_fcgi_testkit::async_client::AsyncClient::new(stream);
        for i in 0..20 {
            let body = vec![i as u8; 50_000];
            assert!(c.request(true, "/echo", "", &body).await.body() == body.as_slice());
        }
        let last = c.request(false, "/hello", "", b"").await;
        assert_eq!(last.body(), b"Hello, World!\n");
        assert!(
            c.try_record().await.expect("clean close").is_none(),
            "closed after a request without KEEP_CONN"
        );
        stop.shutdown();
        fastcgi.await.expect("serve returns Ok");
    }));
    let s = stats.snapshot();
    assert_eq!((s.accepted, s.requests, s.open_connections), (1, 21, 0));
}
