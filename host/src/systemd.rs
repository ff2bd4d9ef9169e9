//! systemd socket activation (`sd_listen_fds`): the listening sockets a launcher passes from
//! fd 3 on, announced by `LISTEN_PID` (this process), `LISTEN_FDS` (how many) and
//! `LISTEN_FDNAMES` (their `FileDescriptorName=`s, `:`-separated). systemd and its
//! `systemd-socket-activate` tool do this.
//!
//! The variables are read once, the first time a systemd socket is asked for, and left in
//! the environment: removing them (`sd_listen_fds(1)`) races with any thread that reads the
//! environment, which no safe function may allow. A child process still takes none of
//! them: `LISTEN_PID` names this process, and the sockets are marked close-on-exec. Each
//! socket can be taken once.

use std::fmt;
use std::net::TcpListener;
use std::os::fd::{BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;
use std::sync::{Mutex, PoisonError};

use socket2::{SockRef, Type};

use crate::listen::Listener;

/// The first fd systemd passes (`SD_LISTEN_FDS_START`).
const FIRST_FD: RawFd = 3;
/// The name of a socket when `LISTEN_FDNAMES` does not give one (as sd-daemon says).
const UNKNOWN: &str = "unknown";

/// Why no systemd socket could be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SystemdError {
    /// `LISTEN_FDS` is not set: the process was not socket-activated.
    NotActivated,
    /// `LISTEN_PID` names another process (the variables were inherited, not meant for us).
    OtherProcess { listen_pid: String },
    /// `LISTEN_PID`, `LISTEN_FDS` or `LISTEN_FDNAMES` cannot be understood.
    Malformed(String),
    /// No socket with this name was passed (the names that were, in order).
    NoSuchName { name: String, passed: Vec<String> },
    /// Every passed socket (with that name) is already in use.
    AllTaken,
    /// The fd is not a listening stream socket (e.g. `ListenDatagram=`).
    NotAListener { fd: RawFd, why: String },
}

impl fmt::Display for SystemdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotActivated => {
                f.write_str("LISTEN_FDS is not set: not started by systemd socket activation")
            }
            Self::OtherProcess { listen_pid } => {
                write!(f, "LISTEN_PID={listen_pid} is another process: the sockets are not ours")
            }
            Self::Malformed(what) => write!(f, "bad socket activation variables: {what}"),
            Self::NoSuchName { name, passed } => {
                write!(f, "no socket named {name:?} was passed by systemd (passed: {})", passed.join(", "))
            }
            Self::AllTaken => f.write_str("every socket passed by systemd is already in use"),
            Self::NotAListener { fd, why } => {
                write!(f, "fd {fd} from systemd is not a listening stream socket: {why}")
            }
        }
    }
}

impl std::error::Error for SystemdError {}

/// One passed socket: its fd and its name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SystemdSocket {
    pub fd: RawFd,
    pub name: String,
}

/// What the environment said, read once.
struct Passed {
    sockets: Vec<SystemdSocket>,
    taken: Vec<bool>,
}

static PASSED: Mutex<Option<Result<Passed, SystemdError>>> = Mutex::new(None);

/// Parses the three variables for a process with id `pid`.
pub(crate) fn parse(
    pid: u32,
    listen_pid: Option<&str>,
    listen_fds: Option<&str>,
    names: Option<&str>,
) -> Result<Vec<SystemdSocket>, SystemdError> {
    let fds = listen_fds.ok_or(SystemdError::NotActivated)?;
    let listen_pid =
        listen_pid.ok_or_else(|| SystemdError::Malformed("LISTEN_FDS without LISTEN_PID".into()))?;
    let owner: u32 =
        listen_pid.parse().map_err(|_| SystemdError::Malformed(format!("LISTEN_PID={listen_pid:?}")))?;
    if owner != pid {
        return Err(SystemdError::OtherProcess { listen_pid: listen_pid.into() });
    }
    let count: RawFd = fds
        .parse()
        .ok()
        .filter(|n| (0..=1 << 16).contains(n))
        .ok_or_else(|| SystemdError::Malformed(format!("LISTEN_FDS={fds:?}")))?;
    let names: Vec<&str> = names.map(|n| n.split(':').collect()).unwrap_or_default();
    if !names.is_empty() && names.len() != count as usize {
        return Err(SystemdError::Malformed(format!(
            "LISTEN_FDNAMES has {} names for {count} fds",
            names.len()
        )));
    }
    Ok((0..count)
        .map(|i| SystemdSocket {
            fd: FIRST_FD + i,
            name: names.get(i as usize).map_or(UNKNOWN, |n| n).to_owned(),
        })
        .collect())
}

/// Reads the variables (the first time only; they stay set, see the module doc) and marks
/// the fds close-on-exec.
fn read_env() -> Result<Passed, SystemdError> {
    let var = |name| std::env::var(name).ok();
    let sockets = parse(
        std::process::id(),
        var("LISTEN_PID").as_deref(),
        var("LISTEN_FDS").as_deref(),
        var("LISTEN_FDNAMES").as_deref(),
    )?;
    for socket in &sockets {
        let _ = with_fd(socket.fd, |sock| sock.set_cloexec(true));
    }
    let taken = vec![false; sockets.len()];
    Ok(Passed { sockets, taken })
}

/// Runs `f` on `fd` without taking ownership.
fn with_fd<T>(fd: RawFd, f: impl FnOnce(SockRef<'_>) -> std::io::Result<T>) -> std::io::Result<T> {
    // SAFETY: `fd` is one of the fds systemd passed to this process (from 3 to 3 +
    // LISTEN_FDS, for our LISTEN_PID) and not yet owned by anything here (each is taken
    // once, under the lock). If the launcher lied and it is not open, the syscalls fail
    // with EBADF.
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    f(SockRef::from(&borrowed))
}

/// The sockets systemd passed to this process, in order (reads the environment the first
/// time; later calls return the same list, taken or not).
pub fn systemd_sockets() -> Result<Vec<SystemdSocket>, SystemdError> {
    let mut passed = PASSED.lock().unwrap_or_else(PoisonError::into_inner);
    let passed = passed.get_or_insert_with(read_env);
    passed.as_ref().map(|p| p.sockets.clone()).map_err(Clone::clone)
}

/// Whether this process was socket-activated (`LISTEN_PID` is ours, or was when read).
pub(crate) fn activated() -> bool {
    systemd_sockets().is_ok()
}

/// Takes the first socket not yet taken (named `name` if given) as a listener.
pub(crate) fn take(name: Option<&str>) -> Result<Listener, SystemdError> {
    let mut guard = PASSED.lock().unwrap_or_else(PoisonError::into_inner);
    let passed = guard.get_or_insert_with(read_env).as_mut().map_err(|e| e.clone())?;
    let matches = |s: &SystemdSocket| name.is_none_or(|n| s.name == n);
    if let Some(name) = name
        && !passed.sockets.iter().any(matches)
    {
        let passed = passed.sockets.iter().map(|s| s.name.clone()).collect();
        return Err(SystemdError::NoSuchName { name: name.into(), passed });
    }
    let index = (0..passed.sockets.len())
        .find(|&i| !passed.taken[i] && matches(&passed.sockets[i]))
        .ok_or(SystemdError::AllTaken)?;
    let fd = passed.sockets[index].fd;
    let not_listener = |why: String| SystemdError::NotAListener { fd, why };
    let unix = with_fd(fd, |sock| {
        if sock.r#type()? != Type::STREAM || !sock.is_listener()? {
            return Err(std::io::Error::other("not SOCK_STREAM, or not listening"));
        }
        Ok(sock.local_addr()?.is_unix())
    })
    .map_err(|e| not_listener(e.to_string()))?;
    passed.taken[index] = true;
    // SAFETY: as in `with_fd`; it is now marked taken, so nothing else will own it.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    Ok(if unix {
        Listener::Unix(UnixListener::from(owned), None)
    } else {
        Listener::Tcp(TcpListener::from(owned))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_variables() {
        let two = parse(42, Some("42"), Some("2"), Some("web:status")).unwrap();
        assert_eq!(
            two,
            [SystemdSocket { fd: 3, name: "web".into() }, SystemdSocket { fd: 4, name: "status".into() }]
        );
        let unnamed = parse(42, Some("42"), Some("1"), None).unwrap();
        assert_eq!(unnamed, [SystemdSocket { fd: 3, name: "unknown".into() }]);
        assert_eq!(parse(42, None, None, None), Err(SystemdError::NotActivated));
        assert_eq!(
            parse(42, Some("41"), Some("1"), None),
            Err(SystemdError::OtherProcess { listen_pid: "41".into() })
        );
        assert!(matches!(parse(42, None, Some("1"), None), Err(SystemdError::Malformed(_))));
        assert!(matches!(parse(42, Some("x"), Some("1"), None), Err(SystemdError::Malformed(_))));
        assert!(matches!(parse(42, Some("42"), Some("-1"), None), Err(SystemdError::Malformed(_))));
        assert!(matches!(parse(42, Some("42"), Some("2"), Some("one")), Err(SystemdError::Malformed(_))));
    }

    #[test]
    fn a_test_process_is_not_activated() {
        // Unless someone runs the tests under systemd-socket-activate.
        if std::env::var_os("LISTEN_FDS").is_none() {
            assert_eq!(systemd_sockets(), Err(SystemdError::NotActivated));
            assert!(!activated());
        }
    }
}
