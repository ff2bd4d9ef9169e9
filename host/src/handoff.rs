//! Zero-downtime restart without a supervisor holding the socket: the running process
//! starts its own executable again (same path, same arguments, same environment) with the
//! listening socket inherited, waits until the successor says it is ready, and only then
//! stops accepting and drains its in-flight requests (a graceful shutdown). The socket
//! never closes, so no connection is refused: until the old process stops accepting, both
//! accept from the one queue of pending connections.
//!
//! The protocol, between [`Handoff::hand_over`] and the successor's [`Listener::bind`] and
//! [`ready`]:
//! - the listening socket's fd is inherited as it is (its close-on-exec flag is cleared in
//!   the child only, between fork and exec) and named by `EMBER_FCGI_INHERITED_FD`;
//! - the write end of a pipe is inherited the same way, named by `EMBER_FCGI_READY_FD`; the
//!   successor writes one byte to it once it will serve ([`ready`]). The old process takes
//!   EOF without that byte (the successor exited or failed) or no byte within the timeout
//!   as a failed start: it kills the successor if it still runs, and keeps serving;
//! - `EMBER_FCGI_PARENT_PID` is the old process's id: the successor takes the fds only if
//!   it is that process's child, so a process the successor starts later ignores them (the
//!   way `LISTEN_PID` works for systemd's sockets, which the parent cannot set before exec).
//!
//! [`Listener::bind`] takes the inherited socket instead of binding when its address is
//! the one asked for (a TCP address with port 0 matches any port on that IP), or for
//! `Listen::Systemd` and `Listen::Inherited`. A Unix socket's file is neither removed nor
//! bound again by the successor; the old process leaves it in place once it handed over.

use std::fmt;
use std::io::{self, Read as _, Write as _};
use std::net::TcpListener;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::UnixListener;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError, mpsc};
use std::time::Duration;

use socket2::{SockRef, Type};

use crate::listen::{Listen, Listener};
use crate::runtime::ShutdownHandle;

/// The inherited listening socket's fd number.
pub const INHERITED_FD_VAR: &str = "EMBER_FCGI_INHERITED_FD";
/// The fd number of the pipe the successor reports readiness on.
pub const READY_FD_VAR: &str = "EMBER_FCGI_READY_FD";
/// The process id the two fds were meant for the child of.
pub const PARENT_PID_VAR: &str = "EMBER_FCGI_PARENT_PID";

/// How long [`Handoff::hand_over`] waits for the successor by default.
pub const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Set once this process handed its socket over: a Unix listener then leaves its socket
/// file in place when dropped (the successor serves it).
static HANDED_OVER: AtomicBool = AtomicBool::new(false);

/// Whether this process handed its listening socket to a successor.
pub fn handed_over() -> bool {
    HANDED_OVER.load(Ordering::SeqCst)
}

/// Why a handoff failed. The old process still serves when [`Handoff::hand_over`] returns
/// one of these.
#[derive(Debug)]
#[non_exhaustive]
pub enum HandoffError {
    /// This process's executable could not be found (`current_exe`).
    CurrentExe(io::Error),
    /// The readiness pipe could not be made, or the listener's fd duplicated.
    Setup(io::Error),
    /// Starting the successor failed (exec, fork).
    Spawn(PathBuf, io::Error),
    /// The successor exited before it reported ready (its status).
    Exited { pid: u32, status: ExitStatus },
    /// The successor closed the readiness pipe without reporting ready, and was killed.
    NotReady { pid: u32 },
    /// The successor did not report ready within the timeout, and was killed.
    Timeout { pid: u32, timeout: Duration },
    /// The successor side: the inherited fds named by the environment are not usable.
    Inherited(String),
    /// The successor side: reporting ready on the pipe failed.
    Report(io::Error),
}

impl fmt::Display for HandoffError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::CurrentExe(e) => write!(f, "cannot find this program's executable: {e}"),
            Self::Setup(e) => write!(f, "cannot prepare the handoff: {e}"),
            Self::Spawn(exe, e) => write!(f, "cannot start the successor {}: {e}", exe.display()),
            Self::Exited { pid, status } => {
                write!(f, "the successor (pid {pid}) exited before it was ready: {status}")
            }
            Self::NotReady { pid } => {
                write!(f, "the successor (pid {pid}) closed the readiness pipe without reporting ready")
            }
            Self::Timeout { pid, timeout } => write!(
                f,
                "the successor (pid {pid}) did not report ready within {timeout:?} and was killed \
                 (does it call handoff::ready once it serves?)"
            ),
            Self::Inherited(why) => write!(f, "the handed-over socket cannot be used: {why}"),
            Self::Report(e) => write!(f, "cannot report ready to the predecessor: {e}"),
        }
    }
}

impl std::error::Error for HandoffError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::CurrentExe(e) | Self::Setup(e) | Self::Spawn(_, e) | Self::Report(e) => Some(e),
            _ => None,
        }
    }
}

/// The old process's side: hands a listening socket to a new copy of this program.
#[derive(Debug)]
pub struct Handoff {
    /// A duplicate of the server's listening socket (same socket, own fd).
    listener: OwnedFd,
    ready_timeout: Duration,
}

impl Handoff {
    /// Prepares to hand `listener` over (keeps a duplicate of its fd; the server gets the
    /// listener itself).
    pub fn new(listener: &Listener) -> Result<Self, HandoffError> {
        let listener = listener.as_fd().try_clone_to_owned().map_err(HandoffError::Setup)?;
        Ok(Self { listener, ready_timeout: DEFAULT_READY_TIMEOUT })
    }

    /// How long the successor has to report ready (default 30 s).
    pub fn with_ready_timeout(mut self, timeout: Duration) -> Self {
        self.ready_timeout = timeout;
        self
    }

    /// Starts this program again (the file at its executable's path, the same arguments)
    /// with the listening socket inherited, and waits for it to report ready; then marks
    /// the socket handed over (a Unix socket's file stays when this process's listener is
    /// dropped). Returns the successor's pid: stop accepting and drain now (the graceful
    /// shutdown, as [`Self::hand_over`] does). On an error nothing changed here: this
    /// process still serves (the successor, if it was started, was killed and reaped).
    pub fn start_successor(&self) -> Result<u32, HandoffError> {
        let exe = successor_exe()?;
        let pid = self.start(Command::new(&exe).args(std::env::args_os().skip(1)))?;
        HANDED_OVER.store(true, Ordering::SeqCst);
        Ok(pid)
    }

    /// [`Self::start_successor`], then the graceful shutdown through `shutdown`: this
    /// process stops accepting, drains its in-flight requests within
    /// `Limits::shutdown_timeout` and its server returns (which may be before this returns:
    /// say what happened before the process can exit, or use `start_successor`).
    pub fn hand_over(&self, shutdown: &ShutdownHandle) -> Result<u32, HandoffError> {
        let pid = self.start_successor()?;
        shutdown.shutdown();
        Ok(pid)
    }

    /// Starts `command` with the socket and the readiness pipe inherited and waits for it
    /// to report ready; its pid. (The test seam of [`Self::hand_over`].)
    fn start(&self, command: &mut Command) -> Result<u32, HandoffError> {
        let (mut ready_read, ready_write) = io::pipe().map_err(HandoffError::Setup)?;
        let listen_fd = self.listener.as_raw_fd();
        let ready_fd = ready_write.as_raw_fd();
        command
            .env(INHERITED_FD_VAR, listen_fd.to_string())
            .env(READY_FD_VAR, ready_fd.to_string())
            .env(PARENT_PID_VAR, std::process::id().to_string());
        // SAFETY: the closure runs in the child between fork and exec, where only
        // async-signal-safe calls are allowed: it makes two `fcntl(F_SETFD, 0)` syscalls
        // (async-signal-safe per POSIX) on fds this process keeps open until `spawn`
        // returns (`self.listener` is borrowed by `&self`, `ready_write` lives below), and
        // neither allocates nor takes locks.
        unsafe {
            command.pre_exec(move || {
                for fd in [listen_fd, ready_fd] {
                    if libc::fcntl(fd, libc::F_SETFD, 0) == -1 {
                        return Err(io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        let exe = PathBuf::from(command.get_program());
        let mut child = command.spawn().map_err(|e| HandoffError::Spawn(exe, e))?;
        drop(ready_write); // EOF when the child closes or loses its end
        let pid = child.id();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut byte = [0u8; 1];
            let _ = tx.send(ready_read.read(&mut byte));
        });
        match rx.recv_timeout(self.ready_timeout) {
            Ok(Ok(1)) => Ok(pid),
            Ok(_) => Err(reap(&mut child, HandoffError::NotReady { pid })),
            Err(_) => Err(reap(&mut child, HandoffError::Timeout { pid, timeout: self.ready_timeout })),
        }
    }
}

/// This program's executable. An executable replaced on disk since this process started
/// (a new version moved over it) reads as `PATH (deleted)` on Linux: the file now at PATH
/// is the one to start.
fn successor_exe() -> Result<PathBuf, HandoffError> {
    let exe = std::env::current_exe().map_err(HandoffError::CurrentExe)?;
    match exe.to_str().and_then(|path| path.strip_suffix(" (deleted)")) {
        Some(path) if !exe.exists() => Ok(PathBuf::from(path)),
        _ => Ok(exe),
    }
}

/// A successor that will not serve: its exit status if it exited, else kills it; reaps it.
fn reap(child: &mut Child, otherwise: HandoffError) -> HandoffError {
    // It may be on its way out after closing the pipe: give it a moment to say why.
    for _ in 0..50 {
        if let Ok(Some(status)) = child.try_wait() {
            return HandoffError::Exited { pid: child.id(), status };
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.wait();
    otherwise
}

/// What the environment handed this process, read once.
struct Inherited {
    listener: Option<OwnedFd>,
    ready: Option<OwnedFd>,
}

static INHERITED: Mutex<Option<Result<Inherited, String>>> = Mutex::new(None);

/// Parses the three variables for a process whose parent is `parent`: the two fds, or
/// `None` if the variables are not for this process (not set, or another parent's).
pub(crate) fn parse(
    parent: u32,
    parent_pid: Option<&str>,
    listen_fd: Option<&str>,
    ready_fd: Option<&str>,
) -> Result<Option<(RawFd, RawFd)>, String> {
    let (Some(parent_pid), Some(listen_fd), Some(ready_fd)) = (parent_pid, listen_fd, ready_fd) else {
        return Ok(None);
    };
    let pid: u32 = parent_pid.parse().map_err(|_| format!("{PARENT_PID_VAR}={parent_pid:?}"))?;
    if pid != parent {
        return Ok(None); // meant for a sibling: inherited through a later exec
    }
    let fd = |name: &str, value: &str| {
        value.parse::<RawFd>().ok().filter(|fd| *fd > 2).ok_or_else(|| format!("{name}={value:?}"))
    };
    let (listen, ready) = (fd(INHERITED_FD_VAR, listen_fd)?, fd(READY_FD_VAR, ready_fd)?);
    if listen == ready {
        return Err(format!("{INHERITED_FD_VAR} and {READY_FD_VAR} are both {listen}"));
    }
    Ok(Some((listen, ready)))
}

/// Reads the variables and adopts the two fds (marked close-on-exec again).
fn read_env() -> Result<Inherited, String> {
    let var = |name| std::env::var(name).ok();
    let Some((listen, ready)) = parse(
        std::os::unix::process::parent_id(),
        var(PARENT_PID_VAR).as_deref(),
        var(INHERITED_FD_VAR).as_deref(),
        var(READY_FD_VAR).as_deref(),
    )?
    else {
        return Ok(Inherited { listener: None, ready: None });
    };
    // SAFETY: our parent (checked: `EMBER_FCGI_PARENT_PID` is its pid) set these variables
    // for this process when it started it, naming fds it left open across exec for us.
    // Nothing else in this process owns them: they are adopted once, under the lock. Should
    // they not be open, the checks below fail with EBADF before they are adopted.
    let (listen_borrowed, ready_borrowed) =
        unsafe { (BorrowedFd::borrow_raw(listen), BorrowedFd::borrow_raw(ready)) };
    let sock = SockRef::from(&listen_borrowed);
    let is_listener = sock.r#type().ok() == Some(Type::STREAM) && sock.is_listener().unwrap_or(false);
    if !is_listener {
        return Err(format!("{INHERITED_FD_VAR}={listen} is not a listening stream socket"));
    }
    let is_pipe = ready_borrowed
        .try_clone_to_owned()
        .and_then(|fd| std::fs::File::from(fd).metadata())
        .is_ok_and(|m| m.file_type().is_fifo());
    if !is_pipe {
        return Err(format!("{READY_FD_VAR}={ready} is not a pipe"));
    }
    let _ = sock.set_cloexec(true);
    // SAFETY: as above; checked open and of the right kind, adopted exactly once.
    let (listener, ready) = unsafe { (OwnedFd::from_raw_fd(listen), OwnedFd::from_raw_fd(ready)) };
    let _ = SockRef::from(&ready).set_cloexec(true);
    Ok(Inherited { listener: Some(listener), ready: Some(ready) })
}

fn with_inherited<T>(f: impl FnOnce(&mut Inherited) -> T) -> Result<T, String> {
    let mut guard = INHERITED.lock().unwrap_or_else(PoisonError::into_inner);
    let inherited = guard.get_or_insert_with(read_env).as_mut().map_err(|e| e.clone())?;
    Ok(f(inherited))
}

/// Whether this process was started by [`Handoff::hand_over`] (and has not reported ready).
pub fn is_successor() -> bool {
    with_inherited(|i| i.ready.is_some()).unwrap_or(false)
}

/// The successor's side, called by [`Listener::bind`]: the handed-over socket if there is
/// one and it is where `listen` asks to listen (the socket is taken once).
pub(crate) fn take_listener(listen: &Listen) -> Result<Option<Listener>, String> {
    with_inherited(|inherited| {
        let Some(fd) = inherited.listener.as_ref() else { return Ok(None) };
        let local = SockRef::from(fd).local_addr().map_err(|e| format!("getsockname: {e}"))?;
        let matches = match (listen, local.as_socket(), local.as_pathname()) {
            (Listen::Tcp(want), Some(have), _) => {
                want == &have || (want.port() == 0 && want.ip() == have.ip())
            }
            (Listen::Unix { path, .. }, _, Some(have)) => path == have,
            (Listen::Systemd(_) | Listen::Inherited, ..) => true,
            _ => false,
        };
        if !matches {
            let have = local
                .as_socket()
                .map(|a| a.to_string())
                .or_else(|| local.as_pathname().map(|p| format!("unix:{}", p.display())))
                .unwrap_or_else(|| "an unnamed socket".into());
            return Err(format!("the predecessor handed over {have}, but this process listens on {listen}"));
        }
        let Some(fd) = inherited.listener.take() else { return Ok(None) };
        Ok(Some(match local.as_pathname() {
            // The successor owns the file from now on (removed when it stops for good).
            Some(path) => Listener::Unix(UnixListener::from(fd), Some(path.to_path_buf())),
            None if local.is_unix() => Listener::Unix(UnixListener::from(fd), None),
            None => Listener::Tcp(TcpListener::from(fd)),
        }))
    })?
}

/// The successor's side: tells the process that started it (through
/// [`Handoff::hand_over`]) that it serves, so that one stops accepting and drains. Call
/// it once the server is set up, right before running it. Returns `Ok(false)`, doing
/// nothing, in a process that was not started by a handoff (or already reported).
pub fn ready() -> Result<bool, HandoffError> {
    let ready = with_inherited(|i| i.ready.take()).map_err(HandoffError::Inherited)?;
    let Some(fd) = ready else { return Ok(false) };
    let mut pipe = std::fs::File::from(fd);
    pipe.write_all(b"R").map_err(HandoffError::Report)?;
    Ok(true)
}

/// Used by [`Listener`]'s drop: whether a Unix socket's file must stay: this process
/// handed the socket over, or it is a successor that has not reported ready (should it
/// fail now, its predecessor goes on serving the file).
pub(crate) fn keep_socket_file() -> bool {
    handed_over() || is_successor()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_variables() {
        assert_eq!(parse(7, None, None, None), Ok(None));
        assert_eq!(parse(7, Some("7"), Some("3"), None), Ok(None));
        assert_eq!(parse(7, Some("7"), Some("3"), Some("5")), Ok(Some((3, 5))));
        assert_eq!(parse(7, Some("8"), Some("3"), Some("5")), Ok(None), "another parent's");
        assert!(parse(7, Some("x"), Some("3"), Some("5")).is_err());
        assert!(parse(7, Some("7"), Some("1"), Some("5")).is_err(), "stdio is never handed over");
        assert!(parse(7, Some("7"), Some("4"), Some("4")).is_err());
        assert!(parse(7, Some("7"), Some("-4"), Some("5")).is_err());
    }

    #[test]
    fn a_test_process_is_no_successor() {
        if std::env::var_os(INHERITED_FD_VAR).is_none() {
            assert!(!is_successor());
            assert!(!ready().unwrap());
        }
    }

    #[test]
    fn a_successor_that_exits_is_reported_and_the_socket_stays_ours() {
        let listener = Listener::bind(&"127.0.0.1:0".parse().unwrap()).unwrap();
        let handoff = Handoff::new(&listener).unwrap().with_ready_timeout(Duration::from_secs(10));
        match handoff.start(Command::new("/bin/sh").args(["-c", "exit 3"])) {
            Err(HandoffError::Exited { status, .. }) => assert_eq!(status.code(), Some(3)),
            other => panic!("{other:?}"),
        }
        assert!(!handed_over());
        let silent = handoff.with_ready_timeout(Duration::from_millis(200));
        match silent.start(Command::new("/bin/sh").args(["-c", "sleep 5"])) {
            Err(e @ HandoffError::Timeout { .. }) => assert!(e.to_string().contains("did not report ready")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_successor_reports_ready_on_the_inherited_pipe() {
        let listener = Listener::bind(&"127.0.0.1:0".parse().unwrap()).unwrap();
        let handoff = Handoff::new(&listener).unwrap().with_ready_timeout(Duration::from_secs(10));
        // The shell writes to the fd the variable names, as `ready` does.
        let script = "test -n \"$EMBER_FCGI_INHERITED_FD\" && printf R >&\"$EMBER_FCGI_READY_FD\"";
        let pid = handoff.start(Command::new("bash").args(["-c", script])).unwrap();
        assert!(pid > 0);
    }
}
