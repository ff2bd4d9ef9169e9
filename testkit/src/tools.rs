//! External tools the end-to-end tests drive. A missing tool fails the test that needs it,
//! in CI and outside it alike, with the command that installs it: a test that passes
//! because it did nothing would hide exactly the regressions it exists for.
//! `scripts/setup.sh` installs them all.

use std::io::Write as _;
use std::path::PathBuf;

/// Writes straight to the test process's stderr, past the test harness's output capture.
pub fn loud(message: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{message}");
}

/// A tool: `$env` if set (it must exist), else the first of `fixed` that exists, else
/// `name` on `PATH`.
pub fn find(env: &str, fixed: &[&str], name: &str) -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(env) {
        return Some(PathBuf::from(path)).filter(|p| p.is_file());
    }
    let on_path = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).map(|dir| dir.join(name)).collect::<Vec<_>>())
        .unwrap_or_default();
    fixed.iter().map(PathBuf::from).chain(on_path).find(|p| p.is_file())
}

/// [`find`], or a test failure that says how to install it (`apt` package `package`).
pub fn require(env: &str, fixed: &[&str], name: &str, package: &str) -> PathBuf {
    find(env, fixed, name).unwrap_or_else(|| {
        panic!(
            "{name} missing (looked at ${env}, {fixed:?} and PATH): run scripts/setup.sh \
             (or apt-get install -y {package}); this test does not pass without it"
        )
    })
}

pub fn nginx() -> PathBuf {
    require("NGINX", &["/usr/sbin/nginx"], "nginx", "nginx")
}

pub fn cgi_fcgi() -> PathBuf {
    require("CGI_FCGI", &["/usr/bin/cgi-fcgi"], "cgi-fcgi", "libfcgi-bin")
}

pub fn lighttpd() -> PathBuf {
    require("LIGHTTPD", &["/usr/sbin/lighttpd"], "lighttpd", "lighttpd")
}

pub fn apache2() -> PathBuf {
    require("APACHE2", &["/usr/sbin/apache2"], "apache2", "apache2")
}

/// Apache's mod_fcgid module (`$MOD_FCGID`, else Debian's path).
pub fn mod_fcgid() -> PathBuf {
    require("MOD_FCGID", &["/usr/lib/apache2/modules/mod_fcgid.so"], "mod_fcgid.so", "libapache2-mod-fcgid")
}

pub fn caddy() -> PathBuf {
    require("CADDY", &["/usr/bin/caddy"], "caddy", "caddy")
}

/// Fails the test unless the host has an IPv6 loopback (`::1`); tests of IPv6 listening
/// need one rather than passing without it.
pub fn require_ipv6_loopback() {
    if let Err(e) = std::net::TcpListener::bind("[::1]:0") {
        panic!(
            "no IPv6 loopback here ({e}): enable it (sysctl net.ipv6.conf.lo.disable_ipv6=0); this test does not pass without it"
        );
    }
}

/// Fails the test unless this process runs as root (effective uid 0), saying `why` it
/// needs to; such tests run as root in CI, and do not pass without having run.
pub fn require_root(why: &str) {
    use std::os::unix::fs::MetadataExt as _;
    // `/proc/self` belongs to the process's effective uid.
    let euid = match std::fs::metadata("/proc/self").map(|m| m.uid()) {
        Ok(0) => return,
        Ok(uid) => uid.to_string(),
        Err(e) => format!("unknown ({e})"),
    };
    panic!(
        "this test needs root ({why}) and runs as uid {euid}: run it as root (CI does), \
         e.g. sudo -E cargo test; it does not pass without having run"
    );
}

/// The uid, gid and group name of user `name` (`id(1)`), or a test failure.
pub fn user_ids(name: &str) -> (u32, u32, String) {
    let id = |flag: &str| {
        let output = std::process::Command::new("id").args([flag, name]).output().expect("run id(1)");
        assert!(output.status.success(), "id {flag} {name}: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    };
    let number = |flag: &str| id(flag).parse().unwrap_or_else(|_| panic!("id {flag} {name}: not a number"));
    (number("-u"), number("-g"), id("-gn"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_overrides_and_missing_tools_fail() {
        // `sh` exists on every machine these tests run on.
        assert!(find("EMBER_TESTKIT_NO_SUCH_VAR", &[], "sh").is_some());
        assert!(find("EMBER_TESTKIT_NO_SUCH_VAR", &["/nonexistent/x"], "no-such-tool-here").is_none());
        let failed = std::panic::catch_unwind(|| {
            require("EMBER_TESTKIT_NO_SUCH_VAR", &[], "no-such-tool-here", "pkg")
        });
        let message = *failed.expect_err("a missing tool fails").downcast::<String>().expect("message");
        assert!(
            message.contains("no-such-tool-here missing") && message.contains("scripts/setup.sh"),
            "{message}"
        );
    }
}
