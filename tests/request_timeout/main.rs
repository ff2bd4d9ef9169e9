//! The whole-request deadline (`Limits::request_timeout`) and the slow-request count over
//! real sockets, on each server: a handler that never finishes gets a 504 within its
//! deadline, and one that began its response has its connection closed; the request memory
//! goes back either way.

#[cfg(feature = "mio")]
mod mio {
    use ember_fcgi::mio::Server;
    include!("cases.rs");
}

#[cfg(feature = "smol")]
mod smol {
    use ember_fcgi::smol::Server;
    include!("cases.rs");
}

#[cfg(feature = "tokio")]
mod tokio {
    use ember_fcgi::tokio::Server;
    include!("cases.rs");
}
