//! What `/proc` says about processes and sockets: which processes a server started, and
//! which sockets listen on a port (so a test knows the port is really its server's).

use std::process::{Command, Stdio};

/// The socket inodes listening on TCP `port` (any address), from `/proc/net/tcp{,6}`.
/// The kernel lists listening sockets first; with `all` false the reading stops at the
/// first other one (a machine may have tens of thousands of TIME_WAIT sockets, and
/// parsing them all takes the unoptimized test build half a second).
pub fn listening_sockets(port: u16, all: bool) -> Vec<u64> {
    use std::io::BufRead as _;
    let mut inodes = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(file) = std::fs::File::open(table) else { continue };
        for line in std::io::BufReader::with_capacity(1 << 16, file).lines().skip(1) {
            let Ok(line) = line else { break };
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.get(3) != Some(&"0A") {
                if all {
                    continue;
                }
                break;
            }
            let local_port = fields.get(1).and_then(|a| a.rsplit_once(':')).map(|(_, p)| p);
            if local_port.and_then(|p| u16::from_str_radix(p, 16).ok()) == Some(port)
                && let Some(inode) = fields.get(9).and_then(|i| i.parse().ok())
            {
                inodes.push(inode);
            }
        }
    }
    inodes
}

/// The socket inodes among the open files of process `pid`.
pub fn sockets_of(pid: u32) -> Vec<u64> {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else { return Vec::new() };
    fds.filter_map(|fd| {
        let target = std::fs::read_link(fd.ok()?.path()).ok()?;
        target.to_str()?.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
    })
    .collect()
}

pub fn signal(name: &str, pid: u32) {
    let _ = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// A process's state letter (`R`, `S`, `Z`, ...), `None` once it is gone.
pub fn process_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

pub fn parent(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse().ok()
}

pub fn command_line(pid: u32) -> Vec<String> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    raw.split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect()
}

/// All live descendants of `root`, from `/proc`.
pub fn descendants(root: u32) -> Vec<(u32, Vec<String>)> {
    let pids: Vec<u32> = std::fs::read_dir("/proc")
        .map(|dir| dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect())
        .unwrap_or_default();
    let links: Vec<(u32, u32)> = pids.iter().filter_map(|&pid| Some((pid, parent(pid)?))).collect();
    let mut found = vec![root];
    let mut i = 0;
    while i < found.len() {
        let of = found[i];
        found.extend(links.iter().filter(|(_, ppid)| *ppid == of).map(|(pid, _)| *pid));
        i += 1;
    }
    found.into_iter().skip(1).map(|pid| (pid, command_line(pid))).collect()
}
