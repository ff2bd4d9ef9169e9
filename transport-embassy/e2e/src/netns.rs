//! A network namespace created for one test and deleted when it is dropped, also when the
//! test panics; threads can enter it, and processes they start live in it.

use std::fs::File;
use std::process::Command;

use nix::sched::{CloneFlags, setns};

use crate::tools::run;

/// `ip netns add NAME`, with its loopback up; `ip netns del` on drop.
pub struct NetNs {
    name: String,
}

impl NetNs {
    /// Creates the namespace `ember-<tag>-<pid>` (a leftover of that name is replaced).
    pub fn create(tag: &str) -> Self {
        let name = format!("ember-{tag}-{}", std::process::id());
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        run("ip", &["netns", "add", &name]);
        let ns = Self { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `ip ARGS` inside the namespace.
    pub fn ip(&self, args: &[&str]) {
        let mut all = vec!["netns", "exec", &self.name, "ip"];
        all.extend_from_slice(args);
        run("ip", &all);
    }

    /// Runs `f` on a thread that has entered the namespace: its sockets, and the
    /// processes and threads it starts, are inside it. Panics in `f` propagate.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let path = format!("/var/run/netns/{}", self.name);
        std::thread::scope(|scope| {
            let handle = scope.spawn(|| {
                let file = File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
                setns(&file, CloneFlags::CLONE_NEWNET).unwrap_or_else(|e| panic!("setns {path}: {e}"));
                f()
            });
            match handle.join() {
                Ok(value) => value,
                Err(panic) => std::panic::resume_unwind(panic),
            }
        })
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.name]).output();
    }
}

/// Whether a namespace of that name exists (to check that a test cleaned up).
pub fn exists(name: &str) -> bool {
    let out = Command::new("ip").args(["netns", "list"]).output().expect("ip netns list");
    String::from_utf8_lossy(&out.stdout).lines().any(|line| line.split_whitespace().next() == Some(name))
}
