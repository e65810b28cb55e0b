//! The init of a booted instance: the process the server starts as
//! `volume-server __instance-init <dir>/boot.json` (see [`crate::boot`]).
//!
//! # What it does
//!
//! 1. Joins the instance's network namespace, unshares a PID namespace and forks. The parent
//!    stays in the host's namespaces as the workload's leader: it forwards SIGTERM, SIGINT and
//!    SIGHUP to the child; when the child has exited it waits until the kernel has let go of the
//!    instance's disks, flushes them, and exits with the child's status. The child is PID 1 of
//!    the instance, unshares mount, UTS and IPC namespaces, and dies with the parent
//!    (`PR_SET_PDEATHSIG`), which takes every process of the instance with it.
//! 2. PID 1 mounts the root volume (its host block device) on a directory that exists only in its
//!    own mount namespace, mounts `/proc`, a read-only `/sys`, a `/dev` of its own (the usual
//!    character devices, `pts`, `shm`, and a node for every block device of the instance: the
//!    NVMe name with the EC2 device name as a symlink to it), and a `/run`; then `pivot_root`s
//!    into it and drops the host's tree.
//! 3. Sets the hostname (the private DNS name), drops the capabilities an instance has no use
//!    for from the bounding set (modules, raw I/O, the clock, `mknod`, …), pins itself to as
//!    many CPUs as the type has
//!    vCPUs (so `nproc` shows them) and, when the type's memory is limited, mounts over
//!    `/proc/meminfo` a view that shows the limit as total and the cgroup's use, refreshed each
//!    second (so `free` shows them).
//! 4. Adds the launch key pair's public key from the metadata service for the image's default
//!    user, once per instance (`firstboot`).
//! 5. Starts `sshd` if the image has it (making host keys first if it has none), then runs the
//!    user data once per instance, as cloud-init does: a script starting with `#!` is executed,
//!    anything else is run by `/bin/sh`; `#cloud-config` is not understood and says so on the
//!    console. Everything they print goes to the console log.
//!    Then it makes [`BOOTED`].
//! 6. Reaps orphans until SIGTERM (from the server's StopInstances, or `kill -TERM 1` inside: the
//!    instance shuts itself down), then shuts down: SIGTERM to every process, SIGKILL after the
//!    grace period, unmounts what the instance mounted, remounts `/` read-only and syncs.
//!
//! # Limitations
//!
//! This is not systemd: the image's units do not run. There are no user namespaces: root inside
//! is root on the host, as in a privileged container. Security groups are not enforced.

use std::ffi::{CString, OsStr};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::boot::BootConfig;

/// Where user data and its once-per-instance mark are kept inside the instance.
const STATE_DIR: &str = "/var/lib/ebs-init/instances";
/// Made when boot is over (sshd started, user data started).
pub const BOOTED: &str = "/run/ebs-init/booted";
/// The search path of processes the init starts.
const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Runs the init described by the `boot.json` at `config`; never returns.
pub fn main(config: &Path) -> ! {
    let code = match outer(config) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("ebs-init: {e}");
            1
        }
    };
    std::process::exit(code)
}

fn ctx(what: impl std::fmt::Display) -> impl FnOnce(io::Error) -> io::Error {
    move |e| io::Error::new(e.kind(), format!("{what}: {e}"))
}

/// Returns -1 as the last OS error.
fn check(r: libc::c_int, what: impl std::fmt::Display) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(ctx(what)(io::Error::last_os_error()))
    } else {
        Ok(r)
    }
}

fn cstr(p: impl AsRef<OsStr>) -> io::Result<CString> {
    CString::new(p.as_ref().as_bytes()).map_err(|_| io::Error::other("a path holds a NUL byte"))
}

/// The signals the init handles synchronously (blocked, then taken with `sigtimedwait`).
fn handled_signals() -> libc::sigset_t {
    // SAFETY: sigemptyset and sigaddset only write the set they are given, a local.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for sig in [
            libc::SIGTERM,
            libc::SIGINT,
            libc::SIGHUP,
            libc::SIGCHLD,
            libc::SIGUSR2,
        ] {
            libc::sigaddset(&mut set, sig);
        }
        set
    }
}

/// The next handled signal, or `None` after `timeout`.
fn next_signal(set: &libc::sigset_t, timeout: Duration) -> Option<i32> {
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: libc::c_long::from(timeout.subsec_nanos() as i32),
    };
    // SAFETY: `set` and `ts` are live for the call; siginfo is not asked for.
    let sig = unsafe { libc::sigtimedwait(set, std::ptr::null_mut(), &ts) };
    (sig > 0).then_some(sig)
}

/// Step 1: namespaces and the fork; the parent relays signals and reports the child's exit.
fn outer(config: &Path) -> io::Result<i32> {
    let cfg = BootConfig::read(config).map_err(ctx(format!("reading {}", config.display())))?;
    let user_data = match &cfg.user_data {
        Some(p) => Some(fs::read(p).map_err(ctx(format!("reading {}", p.display())))?),
        None => None,
    };
    // Found while the host's /proc and cgroup mounts are still in view.
    let memory_usage =
        crate::workload::memory_usage_file(std::process::id()).and_then(|p| File::open(p).ok());
    // The PID namespace (and the network) now, so that the child is PID 1 of it; the mount, UTS
    // and IPC namespaces in the child, so that the mounts die with it and this process can see
    // the devices free again.
    let mut flags = libc::CLONE_NEWPID;
    match &cfg.netns {
        Some(ns) => {
            let f = File::open(ns).map_err(ctx(format!("opening {}", ns.display())))?;
            // SAFETY: setns on a namespace file descriptor we hold open.
            let r = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
            check(r, "joining the network namespace")?;
        }
        None => flags |= libc::CLONE_NEWNET,
    }
    // SAFETY: unshare only changes this (single-threaded) process's namespaces.
    check(unsafe { libc::unshare(flags) }, "unsharing namespaces")?;
    let set = handled_signals();
    // SAFETY: blocks signals for this thread, the only one; `set` is live.
    unsafe { libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    // SAFETY: the process is single-threaded (the server dispatches here before it starts any
    // thread), so the child may go on allocating.
    let child = check(unsafe { libc::fork() }, "forking the instance's init")?;
    if child == 0 {
        // SAFETY: prctl with an integer argument.
        unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
        let flags = libc::CLONE_NEWNS | libc::CLONE_NEWUTS | libc::CLONE_NEWIPC;
        // SAFETY: as above, in the child.
        let code = match check(unsafe { libc::unshare(flags) }, "unsharing namespaces")
            .and_then(|_| pid1(&cfg, user_data, memory_usage))
        {
            Ok(code) => code,
            Err(e) => {
                eprintln!("ebs-init: {e}");
                1
            }
        };
        std::process::exit(code);
    }
    loop {
        match next_signal(&set, Duration::from_secs(1)) {
            Some(libc::SIGTERM | libc::SIGINT | libc::SIGHUP) => {
                // SAFETY: kill on our own child's pid (not reaped yet, so not reused).
                unsafe { libc::kill(child, libc::SIGTERM) };
            }
            _ => {
                let mut status = 0;
                // SAFETY: waitpid on our child with a live status slot.
                let r = unsafe { libc::waitpid(child, &mut status, libc::WNOHANG) };
                if r == child {
                    release_devices(config, &cfg);
                    return Ok(if libc::WIFEXITED(status) {
                        libc::WEXITSTATUS(status)
                    } else {
                        128 + libc::WTERMSIG(status)
                    });
                }
            }
        }
    }
}

/// After the instance's last process: waits until the kernel has put down its filesystems (the
/// mount namespace goes after its last process, not always at once) and flushes each disk, so
/// that the server, told the workload has exited, finds every write on its volumes. The disks
/// are read from `boot.json` again: the server rewrites it when a disk is hot-plugged.
fn release_devices(config: &Path, cfg: &BootConfig) {
    let devices = BootConfig::read(config).map_or_else(|_| cfg.devices.clone(), |c| c.devices);
    for d in &devices {
        if let Err(e) = crate::localdisk::release_and_flush(&d.host_device) {
            eprintln!("ebs-init: {e}");
        }
    }
}

fn mount(
    source: &str,
    target: impl AsRef<Path>,
    fstype: &str,
    flags: libc::c_ulong,
    data: &str,
) -> io::Result<()> {
    let target = target.as_ref();
    let (s, t, f, d) = (cstr(source)?, cstr(target)?, cstr(fstype)?, cstr(data)?);
    // SAFETY: every pointer is a live NUL-terminated string for the duration of the call.
    let r = unsafe {
        libc::mount(
            s.as_ptr(),
            t.as_ptr(),
            if fstype.is_empty() {
                std::ptr::null()
            } else {
                f.as_ptr()
            },
            flags,
            if data.is_empty() {
                std::ptr::null()
            } else {
                d.as_ptr().cast()
            },
        )
    };
    check(r, format!("mounting {source} on {}", target.display())).map(drop)
}

fn mknod(path: &str, mode: libc::mode_t, dev: libc::dev_t) -> io::Result<()> {
    let p = cstr(path)?;
    // SAFETY: `p` is a live NUL-terminated path.
    check(
        unsafe { libc::mknod(p.as_ptr(), mode, dev) },
        format!("making {path}"),
    )
    .map(drop)
}

/// Steps 2 to 5, as PID 1 of the instance.
fn pid1(
    cfg: &BootConfig,
    user_data: Option<Vec<u8>>,
    memory_usage: Option<File>,
) -> io::Result<i32> {
    // Nothing mounted here may show on the host.
    mount("", "/", "", libc::MS_REC | libc::MS_PRIVATE, "")?;
    fs::create_dir_all(&cfg.mount_dir).map_err(ctx("creating the mount point"))?;
    let root = cfg.root_device.to_string_lossy().into_owned();
    mount(&root, &cfg.mount_dir, &cfg.fs_type, 0, "")?;
    std::env::set_current_dir(&cfg.mount_dir).map_err(ctx("entering the root filesystem"))?;
    for dir in ["proc", "sys", "dev", "run", "tmp"] {
        if !Path::new(dir).exists() {
            fs::create_dir(dir).map_err(ctx(format!("creating /{dir}")))?;
        }
    }
    let hidden = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
    mount("proc", "proc", "proc", hidden, "")?;
    mount("sysfs", "sys", "sysfs", hidden | libc::MS_RDONLY, "")?;
    mount(
        "tmpfs",
        "run",
        "tmpfs",
        libc::MS_NOSUID | libc::MS_NODEV,
        "mode=755,size=20%",
    )?;
    make_dev(cfg)?;
    // SAFETY: as in make_dev.
    unsafe { libc::umask(0o022) };
    if cfg.memory_bytes > 0 {
        fs::create_dir_all("run/ebs-init").map_err(ctx("creating /run/ebs-init"))?;
        fs::write("run/ebs-init/meminfo", meminfo(cfg.memory_bytes, 0))
            .map_err(ctx("writing the memory view"))?;
        mount(
            "run/ebs-init/meminfo",
            "proc/meminfo",
            "",
            libc::MS_BIND,
            "",
        )?;
    }
    // pivot_root(".", ".") stacks the old root under the new one; detaching it leaves only ours.
    let dot = cstr(".")?;
    // SAFETY: both arguments are the live string ".".
    let r = unsafe { libc::syscall(libc::SYS_pivot_root, dot.as_ptr(), dot.as_ptr()) };
    check(r as libc::c_int, "pivot_root")?;
    // SAFETY: as above.
    let r = unsafe { libc::umount2(dot.as_ptr(), libc::MNT_DETACH) };
    check(r, "detaching the host's tree")?;
    std::env::set_current_dir("/")?;
    let host = cfg.hostname.as_bytes();
    // SAFETY: `host` is live for `host.len()` bytes.
    let r = unsafe { libc::sethostname(host.as_ptr().cast(), host.len()) };
    check(r, "setting the hostname")?;
    pin_cpus(cfg.vcpus);
    drop_host_capabilities();
    // SAFETY: std::env mutation while single-threaded.
    unsafe {
        std::env::set_var("PATH", PATH);
        std::env::set_var("HOME", "/root");
    }
    println!("ebs-init: {} booted as {}", cfg.instance_id, cfg.hostname);

    if cfg.netns.is_some() {
        crate::firstboot::install_public_key(
            &PathBuf::from(STATE_DIR).join(&cfg.instance_id),
            &cfg.instance_id,
        );
    }
    start_sshd();
    if let Some(data) = user_data
        && let Err(e) = run_user_data(&cfg.instance_id, &data)
    {
        println!("ebs-init: user data not run: {e}");
    }

    // Boot is over: what waits for the instance to be up can look for this.
    let _ = fs::create_dir_all("/run/ebs-init").and_then(|()| fs::write(BOOTED, b""));
    let set = handled_signals();
    let mut view = memory_usage.filter(|_| cfg.memory_bytes > 0);
    if let Some(f) = view.as_mut() {
        refresh_meminfo(f, cfg.memory_bytes);
    }
    loop {
        match next_signal(&set, Duration::from_secs(1)) {
            Some(libc::SIGCHLD) => reap(),
            Some(_) => break,
            None => {
                if let Some(f) = view.as_mut() {
                    refresh_meminfo(f, cfg.memory_bytes);
                }
            }
        }
    }
    shutdown(Duration::from_millis(cfg.stop_grace_ms));
    Ok(0)
}

/// The instance's own `/dev`, on a tmpfs under the root filesystem (cwd).
fn make_dev(cfg: &BootConfig) -> io::Result<()> {
    // The nodes' modes as given, not cut by the server's umask; the usual 022 after.
    // SAFETY: umask only sets this process's file creation mask.
    unsafe { libc::umask(0) };
    mount(
        "tmpfs",
        "dev",
        "tmpfs",
        libc::MS_NOSUID | libc::MS_STRICTATIME,
        "mode=755,size=64k",
    )?;
    for (name, major, minor) in [
        ("null", 1, 3),
        ("zero", 1, 5),
        ("full", 1, 7),
        ("random", 1, 8),
        ("urandom", 1, 9),
        ("tty", 5, 0),
    ] {
        mknod(
            &format!("dev/{name}"),
            libc::S_IFCHR | 0o666,
            libc::makedev(major, minor),
        )?;
    }
    fs::create_dir("dev/pts")?;
    mount(
        "devpts",
        "dev/pts",
        "devpts",
        libc::MS_NOSUID | libc::MS_NOEXEC,
        "newinstance,ptmxmode=0666,mode=0620,gid=5",
    )?;
    fs::create_dir("dev/shm")?;
    mount(
        "tmpfs",
        "dev/shm",
        "tmpfs",
        libc::MS_NOSUID | libc::MS_NODEV,
        "mode=1777",
    )?;
    for (link, to) in [
        ("dev/ptmx", "pts/ptmx"),
        ("dev/fd", "/proc/self/fd"),
        ("dev/stdin", "/proc/self/fd/0"),
        ("dev/stdout", "/proc/self/fd/1"),
        ("dev/stderr", "/proc/self/fd/2"),
    ] {
        std::os::unix::fs::symlink(to, link)?;
    }
    for d in &cfg.devices {
        let rdev = fs::metadata(&d.host_device)
            .map_err(ctx(format!("reading {}", d.host_device.display())))?
            .rdev();
        mknod(&format!("dev/{}", d.node), libc::S_IFBLK | 0o660, rdev)?;
        if let Some(link) = &d.link {
            std::os::unix::fs::symlink(&d.node, format!("dev/{link}"))?;
        }
    }
    Ok(())
}

/// Capabilities no process of an instance gets (dropped from the bounding set, so nothing
/// exec'd inside has them, root included): loading kernel modules, raw I/O ports, the host's
/// clock, making device nodes (the instance's own are made before), audit and MAC policy, the
/// kernel log, wake alarms. What `mkfs` and `mount` of the instance's own disks need stays. This
/// keeps an instance from touching the host by accident; it is no security boundary (without a
/// user namespace, `CAP_SYS_ADMIN` is still the host's).
const DROPPED_CAPABILITIES: [libc::c_ulong; 10] = [
    16, // CAP_SYS_MODULE
    17, // CAP_SYS_RAWIO
    25, // CAP_SYS_TIME
    27, // CAP_MKNOD
    30, // CAP_AUDIT_CONTROL
    32, // CAP_MAC_OVERRIDE
    33, // CAP_MAC_ADMIN
    34, // CAP_SYSLOG
    35, // CAP_WAKE_ALARM
    36, // CAP_BLOCK_SUSPEND
];

fn drop_host_capabilities() {
    // SAFETY: prctl with integer arguments. No ambient capability survives an exec either.
    unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL,
            0,
            0,
            0,
        )
    };
    for cap in DROPPED_CAPABILITIES {
        // SAFETY: prctl with integer arguments; a capability the kernel does not know fails
        // with EINVAL, which leaves nothing to drop.
        unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) };
    }
}

/// Pins the init (and so everything it starts) to its first `vcpus` CPUs, if it has more.
fn pin_cpus(vcpus: u32) {
    if vcpus == 0 {
        return;
    }
    // SAFETY: sched_getaffinity/setaffinity on ourselves with a live, correctly sized set.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return;
        }
        let mut kept = 0;
        for cpu in 0..libc::CPU_SETSIZE as usize {
            if libc::CPU_ISSET(cpu, &set) {
                if kept >= vcpus {
                    libc::CPU_CLR(cpu, &mut set);
                } else {
                    kept += 1;
                }
            }
        }
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// `/proc/meminfo` as an instance with `total` bytes, `used` of them in use, shows it.
fn meminfo(total: u64, used: u64) -> String {
    let kib = |b: u64| b >> 10;
    let free = total.saturating_sub(used);
    format!(
        "MemTotal:       {:>8} kB\nMemFree:        {:>8} kB\nMemAvailable:   {:>8} kB\n\
         Buffers:               0 kB\nCached:                0 kB\nSwapCached:            0 kB\n\
         Shmem:                 0 kB\nSReclaimable:          0 kB\n\
         SwapTotal:             0 kB\nSwapFree:              0 kB\n",
        kib(total),
        kib(free),
        kib(free)
    )
}

/// Rewrites the memory view in place (the bind mount shows the file's new content).
fn refresh_meminfo(usage: &mut File, total: u64) {
    let mut text = String::new();
    if usage.seek(SeekFrom::Start(0)).is_err() || usage.read_to_string(&mut text).is_err() {
        return;
    }
    let used = text.trim().parse::<u64>().unwrap_or(0);
    if let Ok(mut f) = OpenOptions::new()
        .write(true)
        .truncate(true)
        .open("/run/ebs-init/meminfo")
    {
        let _ = f.write_all(meminfo(total, used).as_bytes());
    }
}

/// A command for a process of the instance. It starts with no signal blocked: the init blocks
/// those it takes synchronously, and a child inherits the mask of its parent (`Command` keeps
/// it), so without this nothing inside would die of SIGTERM at shutdown.
fn instance_command(program: impl AsRef<OsStr>) -> Command {
    let mut cmd = Command::new(program);
    let unblock = || {
        // SAFETY: sigemptyset and sigprocmask are async-signal-safe and use only this local
        // set; nothing here allocates.
        unsafe {
            let mut empty: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut empty);
            libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
        }
        Ok(())
    };
    // SAFETY: the closure runs between fork and exec and does only async-signal-safe work.
    unsafe { cmd.pre_exec(unblock) };
    cmd
}

/// Starts the image's `sshd`, with host keys made first if it has none.
fn start_sshd() {
    let sshd = Path::new("/usr/sbin/sshd");
    if !sshd.exists() {
        return;
    }
    let keys = instance_command("ssh-keygen")
        .arg("-A")
        .stdin(Stdio::null())
        .status();
    if !keys.is_ok_and(|s| s.success()) {
        println!("ebs-init: ssh-keygen -A failed; sshd may not start");
    }
    let _ = fs::create_dir_all("/run/sshd");
    match instance_command(sshd)
        .args(["-D", "-e"])
        .stdin(Stdio::null())
        .spawn()
    {
        Ok(_) => println!("ebs-init: sshd started"),
        Err(e) => println!("ebs-init: sshd did not start: {e}"),
    }
}

/// Runs the user data, unless it already ran on this instance (its mark is in the root volume,
/// so a new instance from an image of this one runs its own user data again).
fn run_user_data(instance_id: &str, data: &[u8]) -> io::Result<()> {
    let dir = PathBuf::from(STATE_DIR).join(instance_id);
    let done = dir.join("user-data.done");
    if done.exists() {
        return Ok(());
    }
    fs::create_dir_all(&dir)?;
    let script = dir.join("user-data");
    fs::write(&script, data)?;
    fs::set_permissions(&script, fs::Permissions::from_mode(0o700))?;
    // Marked before it runs: once means once, even if it reboots the instance midway.
    File::create(&done)?.sync_all()?;
    if data.starts_with(b"#cloud-config") {
        println!("ebs-init: #cloud-config user data is not supported; only scripts run");
        return Ok(());
    }
    let mut cmd = if data.starts_with(b"#!") {
        instance_command(&script)
    } else {
        let mut c = instance_command("/bin/sh");
        c.arg(&script);
        c
    };
    cmd.current_dir("/").stdin(Stdio::null()).spawn()?;
    println!("ebs-init: user data started");
    Ok(())
}

/// Reaps every exited child (orphans of the instance are ours too).
fn reap() {
    loop {
        let mut status = 0;
        // SAFETY: waitpid with a live status slot.
        let r = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if r <= 0 {
            return;
        }
    }
}

/// Waits until no process but us is left or `deadline` passes; true if none is left.
fn reap_until(deadline: Instant) -> bool {
    loop {
        let mut status = 0;
        // SAFETY: waitpid with a live status slot.
        let r = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if r < 0 {
            return true; // ECHILD: nobody left.
        }
        if r == 0 {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Step 5: ends every process, unmounts what the instance mounted, leaves `/` clean.
fn shutdown(grace: Duration) {
    println!("ebs-init: shutting down");
    // SAFETY: kill(-1) from PID 1 of a PID namespace reaches every process in it but us.
    unsafe { libc::kill(-1, libc::SIGTERM) };
    if !reap_until(Instant::now() + grace) {
        // SAFETY: as above.
        unsafe { libc::kill(-1, libc::SIGKILL) };
        reap_until(Instant::now() + Duration::from_secs(5));
    }
    // SAFETY: sync takes no arguments.
    unsafe { libc::sync() };
    // Innermost first: mountinfo lists parents before children.
    let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let points: Vec<&str> = mounts.lines().filter_map(|l| l.split(' ').nth(4)).collect();
    for point in points.iter().rev().filter(|p| **p != "/") {
        let Ok(p) = cstr(point) else { continue };
        // SAFETY: `p` is a live NUL-terminated path.
        if unsafe { libc::umount2(p.as_ptr(), 0) } != 0 {
            // SAFETY: as above.
            unsafe { libc::umount2(p.as_ptr(), libc::MNT_DETACH) };
        }
    }
    if let Err(e) = mount("", "/", "", libc::MS_REMOUNT | libc::MS_RDONLY, "") {
        println!("ebs-init: {e}");
    }
    // SAFETY: as above.
    unsafe { libc::sync() };
    println!("ebs-init: halted");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_memory_view_shows_the_limit() {
        let text = meminfo(1 << 30, 256 << 20);
        assert!(text.contains("MemTotal:        1048576 kB"), "{text}");
        assert!(text.contains("MemAvailable:     786432 kB"), "{text}");
        assert!(meminfo(1 << 30, 2 << 30).contains("MemFree:               0 kB"));
    }
}
