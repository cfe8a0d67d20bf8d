//! Low-level network-namespace plumbing: running `ip`/`nft` commands, entering
//! a named netns from a thread, per-netns sysctls and clean-up of namespaces.
//!
//! Everything here acts on namespaces by their name under `/run/netns`
//! (the `ip netns` convention). A thread that enters a namespace stays in it
//! until it ends, so callers only ever enter from threads they spawn for that
//! purpose (see [`in_netns`]); the calling thread's namespace never changes.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use nix::sched::{setns, CloneFlags};

use super::LabError;

/// Directory where `ip netns add` bind-mounts named network namespaces.
pub const NETNS_DIR: &str = "/run/netns";

/// Path of the bind-mounted namespace file for `netns`.
pub fn netns_path(netns: &str) -> PathBuf {
    Path::new(NETNS_DIR).join(netns)
}

/// Runs `program args…`, feeding `stdin` if given, and returns its stdout.
///
/// A non-zero exit becomes [`LabError::Command`] naming the whole command
/// line and carrying its stderr.
pub fn run(program: &str, args: &[&str], stdin: Option<&str>) -> Result<String, LabError> {
    let line = command_line(program, args);
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|source| LabError::Io {
        context: format!("cannot start `{line}`"),
        source,
    })?;
    // A write error (the program exited early) is reported only if the
    // exit status does not already explain it.
    let mut write_error = None;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        write_error = pipe.write_all(text.as_bytes()).err();
    }
    let out = child.wait_with_output().map_err(|source| LabError::Io {
        context: format!("cannot wait for `{line}`"),
        source,
    })?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        match write_error {
            None => Ok(stdout),
            Some(source) => Err(LabError::Io {
                context: format!("cannot write stdin of `{line}`"),
                source,
            }),
        }
    } else {
        let mut stderr = String::from_utf8_lossy(&out.stderr).trim().to_owned();
        if let Some(text) = stdin {
            stderr.push_str("\n--- stdin was ---\n");
            stderr.push_str(text);
        }
        Err(LabError::Command {
            command: line,
            status: out.status.to_string(),
            stderr,
        })
    }
}

fn command_line(program: &str, args: &[&str]) -> String {
    let mut line = program.to_owned();
    for a in args {
        line.push(' ');
        line.push_str(a);
    }
    line
}

/// Runs `ip args…` in the current (root) namespace.
pub fn ip(args: &[&str]) -> Result<String, LabError> {
    run("ip", args, None)
}

/// Runs `ip -n NETNS -batch -` with one `ip` command per line of `script`.
pub fn ip_batch(netns: &str, script: &str) -> Result<String, LabError> {
    run("ip", &["-n", netns, "-batch", "-"], Some(script))
}

/// Runs `ip netns exec NETNS program args…`, feeding `stdin` if given.
pub fn exec(
    netns: &str,
    program: &str,
    args: &[&str],
    stdin: Option<&str>,
) -> Result<String, LabError> {
    let mut full = vec!["netns", "exec", netns, program];
    full.extend_from_slice(args);
    run("ip", &full, stdin)
}

/// Opens the namespace file of `netns` (to hand to `setns`).
pub fn open_netns(netns: &str) -> Result<File, LabError> {
    let path = netns_path(netns);
    File::open(&path).map_err(|source| LabError::Io {
        context: format!("cannot open netns file {}", path.display()),
        source,
    })
}

/// Moves the CURRENT THREAD into `netns`. Only call this from a thread that
/// was spawned to live in that namespace.
pub fn enter(netns: &str) -> Result<(), LabError> {
    let file = open_netns(netns)?;
    setns(&file, CloneFlags::CLONE_NEWNET).map_err(|errno| LabError::Io {
        context: format!("setns into netns {netns}"),
        source: errno.into(),
    })
}

/// Runs `f` on a fresh thread that first entered `netns`, and returns its
/// result. The caller's own namespace is untouched.
pub fn in_netns<T, F>(netns: &str, f: F) -> Result<T, LabError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, LabError> + Send + 'static,
{
    let name = netns.to_owned();
    let handle = std::thread::Builder::new()
        .name(format!("lab-{name}"))
        .spawn(move || {
            enter(&name)?;
            f()
        })
        .map_err(|source| LabError::Io {
            context: format!("cannot spawn a thread for netns {netns}"),
            source,
        })?;
    handle
        .join()
        .map_err(|_| LabError::Setup(format!("thread inside netns {netns} panicked")))?
}

/// For each `(key, value)`, writes `value` to `/proc/sys/<key, dots as
/// slashes>` from a thread inside `netns` (sysctls under `net.` are per
/// namespace) and reads it back to check that the kernel took it.
pub fn sysctl_set(netns: &str, settings: &[(&str, &str)]) -> Result<(), LabError> {
    let owned: Vec<(String, String)> = settings
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let ns = netns.to_owned();
    in_netns(netns, move || {
        for (key, value) in &owned {
            let path = sysctl_path(key);
            let fail = |source| LabError::Io {
                context: format!("sysctl {key}={value} in netns {ns} ({})", path.display()),
                source,
            };
            std::fs::write(&path, value).map_err(fail)?;
            let got = std::fs::read_to_string(&path).map_err(fail)?;
            if got.trim() != value {
                return Err(LabError::Setup(format!(
                    "sysctl {key} in netns {ns}: wrote {value}, kernel reports {}",
                    got.trim()
                )));
            }
        }
        Ok(())
    })
}

/// Reads a sysctl inside `netns`; `Ok(None)` if the key does not exist there.
pub fn sysctl_get(netns: &str, key: &str) -> Result<Option<String>, LabError> {
    let path = sysctl_path(key);
    let ns = netns.to_owned();
    let key = key.to_owned();
    in_netns(netns, move || {
        let mut text = String::new();
        match File::open(&path) {
            Ok(mut f) => f.read_to_string(&mut text).map_err(|source| LabError::Io {
                context: format!("read sysctl {key} in netns {ns}"),
                source,
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(LabError::Io {
                    context: format!("open sysctl {key} in netns {ns}"),
                    source,
                })
            }
        };
        Ok(Some(text.trim().to_owned()))
    })
}

fn sysctl_path(key: &str) -> PathBuf {
    Path::new("/proc/sys").join(key.replace('.', "/"))
}

/// Creates the named namespace `netns`.
pub fn add(netns: &str) -> Result<(), LabError> {
    ip(&["netns", "add", netns]).map(drop)
}

/// Deletes the named namespace `netns` (its interfaces go with it).
pub fn delete(netns: &str) -> Result<(), LabError> {
    ip(&["netns", "del", netns]).map(drop)
}

/// Names of all named namespaces currently under [`NETNS_DIR`].
pub fn list() -> Vec<String> {
    let Ok(dir) = std::fs::read_dir(NETNS_DIR) else {
        return Vec::new();
    };
    let mut names: Vec<String> = dir
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort();
    names
}

/// Deletes namespaces named `<prefix><pid>-…` whose creating process `pid`
/// no longer exists (left behind by a lab process that was killed before its
/// `Drop` ran). Returns the names deleted. Failures are ignored: this is a
/// best-effort sweep.
pub fn sweep_stale(prefix: &str) -> Vec<String> {
    let mut gone = Vec::new();
    for name in list() {
        let Some(rest) = name.strip_prefix(prefix) else {
            continue;
        };
        let Some((pid, _)) = rest.split_once('-') else {
            continue;
        };
        if pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        if !Path::new("/proc").join(pid).exists() && delete(&name).is_ok() {
            gone.push(name);
        }
    }
    gone
}
