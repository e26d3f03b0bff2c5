//! The runtime sandbox, entered once the command line is parsed and before any key, bundle or
//! model is read: a Landlock ruleset confining the filesystem to what the command needs, then a
//! seccomp-bpf allowlist of system calls. Both policies are data in this file.
//!
//! # Security
//! - **seccomp** (every thread, `SECCOMP_FILTER_FLAG_TSYNC`): only the system calls in
//!   `ALLOWED` run; any other returns `EPERM`. There is no socket-family call (socket,
//!   connect, bind, listen, accept, sendto, sendmsg...), no ptrace, no process_vm_readv/writev,
//!   no execve, no fork: `clone` is allowed only with `CLONE_THREAD` and `clone3` returns
//!   `ENOSYS` (its flags sit in memory that a filter cannot read, so glibc falls back to
//!   `clone`). `mmap` and `mprotect` cannot ask for executable memory, and `ioctl` is limited to
//!   the terminal requests the passphrase prompt and the terminal UI need (no `TIOCSTI`).
//! - **Landlock** (the kernel's unprivileged LSM, ABI 1 to 6 used as available): the process
//!   may read only the appliance root and the files the command names, write only where the
//!   command writes (the audit log, the model store, an output file's directory), connect or
//!   bind no TCP port (ABI 4) and signal or reach no process or abstract socket outside itself
//!   (ABI 6). Landlock binds the calling thread and its future threads, so it is entered
//!   while the process has a single thread (checked).
//! - Both are one-way: nothing can lift them for the life of the process.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::OnceLock;

use landlock::{
    ABI, Access, AccessFs, AccessNet, CompatLevel, Compatible, Ruleset, RulesetAttr,
    RulesetCreatedAttr, RulesetStatus, Scope, path_beneath_rules,
};
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule,
};

use super::Error;

/// What the command may touch on the filesystem. A path to read that does not exist is not
/// granted; a directory to write that does not exist is created when its own directory exists,
/// else the sandbox refuses to start: no grant ever falls back to an ancestor.
#[derive(Debug, Clone, Default)]
pub struct FsPolicy {
    /// Files and directories (recursively) the command may read.
    pub read: Vec<PathBuf>,
    /// Files and directories (recursively) the command may read, create, write and remove.
    pub write: Vec<PathBuf>,
}

impl FsPolicy {
    /// Adds a path to read.
    #[must_use]
    pub fn read(mut self, p: impl Into<PathBuf>) -> Self {
        self.read.push(p.into());
        self
    }

    /// Adds paths to read.
    #[must_use]
    pub fn with_read(mut self, ps: impl IntoIterator<Item = PathBuf>) -> Self {
        self.read.extend(ps);
        self
    }

    /// Adds a path to write.
    #[must_use]
    pub fn write(mut self, p: impl Into<PathBuf>) -> Self {
        self.write.push(p.into());
        self
    }
}

/// Which system-call profile a command runs under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// Every command but the terminal UI: `ALLOWED` only.
    Cli,
    /// The terminal UI adds what crossterm's event loop needs for resize notifications: a
    /// connected `AF_UNIX` socket pair inside the process (`socketpair` with `AF_UNIX` only,
    /// then `recvfrom`/`sendto` without an address) and an `eventfd` waker. No `socket` call
    /// is added, so there is still no way to reach a network or another process.
    Terminal,
}

/// What [`enter`] put in force, for `rempart selftest`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SandboxStatus {
    /// "enforced (ABI n)", "partially enforced (ABI n)" or "not supported by this kernel".
    pub landlock: String,
    /// Number of system calls on the seccomp allowlist.
    pub seccomp_allowed_syscalls: usize,
    /// The paths granted for reading, as resolved.
    pub read: Vec<String>,
    /// The paths granted for writing, as resolved.
    pub write: Vec<String>,
}

static STATUS: OnceLock<SandboxStatus> = OnceLock::new();

/// The sandbox in force, if [`enter`] ran in this process.
pub fn status() -> Option<&'static SandboxStatus> {
    STATUS.get()
}

/// The system calls the appliance makes, found by tracing the whole test suite under
/// `strace -f` (see SECURITY.md) plus the error paths of the C library and of Rust's std
/// (abort, thread exit, sleeping). Everything else returns `EPERM`.
const ALLOWED: &[(&str, i64)] = &[
    // files and terminals
    ("read", libc::SYS_read),
    ("write", libc::SYS_write),
    ("readv", libc::SYS_readv),
    ("writev", libc::SYS_writev),
    ("pread64", libc::SYS_pread64),
    ("pwrite64", libc::SYS_pwrite64),
    ("lseek", libc::SYS_lseek),
    ("openat", libc::SYS_openat),
    ("close", libc::SYS_close),
    ("fstat", libc::SYS_fstat),
    ("newfstatat", libc::SYS_newfstatat),
    ("statx", libc::SYS_statx),
    ("getdents64", libc::SYS_getdents64),
    ("fcntl", libc::SYS_fcntl),
    ("flock", libc::SYS_flock),
    ("fsync", libc::SYS_fsync),
    ("fdatasync", libc::SYS_fdatasync),
    ("ftruncate", libc::SYS_ftruncate),
    ("fchmod", libc::SYS_fchmod),
    ("rename", libc::SYS_rename),
    ("renameat", libc::SYS_renameat),
    ("renameat2", libc::SYS_renameat2),
    ("unlink", libc::SYS_unlink),
    ("unlinkat", libc::SYS_unlinkat),
    ("mkdir", libc::SYS_mkdir),
    ("mkdirat", libc::SYS_mkdirat),
    ("rmdir", libc::SYS_rmdir),
    ("readlink", libc::SYS_readlink),
    ("readlinkat", libc::SYS_readlinkat),
    ("getcwd", libc::SYS_getcwd),
    ("access", libc::SYS_access),
    ("faccessat", libc::SYS_faccessat),
    ("faccessat2", libc::SYS_faccessat2),
    ("poll", libc::SYS_poll),
    ("ppoll", libc::SYS_ppoll),
    ("dup", libc::SYS_dup),
    ("dup3", libc::SYS_dup3),
    ("pipe2", libc::SYS_pipe2),
    ("epoll_create1", libc::SYS_epoll_create1),
    ("epoll_ctl", libc::SYS_epoll_ctl),
    ("epoll_wait", libc::SYS_epoll_wait),
    ("epoll_pwait", libc::SYS_epoll_pwait),
    // memory (mmap, mprotect: no PROT_EXEC, see `rules`)
    ("mmap", libc::SYS_mmap),
    ("mprotect", libc::SYS_mprotect),
    ("munmap", libc::SYS_munmap),
    ("mremap", libc::SYS_mremap),
    ("madvise", libc::SYS_madvise),
    ("brk", libc::SYS_brk),
    ("mlock", libc::SYS_mlock),
    ("mlock2", libc::SYS_mlock2),
    ("munlock", libc::SYS_munlock),
    ("mlockall", libc::SYS_mlockall),
    ("munlockall", libc::SYS_munlockall),
    ("getrandom", libc::SYS_getrandom),
    // threads (clone: CLONE_THREAD only, see `rules`) and time
    ("clone", libc::SYS_clone),
    ("clone3", libc::SYS_clone3), // ENOSYS from the first filter
    ("futex", libc::SYS_futex),
    ("set_robust_list", libc::SYS_set_robust_list),
    ("rseq", libc::SYS_rseq),
    ("sched_yield", libc::SYS_sched_yield),
    ("sched_getaffinity", libc::SYS_sched_getaffinity),
    ("nanosleep", libc::SYS_nanosleep),
    ("clock_nanosleep", libc::SYS_clock_nanosleep),
    ("clock_gettime", libc::SYS_clock_gettime),
    ("gettimeofday", libc::SYS_gettimeofday),
    ("exit", libc::SYS_exit),
    ("exit_group", libc::SYS_exit_group),
    // signals (abort raises SIGABRT on itself; Landlock scopes signals to this process)
    ("rt_sigaction", libc::SYS_rt_sigaction),
    ("rt_sigprocmask", libc::SYS_rt_sigprocmask),
    ("rt_sigreturn", libc::SYS_rt_sigreturn),
    ("sigaltstack", libc::SYS_sigaltstack),
    ("tgkill", libc::SYS_tgkill),
    // process attributes
    ("getpid", libc::SYS_getpid),
    ("gettid", libc::SYS_gettid),
    ("getuid", libc::SYS_getuid),
    ("geteuid", libc::SYS_geteuid),
    ("getgid", libc::SYS_getgid),
    ("getegid", libc::SYS_getegid),
    ("prctl", libc::SYS_prctl),
    ("prlimit64", libc::SYS_prlimit64),
    ("umask", libc::SYS_umask),
    ("uname", libc::SYS_uname),
    ("ioctl", libc::SYS_ioctl),
];

/// The terminal `ioctl` requests allowed: termios get/set (passphrase prompt without echo,
/// raw mode for the terminal UI), window size, pending bytes and non-blocking mode.
const IOCTLS: &[u64] = &[
    libc::TCGETS,
    libc::TCGETS2,
    libc::TCSETS2,
    libc::TCSETSW2,
    libc::TCSETSF2,
    libc::TCSETS,
    libc::TCSETSW,
    libc::TCSETSF,
    libc::TIOCGWINSZ,
    libc::FIONREAD,
    libc::FIONBIO,
];

/// Calls added by [`Profile::Terminal`] (conditions in `rules`).
const TERMINAL_EXTRA: &[(&str, i64)] = &[
    ("socketpair", libc::SYS_socketpair),
    ("recvfrom", libc::SYS_recvfrom),
    ("sendto", libc::SYS_sendto),
    ("eventfd2", libc::SYS_eventfd2),
    ("epoll_pwait2", libc::SYS_epoll_pwait2),
];

/// Argument conditions for the calls that are allowed only in some forms.
fn rules(nr: i64) -> Result<Vec<SeccompRule>, seccompiler::BackendError> {
    let cond = |arg, len, op, v| SeccompCondition::new(arg, len, op, v);
    let one = |c| SeccompRule::new(vec![c]);
    let clone_thread = u64::try_from(libc::CLONE_THREAD).unwrap_or(u64::MAX);
    let prot_exec = u64::try_from(libc::PROT_EXEC).unwrap_or(u64::MAX);
    Ok(match nr {
        // A new thread, never a new process.
        libc::SYS_clone => vec![one(cond(
            0,
            SeccompCmpArgLen::Qword,
            SeccompCmpOp::MaskedEq(clone_thread),
            clone_thread,
        )?)?],
        // No new executable memory after start-up.
        libc::SYS_mmap | libc::SYS_mprotect => vec![one(cond(
            2,
            SeccompCmpArgLen::Dword,
            SeccompCmpOp::MaskedEq(prot_exec),
            0,
        )?)?],
        // Terminal profile: an in-process pair only, and no address on send or receive.
        libc::SYS_socketpair => vec![one(cond(
            0,
            SeccompCmpArgLen::Dword,
            SeccompCmpOp::Eq,
            u64::try_from(libc::AF_UNIX).unwrap_or(u64::MAX),
        )?)?],
        libc::SYS_recvfrom | libc::SYS_sendto => {
            vec![one(cond(4, SeccompCmpArgLen::Qword, SeccompCmpOp::Eq, 0)?)?]
        }
        libc::SYS_ioctl => IOCTLS
            .iter()
            .map(|&req| one(cond(1, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, req)?))
            .collect::<Result<_, _>>()?,
        _ => Vec::new(),
    })
}

/// The two filters, in the order they are installed: `clone3` → ENOSYS, then the allowlist
/// (anything else: EPERM; `seccomp` itself is not on it, so nothing can be added afterwards).
/// The allowlist lets `clone3` through and the kernel applies the most restrictive verdict,
/// so `clone3` sees ENOSYS and glibc falls back to the filtered `clone`.
fn filters(profile: Profile) -> Result<[BpfProgram; 2], Error> {
    let arch = seccompiler::TargetArch::x86_64;
    let err = |e: seccompiler::BackendError| Error::Harden {
        step: "seccomp filter",
        source: std::io::Error::other(e.to_string()),
    };
    let extra: &[(&str, i64)] = match profile {
        Profile::Cli => &[],
        Profile::Terminal => TERMINAL_EXTRA,
    };
    let allow = ALLOWED
        .iter()
        .chain(extra)
        .map(|&(_, nr)| rules(nr).map(|r| (nr, r)))
        .collect::<Result<BTreeMap<_, _>, _>>()
        .map_err(err)?;
    let allowlist = SeccompFilter::new(
        allow,
        SeccompAction::Errno(errno(libc::EPERM)),
        SeccompAction::Allow,
        arch,
    )
    .map_err(err)?;
    let no_clone3 = SeccompFilter::new(
        BTreeMap::from([(libc::SYS_clone3, Vec::new())]),
        SeccompAction::Allow,
        SeccompAction::Errno(errno(libc::ENOSYS)),
        arch,
    )
    .map_err(err)?;
    Ok([
        no_clone3.try_into().map_err(err)?,
        allowlist.try_into().map_err(err)?,
    ])
}

fn errno(e: i32) -> u32 {
    u32::try_from(e).unwrap_or(1)
}

/// Seccomp mode and no_new_privs of one thread, from /proc/self/task/TID/status.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ThreadStatus {
    /// Thread id.
    pub tid: String,
    /// The `Seccomp:` field (2 = filter mode).
    pub seccomp: String,
    /// The `NoNewPrivs:` field.
    pub no_new_privs: String,
}

/// The value of field `key` (without the colon) in a `/proc/.../status` text, trimmed, or
/// `"unknown"` when the kernel does not report it.
pub fn status_field(status: &str, key: &str) -> String {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .map_or_else(|| "unknown".to_owned(), |v| v.trim().to_owned())
}

/// Starts the worker thread pool (as inference does) and reads back every thread's seccomp
/// mode and no_new_privs flag, to show the filter covers them all.
#[allow(
    clippy::disallowed_methods,
    reason = "/proc/self/task is the kernel's, not untrusted input"
)]
pub fn threads_status() -> Vec<ThreadStatus> {
    rayon::broadcast(|_| ());
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    let mut out: Vec<ThreadStatus> = dir
        .flatten()
        .map(|e| {
            let status = std::fs::read_to_string(e.path().join("status")).unwrap_or_default();
            ThreadStatus {
                tid: e.file_name().to_string_lossy().into_owned(),
                seccomp: status_field(&status, "Seccomp"),
                no_new_privs: status_field(&status, "NoNewPrivs"),
            }
        })
        .collect();
    out.sort_by(|a, b| a.tid.cmp(&b.tid));
    out
}

/// Tries to start `/bin/true` and says what happened: under the sandbox the fork or the exec
/// is refused.
pub fn spawn_probe() -> String {
    match std::process::Command::new("/bin/true")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
    {
        Ok(st) => format!("ALLOWED (/bin/true ran: {st})"),
        Err(e) => format!("denied ({e})"),
    }
}

/// Number of threads in this process.
#[allow(
    clippy::disallowed_methods,
    reason = "/proc/self/task is the kernel's, not untrusted input"
)]
fn thread_count() -> std::io::Result<usize> {
    Ok(std::fs::read_dir("/proc/self/task")?.count())
}

/// The paths to grant reading: those that exist. A missing one is left out (its open fails
/// as it would anyway), never replaced by an ancestor.
fn grant_read(paths: impl Iterator<Item = PathBuf>) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = paths.filter(|p| p.exists()).collect();
    v.sort();
    v.dedup();
    v
}

/// The directories to grant writing. One that exists is granted; one that is missing but whose
/// directory exists is created first (mode 0700 under the process umask: the command owns it,
/// such as `ROOT/audit`, `ROOT/models` or an `--out-dir`); any other missing path is refused.
/// A grant is never widened to an ancestor (it was: a missing `--root` granted write on `/`).
fn grant_write(paths: impl Iterator<Item = PathBuf>) -> Result<Vec<PathBuf>, Error> {
    let mut v = Vec::new();
    for p in paths {
        if !p.exists() {
            let parent = crate::secure::fs::parent_dir(&p);
            if !parent.is_dir() {
                return Err(Error::MissingPath { path: p });
            }
            match std::fs::create_dir(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(source) => {
                    return Err(Error::Harden {
                        step: "create a directory to grant",
                        source,
                    });
                }
            }
        }
        v.push(p);
    }
    v.sort();
    v.dedup();
    Ok(v)
}

/// Paths every command may read besides its own: this process's /proc entries (status for
/// `selftest`, cgroup limits for the thread count), the count of runnable tasks and the online
/// CPUs (whether a generation step has a core free for its other threads), and the kernel's
/// random devices: in the static build, the `getrandom` crate cannot find glibc's
/// `getrandom` symbol and falls back to reading `/dev/urandom` (after polling `/dev/random`).
/// The terminal is in `BASE_WRITE`.
const BASE_READ: &[&str] = &[
    "/proc/self",
    "/proc/loadavg",
    "/sys/fs/cgroup",
    "/sys/devices/system/cpu",
    "/dev/urandom",
    "/dev/random",
];
const BASE_WRITE: &[&str] = &["/dev/tty"];

fn landlock(policy: &FsPolicy) -> Result<(String, Vec<String>, Vec<String>), Error> {
    let err = |e: landlock::RulesetError| Error::Harden {
        step: "Landlock",
        source: std::io::Error::other(e.to_string()),
    };
    let abi = ABI::V6;
    let read = grant_read(
        policy
            .read
            .iter()
            .cloned()
            .chain(BASE_READ.iter().map(PathBuf::from)),
    );
    let mut write = grant_write(policy.write.iter().cloned())?;
    write.extend(grant_read(BASE_WRITE.iter().map(PathBuf::from)));
    let status = Ruleset::default()
        .set_compatibility(CompatLevel::BestEffort)
        .handle_access(AccessFs::from_all(abi))
        .map_err(err)?
        .handle_access(AccessNet::from_all(abi))
        .map_err(err)?
        .scope(Scope::from_all(abi))
        .map_err(err)?
        .create()
        .map_err(err)?
        .add_rules(path_beneath_rules(&read, AccessFs::from_read(abi)))
        .map_err(err)?
        .add_rules(path_beneath_rules(&write, AccessFs::from_all(abi)))
        .map_err(err)?
        .restrict_self()
        .map_err(err)?;
    let text = match status.ruleset {
        RulesetStatus::FullyEnforced => {
            "enforced (filesystem, TCP, signal and socket scopes)".to_owned()
        }
        RulesetStatus::PartiallyEnforced => {
            "partially enforced (an older kernel: some Landlock rights are not available)"
                .to_owned()
        }
        RulesetStatus::NotEnforced => "NOT ENFORCED: this kernel has no Landlock".to_owned(),
    };
    let show = |v: Vec<PathBuf>| v.iter().map(|p| p.display().to_string()).collect();
    Ok((text, show(read), show(write)))
}

/// Enters the sandbox: Landlock with `policy`, then the seccomp filters on every thread.
/// Call it once, while the process is single-threaded; any failure is an error (the process
/// must not run half-confined). A kernel without Landlock is reported by `selftest`, not
/// refused: seccomp still applies.
pub fn enter(policy: &FsPolicy, profile: Profile) -> Result<&'static SandboxStatus, Error> {
    let threads = thread_count().map_err(|e| Error::Harden {
        step: "count threads",
        source: e,
    })?;
    if threads != 1 {
        return Err(Error::Harden {
            step: "Landlock",
            source: std::io::Error::other(format!(
                "the process already has {threads} threads; the sandbox must be entered before any is started"
            )),
        });
    }
    let (landlock, read, write) = landlock(policy)?;
    for f in filters(profile)? {
        seccompiler::apply_filter_all_threads(&f).map_err(|e| Error::Harden {
            step: "seccomp",
            source: std::io::Error::other(e.to_string()),
        })?;
    }
    Ok(STATUS.get_or_init(|| SandboxStatus {
        landlock,
        seccomp_allowed_syscalls: ALLOWED.len()
            + match profile {
                Profile::Cli => 0,
                Profile::Terminal => TERMINAL_EXTRA.len(),
            },
        read,
        write,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_compile() {
        for profile in [Profile::Cli, Profile::Terminal] {
            let [no_clone3, allow] = filters(profile).unwrap();
            assert!(allow.len() > ALLOWED.len(), "one jump per allowed call");
            assert!(!no_clone3.is_empty());
        }
    }

    #[test]
    fn allowlist_has_no_network_process_or_tracing_call() {
        let banned = [
            libc::SYS_socket,
            libc::SYS_socketpair,
            libc::SYS_connect,
            libc::SYS_bind,
            libc::SYS_listen,
            libc::SYS_accept,
            libc::SYS_accept4,
            libc::SYS_sendto,
            libc::SYS_sendmsg,
            libc::SYS_sendmmsg,
            libc::SYS_recvfrom,
            libc::SYS_recvmsg,
            libc::SYS_ptrace,
            libc::SYS_process_vm_readv,
            libc::SYS_process_vm_writev,
            libc::SYS_execve,
            libc::SYS_execveat,
            libc::SYS_fork,
            libc::SYS_vfork,
            libc::SYS_io_uring_setup,
            libc::SYS_seccomp,
            libc::SYS_bpf,
            libc::SYS_memfd_create,
            libc::SYS_kill,
        ];
        for (name, nr) in ALLOWED {
            assert!(!banned.contains(nr), "{name} must not be allowed");
        }
        // The terminal profile adds only argument-checked, address-free socket calls.
        for (name, nr) in TERMINAL_EXTRA {
            let conditioned = !rules(*nr).unwrap().is_empty();
            let plain = [libc::SYS_eventfd2, libc::SYS_epoll_pwait2].contains(nr);
            assert!(conditioned || plain, "{name} needs an argument condition");
            assert!(
                *nr != libc::SYS_socket && *nr != libc::SYS_connect,
                "{name}"
            );
        }
        let mut nrs: Vec<_> = ALLOWED.iter().map(|(_, n)| n).collect();
        nrs.sort();
        nrs.dedup();
        assert_eq!(nrs.len(), ALLOWED.len(), "no duplicate entries");
    }

    /// Issue 18: a missing path was granted through its nearest existing ancestor (a missing
    /// `--root` granted write on `/`, a root without `audit/` write on the whole root).
    #[test]
    fn issue_18_grants_are_never_widened_to_an_ancestor() {
        let d = tempfile::tempdir().unwrap();
        // A missing path to read is left out.
        let read = grant_read([d.path().join("a/b/c.rpk"), d.path().to_owned()].into_iter());
        assert_eq!(read, vec![d.path().to_owned()]);
        // A missing directory to write, in an existing one, is created and granted itself.
        let audit = d.path().join("root-audit");
        assert_eq!(
            grant_write(std::iter::once(audit.clone())).unwrap(),
            vec![audit.clone()]
        );
        assert!(audit.is_dir());
        // A directory to write whose own directory is missing is refused, not widened.
        let deep = d.path().join("no-root/audit");
        let e = grant_write(std::iter::once(deep.clone())).unwrap_err();
        assert!(
            matches!(e, Error::MissingPath { ref path } if *path == deep),
            "{e}"
        );
        assert!(!d.path().join("no-root").exists());
    }
}
