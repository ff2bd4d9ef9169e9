//! Users and groups for a Unix socket's owner: a name or a numeric id, and the lookup of a
//! name in the system's user database (`getpwnam_r` / `getgrnam_r`, so NSS sources such as
//! LDAP count too, not only `/etc/passwd`).

use std::ffi::{CString, c_char, c_int};
use std::fmt;
use std::io;
use std::mem::MaybeUninit;
use std::str::FromStr;

/// A user or group as `chown` takes it: a name, looked up when the socket is bound, or a
/// numeric id, used as it is. Parsed from text, all digits is an id (`33`), anything else a
/// name (`www-data`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum NameOrId {
    /// A user or group name (`www-data`).
    Name(String),
    /// A numeric uid or gid.
    Id(u32),
}

impl From<u32> for NameOrId {
    fn from(id: u32) -> Self {
        Self::Id(id)
    }
}

impl From<&str> for NameOrId {
    /// A name, even if it is all digits (use `u32` for an id).
    fn from(name: &str) -> Self {
        Self::Name(name.to_owned())
    }
}

/// Text that is neither a name nor an id: empty, a NUL byte, or too many digits for an id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseNameOrIdError(pub String);

impl fmt::Display for ParseNameOrIdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid user or group {:?}: expected a name or a numeric id", self.0)
    }
}

impl std::error::Error for ParseNameOrIdError {}

impl FromStr for NameOrId {
    type Err = ParseNameOrIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || ParseNameOrIdError(s.to_owned());
        if s.is_empty() || s.contains('\0') {
            return Err(bad());
        }
        if s.bytes().all(|b| b.is_ascii_digit()) {
            return s.parse().map(Self::Id).map_err(|_| bad());
        }
        Ok(Self::Name(s.to_owned()))
    }
}

impl fmt::Display for NameOrId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Name(name) => f.write_str(name),
            Self::Id(id) => write!(f, "{id}"),
        }
    }
}

/// The uid of user `name`; `Ok(None)` if there is no such user.
pub(crate) fn user_id(name: &str) -> io::Result<Option<u32>> {
    lookup(
        name,
        |name, entry: *mut libc::passwd, buf, len, result| {
            // SAFETY: `name` is NUL-terminated; `entry`, `buf` (of `len` bytes) and `result`
            // are valid for writes for the duration of the call (see `lookup`).
            unsafe { libc::getpwnam_r(name, entry, buf, len, result) }
        },
        |entry| entry.pw_uid,
    )
}

/// The gid of group `name`; `Ok(None)` if there is no such group.
pub(crate) fn group_id(name: &str) -> io::Result<Option<u32>> {
    lookup(
        name,
        |name, entry: *mut libc::group, buf, len, result| {
            // SAFETY: as in `user_id`.
            unsafe { libc::getgrnam_r(name, entry, buf, len, result) }
        },
        |entry| entry.gr_gid,
    )
}

/// Calls a `get*nam_r` function with a buffer that grows (to 1 MiB) while it reports
/// `ERANGE`, and reads the id out of the entry it found.
fn lookup<T>(
    name: &str,
    call: impl Fn(*const c_char, *mut T, *mut c_char, usize, *mut *mut T) -> c_int,
    id: impl Fn(&T) -> u32,
) -> io::Result<Option<u32>> {
    let Ok(name) = CString::new(name) else {
        return Ok(None); // no user database holds a name with a NUL in it
    };
    let mut buf: Vec<c_char> = vec![0; 1024];
    let mut entry = MaybeUninit::<T>::uninit();
    loop {
        let mut result: *mut T = std::ptr::null_mut();
        match call(name.as_ptr(), entry.as_mut_ptr(), buf.as_mut_ptr(), buf.len(), &mut result) {
            0 if result.is_null() => return Ok(None),
            // SAFETY: a zero return with `result` set means the function filled in `entry`
            // (`result` points at it); its string fields point into `buf`, still alive.
            0 => return Ok(Some(id(unsafe { entry.assume_init_ref() }))),
            libc::ERANGE if buf.len() < 1 << 20 => buf.resize(buf.len() * 2, 0),
            // Some systems say "not found" with an error number (getpwnam_r(3)).
            libc::ENOENT | libc::ESRCH => return Ok(None),
            e => return Err(io::Error::from_raw_os_error(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_and_ids() {
        assert_eq!("www-data".parse::<NameOrId>(), Ok(NameOrId::Name("www-data".into())));
        assert_eq!("33".parse::<NameOrId>(), Ok(NameOrId::Id(33)));
        assert_eq!("0".parse::<NameOrId>(), Ok(NameOrId::Id(0)));
        assert_eq!("u1".parse::<NameOrId>(), Ok(NameOrId::Name("u1".into())));
        assert!("".parse::<NameOrId>().is_err());
        assert!("a\0b".parse::<NameOrId>().is_err());
        assert_eq!(
            "99999999999".parse::<NameOrId>().unwrap_err().to_string(),
            "invalid user or group \"99999999999\": expected a name or a numeric id"
        );
        assert_eq!(NameOrId::Id(33).to_string(), "33");
        assert_eq!(NameOrId::from("www-data").to_string(), "www-data");
    }

    #[test]
    fn looks_up_root_and_misses_unknown_names() {
        // root is uid 0 and group root (or wheel, on the BSDs) gid 0 everywhere we run.
        assert_eq!(user_id("root").unwrap(), Some(0));
        let root_group = if cfg!(target_os = "linux") { "root" } else { "wheel" };
        assert_eq!(group_id(root_group).unwrap(), Some(0));
        assert_eq!(user_id("no-such-user-ember-fcgi").unwrap(), None);
        assert_eq!(group_id("no-such-group-ember-fcgi").unwrap(), None);
        assert_eq!(user_id("nul\0name").unwrap(), None);
    }
}
