//! Listen addresses and binding, including the FastCGI launch convention: a listening
//! socket passed as file descriptor 0 (`FCGI_LISTENSOCK_FILENO`).

use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::account::{self, NameOrId};

/// Where a server listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Listen {
    /// A TCP address, IPv4 or IPv6.
    Tcp(SocketAddr),
    /// A Unix socket path. Right after binding, the socket file is given `owner` and
    /// `group` when set (`chown`: the owner needs root, a group root or membership), then
    /// `mode` (e.g. 0o660, so that a web server in `group` may connect; without it the
    /// umask decides). A stale socket file (nobody listening) is replaced.
    Unix { path: PathBuf, mode: Option<u32>, owner: Option<NameOrId>, group: Option<NameOrId> },
    /// The listening socket inherited as fd 0 (spawn-fcgi, lighttpd `bin-path`, mod_fcgid).
    Inherited,
    /// A socket passed by systemd socket activation (`LISTEN_FDS`, from fd 3): the first one,
    /// or the one whose `FileDescriptorName=` is given. TCP or Unix. The variables stay set;
    /// a child process ignores them, as `LISTEN_PID` names this one.
    Systemd(Option<String>),
}

impl Listen {
    /// A Unix socket at `path` with the umask's mode and this process's user and group.
    pub fn unix(path: impl Into<PathBuf>) -> Self {
        Self::Unix { path: path.into(), mode: None, owner: None, group: None }
    }

    /// Where a launcher put this process's socket: systemd's (`LISTEN_PID` is this
    /// process) if there is one, else fd 0 ([`Listen::Inherited`]).
    pub fn from_launcher() -> Self {
        if crate::systemd::activated() { Self::Systemd(None) } else { Self::Inherited }
    }
}

/// A listen address that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseListenError(pub String);

impl fmt::Display for ParseListenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid listen address {:?}: expected HOST:PORT, [V6]:PORT, unix:PATH, fd:0, systemd or systemd:NAME",
            self.0
        )
    }
}

impl std::error::Error for ParseListenError {}

impl FromStr for Listen {
    type Err = ParseListenError;

    /// `HOST:PORT`, `[V6]:PORT`, `unix:PATH` or `fd:0`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(path) = s.strip_prefix("unix:") {
            if path.is_empty() {
                return Err(ParseListenError(s.into()));
            }
            return Ok(Self::unix(path));
        }
        if s == "fd:0" {
            return Ok(Self::Inherited);
        }
        if s == "systemd" {
            return Ok(Self::Systemd(None));
        }
        if let Some(name) = s.strip_prefix("systemd:") {
            return Ok(Self::Systemd(Some(name.into())));
        }
        if let Ok(addr) = s.parse() {
            return Ok(Self::Tcp(addr));
        }
        s.to_socket_addrs()
            .ok()
            .and_then(|mut addrs| addrs.next())
            .map(Self::Tcp)
            .ok_or_else(|| ParseListenError(s.into()))
    }
}

impl fmt::Display for Listen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tcp(addr) => write!(f, "{addr}"),
            Self::Unix { path, .. } => write!(f, "unix:{}", path.display()),
            Self::Inherited => f.write_str("fd:0"),
            Self::Systemd(None) => f.write_str("systemd"),
            Self::Systemd(Some(name)) => write!(f, "systemd:{name}"),
        }
    }
}

/// Why binding failed; says which address and what went wrong.
#[derive(Debug)]
pub enum BindError {
    /// The address is in use (for a Unix path: another server is listening on it).
    InUse(Listen),
    /// fd 0 is not a listening socket (the process was not started by a FastCGI launcher).
    NoInheritedSocket,
    /// The directory that would hold the Unix socket `listen` does not exist.
    MissingDirectory(Listen, PathBuf),
    /// The owner asked for a Unix socket is not a user this system knows.
    UnknownUser(Listen, String),
    /// The group asked for a Unix socket is not a group this system knows.
    UnknownGroup(Listen, String),
    /// Looking up the user or group named (the second field) failed: the user database
    /// could not be read.
    Lookup(Listen, String, io::Error),
    /// Giving the Unix socket the owner and group `listen` names failed (`chown`;
    /// typically EPERM without root).
    Chown(Listen, io::Error),
    /// Setting the Unix socket's mode failed (`chmod`).
    Chmod(Listen, u32, io::Error),
    /// A predecessor handed this process a listening socket (`handoff`) that cannot be
    /// used here: not where `listen` asks to listen, or not a listening socket.
    HandedOver(Listen, String),
    /// Any other failure.
    Io(Listen, io::Error),
}

impl fmt::Display for BindError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InUse(listen) => write!(f, "cannot listen on {listen}: address in use"),
            Self::NoInheritedSocket => f.write_str(
                "no listen address given and fd 0 is not a listening socket (FCGI_LISTENSOCK_FILENO)",
            ),
            Self::MissingDirectory(listen, dir) => write!(
                f,
                "cannot listen on {listen}: the directory {} does not exist (create it first)",
                dir.display()
            ),
            Self::UnknownUser(listen, name) => {
                write!(f, "cannot listen on {listen}: no user named {name:?} for the socket's owner")
            }
            Self::UnknownGroup(listen, name) => {
                write!(f, "cannot listen on {listen}: no group named {name:?} for the socket's group")
            }
            Self::Lookup(listen, name, e) => {
                write!(f, "cannot listen on {listen}: looking up user or group {name:?} failed: {e}")
            }
            Self::Chown(listen, e) => {
                let (owner, group) = match listen {
                    Listen::Unix { owner, group, .. } => (owner.as_ref(), group.as_ref()),
                    _ => (None, None),
                };
                let to = match (owner, group) {
                    (Some(owner), Some(group)) => format!("owner {owner} and group {group}"),
                    (Some(owner), None) => format!("owner {owner}"),
                    (None, Some(group)) => format!("group {group}"),
                    (None, None) => "its owner".to_owned(),
                };
                write!(f, "cannot listen on {listen}: cannot give the socket {to}: {e}")?;
                if e.kind() == io::ErrorKind::PermissionDenied {
                    f.write_str(
                        " (changing the owner needs root; other users may only choose a group they are in)",
                    )?;
                }
                Ok(())
            }
            Self::Chmod(listen, mode, e) => {
                write!(f, "cannot listen on {listen}: cannot set the socket's mode to {mode:04o}: {e}")
            }
            Self::HandedOver(listen, why) => write!(f, "cannot listen on {listen}: {why}"),
            Self::Io(listen, e) => write!(f, "cannot listen on {listen}: {e}"),
        }
    }
}

impl std::error::Error for BindError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io(_, e) | Self::Lookup(_, _, e) | Self::Chown(_, e) | Self::Chmod(_, _, e) => Some(e),
            _ => None,
        }
    }
}

/// A bound, non-blocking std listener. A Unix listener removes its socket file when dropped
/// (unless the socket was handed over to a successor process).
#[derive(Debug)]
pub enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener, Option<PathBuf>),
}

impl Listener {
    /// Binds `listen` and sets the socket non-blocking. In a process a predecessor started
    /// to take over its socket (`handoff`), the socket handed over is taken instead when it
    /// is where `listen` asks to listen (or `listen` is `Systemd` or `Inherited`): a Unix
    /// socket's file is then neither removed nor bound again.
    pub fn bind(listen: &Listen) -> Result<Self, BindError> {
        if let Some(listener) =
            crate::handoff::take_listener(listen).map_err(|why| BindError::HandedOver(listen.clone(), why))?
        {
            listener.set_nonblocking().map_err(|e| BindError::Io(listen.clone(), e))?;
            return Ok(listener);
        }
        let io_err = |e: io::Error| match (e.kind(), listen) {
            (io::ErrorKind::AddrInUse, _) => BindError::InUse(listen.clone()),
            (io::ErrorKind::NotFound, Listen::Unix { path, .. }) => match missing_directory(path) {
                Some(dir) => BindError::MissingDirectory(listen.clone(), dir),
                None => BindError::Io(listen.clone(), e),
            },
            _ => BindError::Io(listen.clone(), e),
        };
        let listener = match listen {
            Listen::Tcp(addr) => Self::Tcp(TcpListener::bind(addr).map_err(io_err)?),
            Listen::Unix { path, mode, owner, group } => {
                // Names first: an unknown one fails before there is a socket file.
                let uid = owner.as_ref().map(|o| resolve(listen, o, Kind::User)).transpose()?;
                let gid = group.as_ref().map(|g| resolve(listen, g, Kind::Group)).transpose()?;
                remove_stale_socket(path).map_err(io_err)?;
                let l = UnixListener::bind(path).map_err(io_err)?;
                // From here on, a failure drops the listener, which removes the file.
                let l = Self::Unix(l, Some(path.clone()));
                if uid.is_some() || gid.is_some() {
                    // lchown: should someone swap the socket for a symlink meanwhile, root
                    // does not give away the file it points to.
                    std::os::unix::fs::lchown(path, uid, gid)
                        .map_err(|e| BindError::Chown(listen.clone(), e))?;
                }
                if let Some(mode) = *mode {
                    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
                        .map_err(|e| BindError::Chmod(listen.clone(), mode, e))?;
                }
                l
            }
            Listen::Inherited => inherited_fastcgi_socket().ok_or(BindError::NoInheritedSocket)?,
            Listen::Systemd(name) => crate::systemd::take(name.as_deref())
                .map_err(|e| BindError::Io(listen.clone(), io::Error::other(e)))?,
        };
        listener.set_nonblocking().map_err(io_err)?;
        Ok(listener)
    }

    /// Sets the socket non-blocking (as [`Self::bind`] does), for one made elsewhere.
    pub fn set_nonblocking(&self) -> io::Result<()> {
        match self {
            Self::Tcp(l) => l.set_nonblocking(true),
            Self::Unix(l, _) => l.set_nonblocking(true),
        }
    }

    /// Another handle to the same listening socket (`dup`), e.g. to run one server loop per
    /// core on it: every loop accepts from the one queue of pending connections. The clone
    /// does not own a Unix socket's file; only the original removes it when dropped.
    pub fn try_clone(&self) -> io::Result<Self> {
        Ok(match self {
            Self::Tcp(l) => Self::Tcp(l.try_clone()?),
            Self::Unix(l, _) => Self::Unix(l.try_clone()?, None),
        })
    }

    /// The TCP address actually bound (useful with port 0); `None` for Unix sockets.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        match self {
            Self::Tcp(l) => l.local_addr().ok(),
            Self::Unix(..) => None,
        }
    }

    /// Where this listener listens, for logs.
    pub fn describe(&self) -> String {
        match self {
            Self::Tcp(l) => l.local_addr().map_or_else(|_| "tcp".into(), |a| a.to_string()),
            Self::Unix(_, Some(path)) => format!("unix:{}", path.display()),
            Self::Unix(l, None) => {
                match l.local_addr().ok().and_then(|a| a.as_pathname().map(Path::to_path_buf)) {
                    Some(path) => format!("unix:{}", path.display()),
                    None => "unix:(inherited)".into(),
                }
            }
        }
    }
}

impl std::os::fd::AsFd for Listener {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        match self {
            Self::Tcp(l) => l.as_fd(),
            Self::Unix(l, _) => l.as_fd(),
        }
    }
}

impl Drop for Listener {
    /// Removes a Unix socket's file, unless this process handed the socket over to a
    /// successor (`handoff`), which serves it now.
    fn drop(&mut self) {
        if let Self::Unix(_, Some(path)) = self
            && !crate::handoff::keep_socket_file()
        {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Which user database [`resolve`] looks in.
#[derive(Clone, Copy)]
enum Kind {
    User,
    Group,
}

/// The numeric id of a socket's owner or group: an id as given, a name looked up.
fn resolve(listen: &Listen, who: &NameOrId, kind: Kind) -> Result<u32, BindError> {
    let name = match who {
        NameOrId::Id(id) => return Ok(*id),
        NameOrId::Name(name) => name,
    };
    let found = match kind {
        Kind::User => account::user_id(name),
        Kind::Group => account::group_id(name),
    };
    match (found, kind) {
        (Ok(Some(id)), _) => Ok(id),
        (Ok(None), Kind::User) => Err(BindError::UnknownUser(listen.clone(), name.clone())),
        (Ok(None), Kind::Group) => Err(BindError::UnknownGroup(listen.clone(), name.clone())),
        (Err(e), _) => Err(BindError::Lookup(listen.clone(), name.clone(), e)),
    }
}

/// The directory meant to hold socket `path`, if it does not exist (binding then fails with
/// a bare "No such file or directory" that does not say which part is missing).
fn missing_directory(path: &Path) -> Option<PathBuf> {
    let dir = path.parent().filter(|dir| !dir.as_os_str().is_empty())?;
    (!dir.is_dir()).then(|| dir.to_path_buf())
}

/// Removes `path` if it is a socket nobody listens on; fails with `AddrInUse` if someone does.
fn remove_stale_socket(path: &Path) -> io::Result<()> {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return Ok(());
    };
    if !meta.file_type().is_socket() {
        return Ok(()); // bind will report the conflict
    }
    match UnixStream::connect(path) {
        Ok(_) => Err(io::ErrorKind::AddrInUse.into()),
        Err(_) => std::fs::remove_file(path),
    }
}

/// The listening socket passed as fd 0, if this process was started the FastCGI way: fd 0
/// is a socket whose `getpeername` fails with ENOTCONN (FastCGI spec §2.2). The fd is
/// duplicated; fd 0 itself stays open.
pub fn inherited_fastcgi_socket() -> Option<Listener> {
    let stdin = io::stdin();
    let fd = stdin.as_fd();
    let sock = socket2::SockRef::from(&fd);
    match sock.peer_addr() {
        Err(e) if e.raw_os_error() == Some(libc_enotconn()) => {}
        _ => return None,
    }
    let local = sock.local_addr().ok()?;
    let owned: OwnedFd = fd.try_clone_to_owned().ok()?;
    if local.is_unix() {
        Some(Listener::Unix(UnixListener::from(owned), None))
    } else {
        Some(Listener::Tcp(TcpListener::from(owned)))
    }
}

/// ENOTCONN on Linux and the BSDs we run on.
const fn libc_enotconn() -> i32 {
    if cfg!(target_os = "linux") { 107 } else { 57 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_listen_addresses() {
        assert_eq!(
            "127.0.0.1:9000".parse::<Listen>().unwrap(),
            Listen::Tcp("127.0.0.1:9000".parse().unwrap())
        );
        assert_eq!("[::1]:9000".parse::<Listen>().unwrap(), Listen::Tcp("[::1]:9000".parse().unwrap()));
        assert_eq!("unix:/tmp/x.sock".parse::<Listen>().unwrap(), Listen::unix("/tmp/x.sock"));
        assert_eq!("fd:0".parse::<Listen>().unwrap(), Listen::Inherited);
        assert_eq!("systemd".parse::<Listen>().unwrap(), Listen::Systemd(None));
        assert_eq!("systemd:web".parse::<Listen>().unwrap(), Listen::Systemd(Some("web".into())));
        assert_eq!(Listen::Systemd(Some("web".into())).to_string(), "systemd:web");
        assert!("unix:".parse::<Listen>().is_err());
        assert!("nonsense".parse::<Listen>().is_err());
        assert!("localhost:9000".parse::<Listen>().is_ok());
    }

    #[test]
    fn stale_unix_socket_is_replaced_live_one_is_not() {
        let dir = std::env::temp_dir().join(format!("ember-host-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s.sock");
        let listen = Listen::Unix { path: path.clone(), mode: Some(0o600), owner: None, group: None };
        let first = Listener::bind(&listen).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(matches!(Listener::bind(&listen), Err(BindError::InUse(_))));
        drop(first);
        // A stale file: a socket bound by someone who exited without removing it.
        drop(UnixListener::bind(&path).unwrap());
        assert!(path.exists());
        let again = Listener::bind(&listen).unwrap();
        drop(again);
        assert!(!path.exists(), "the socket file is removed on drop");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// The effective uid and gid of this process (`/proc/self` belongs to them).
    fn effective_ids() -> (u32, u32) {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata("/proc/self").unwrap();
        (meta.uid(), meta.gid())
    }

    #[test]
    fn a_unix_socket_gets_its_owner_group_and_mode() {
        use std::os::unix::fs::MetadataExt;
        let dir = std::env::temp_dir().join(format!("ember-host-own-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("o.sock");
        let (uid, gid) = effective_ids();
        // Its own group: allowed to anyone.
        let own =
            Listen::Unix { path: path.clone(), mode: Some(0o660), owner: None, group: Some(gid.into()) };
        let l = Listener::bind(&own).unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!((meta.mode() & 0o7777, meta.gid()), (0o660, gid));
        drop(l);
        // Another owner: root may (to nobody, 65534), anyone else gets EPERM (giving it to
        // root) and no file.
        let other = if uid == 0 { 65534 } else { 0 };
        let away = Listen::Unix {
            path: path.clone(),
            mode: Some(0o640),
            owner: Some(other.into()),
            group: Some(other.into()),
        };
        match Listener::bind(&away) {
            Ok(l) => {
                assert_eq!(uid, 0, "only root may give a socket away");
                let meta = std::fs::metadata(&path).unwrap();
                assert_eq!((meta.mode() & 0o7777, meta.uid(), meta.gid()), (0o640, other, other));
                drop(l);
            }
            Err(e @ BindError::Chown(..)) => {
                assert_ne!(uid, 0, "root may chown: {e}");
                assert_eq!(
                    e.to_string(),
                    format!(
                        "cannot listen on unix:{}: cannot give the socket owner 0 and group 0: \
                         Operation not permitted (os error 1) (changing the owner needs root; other \
                         users may only choose a group they are in)",
                        path.display()
                    )
                );
                assert!(!path.exists(), "a socket that could not be given away is removed");
            }
            Err(e) => panic!("{e}"),
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn unknown_owner_or_group_fails_before_binding() {
        let dir = std::env::temp_dir().join(format!("ember-host-unknown-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("u.sock");
        let mut listen = Listen::unix(&path);
        if let Listen::Unix { owner, .. } = &mut listen {
            *owner = Some("no-such-user-ember".into());
        }
        let e = Listener::bind(&listen).unwrap_err();
        assert!(matches!(&e, BindError::UnknownUser(_, name) if name == "no-such-user-ember"), "{e:?}");
        assert_eq!(
            e.to_string(),
            format!(
                "cannot listen on unix:{}: no user named \"no-such-user-ember\" for the socket's owner",
                path.display()
            )
        );
        assert!(!path.exists(), "no socket file is left");
        let listen = Listen::Unix {
            path: path.clone(),
            mode: None,
            owner: None,
            group: Some("no-such-group-ember".into()),
        };
        let e = Listener::bind(&listen).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "cannot listen on unix:{}: no group named \"no-such-group-ember\" for the socket's group",
                path.display()
            )
        );
        assert!(!path.exists());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_missing_socket_directory_is_named() {
        let dir = std::env::temp_dir().join(format!("ember-host-missing-{}", std::process::id()));
        let listen = Listen::unix(dir.join("s.sock"));
        match Listener::bind(&listen) {
            Err(e @ BindError::MissingDirectory(..)) => assert_eq!(
                e.to_string(),
                format!(
                    "cannot listen on unix:{}/s.sock: the directory {} does not exist (create it first)",
                    dir.display(),
                    dir.display()
                )
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_clone_shares_the_socket_but_not_the_file() {
        let tcp = Listener::bind(&"127.0.0.1:0".parse().unwrap()).unwrap();
        let clone = tcp.try_clone().unwrap();
        assert_eq!(clone.local_addr(), tcp.local_addr());
        let dir = std::env::temp_dir().join(format!("ember-host-clone-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.sock");
        let unix = Listener::bind(&Listen::unix(&path)).unwrap();
        drop(unix.try_clone().unwrap());
        assert!(path.exists(), "dropping a clone keeps the socket file");
        let _client = UnixStream::connect(&path).expect("the original still listens");
        drop(unix);
        assert!(!path.exists(), "dropping the original removes it");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn stdin_of_a_test_is_not_a_fastcgi_socket() {
        assert!(inherited_fastcgi_socket().is_none());
    }
}
