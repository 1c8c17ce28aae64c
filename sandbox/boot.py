"""Bootstrap of the code sandbox (process.run_program): `python -I -S boot.py CONFIG_JSON`.

The trainer starts it with stdin/stdout/stderr on files it opened itself and the program's source on descriptor
cfg["source_fd"]. Standard library only; everything here runs before any untrusted code.

  B (this process): dies with the trainer (PDEATHSIG), joins the run's memory cgroup (if any), unshares new mount,
    pid, network, IPC and UTS namespaces (and a user namespace when not root), forks C and waits for it. SIGTERM
    (the trainer's timeout) kills C; B exits only after C, i.e. after every process of the pid namespace is gone.
  C (pid 1 of the new pid namespace): builds a minimal root on a tmpfs (read-only binds of the system dirs and of the
    python installation, /dev/null & co., a fresh /proc, a size-limited /tmp with the program in /tmp/run), pivots
    into it and detaches the old root, drops every capability (as root: switches to the run's uid), sets
    no_new_privs, forks the program P and reaps orphans; it exits with P's status, and the kernel then kills what
    is left in the namespace.
Weak mode (cfg["isolate"] false, only when the trainer allows it): no namespaces; C runs P in the host directory
cfg["workdir"] with the same rlimits, uid switch (root) and no_new_privs.
"""
import ctypes
import json
import os
import platform
import resource
import signal
import sys

cfg = json.loads(sys.argv[1])
libc = ctypes.CDLL(None, use_errno=True)
NEWNS, NEWUTS, NEWIPC, NEWUSER, NEWPID, NEWNET = 0x20000, 0x4000000, 0x8000000, 0x10000000, 0x20000000, 0x40000000
RDONLY, NOSUID, NODEV, NOEXEC, REMOUNT, BIND, REC, PRIVATE = 0x1, 0x2, 0x4, 0x8, 0x20, 0x1000, 0x4000, 0x40000
LOCKED = RDONLY | NOSUID | NODEV | NOEXEC | 0x400 | 0x800 | 0x1000     # and noatime, nodiratime, relatime
PR_SET_PDEATHSIG, PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS = 1, 24, 38
PIVOT_ROOT = {"x86_64": 155, "aarch64": 41, "riscv64": 41, "ppc64le": 203, "s390x": 217}   # syscall numbers


def check(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"sandbox: {what}: {os.strerror(err)}")


def mount(src, target, fstype=None, flags=0, data=None):
    enc = (lambda s: None if s is None else s.encode())
    check(libc.mount(enc(src), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data)), "mount " + target)


def die_with_parent() -> None:
    check(libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "prctl")


def bind_read_only(path: str, target: str) -> None:
    if os.path.isdir(path):
        os.makedirs(target, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        open(target, "w").close()
    mount(path, target, None, BIND | REC)
    # keep the flags the mount already has (a user namespace may not clear them), add read-only and nosuid
    mount(None, target, None, REMOUNT | BIND | RDONLY | NOSUID | (os.statvfs(target).f_flag & LOCKED))


def build_root(new: str) -> None:
    """A fresh root on a tmpfs mounted over the (empty) dir `new`; pivot into it and drop the old root."""
    mount(None, "/", None, REC | PRIVATE)                     # nothing we mount propagates to the host
    mount("tmpfs", new, "tmpfs", NOSUID | NODEV, "size=1m,mode=755")
    for d in ("/proc", "/tmp", "/dev", "/dev/shm"):
        os.mkdir(new + d)
    mount("proc", new + "/proc", "proc", NOSUID | NODEV | NOEXEC)
    mount("tmpfs", new + "/tmp", "tmpfs", NOSUID | NODEV, "size=%dm,mode=1777" % cfg["tmpfs_mb"])
    for path in cfg["binds"]:                                 # a python under /tmp lands on the fresh /tmp
        bind_read_only(path, new + path)
    for path, target in cfg["links"]:
        os.symlink(target, new + path)
    for i, name in enumerate(("stdin", "stdout", "stderr")):
        os.symlink(f"/proc/self/fd/{i}", f"{new}/dev/{name}")
    os.symlink("/proc/self/fd", new + "/dev/fd")
    mount(new + "/tmp", new + "/dev/shm", None, BIND)
    os.chdir(new)
    check(libc.syscall(PIVOT_ROOT[platform.machine()], b".", b"."), "pivot_root")
    check(libc.umount2(b".", 2), "umount old root")           # MNT_DETACH
    mount(None, "/", None, REMOUNT | BIND | RDONLY | NOSUID | NODEV)
    os.chdir("/tmp")


def drop_privileges(uid: int) -> None:
    for cap in range(64):                                     # empty the bounding set (EINVAL past the last cap)
        if libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            break
    if uid >= 0:                                              # root: the run's own uid, no groups, no capabilities
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
    else:                                                     # uid 0 of our user namespace: clear every cap set
        header, data = (ctypes.c_uint32 * 2)(0x20080522, 0), (ctypes.c_uint32 * 6)()
        check(libc.capset(header, data), "capset")
    check(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")


def start_program() -> int:
    with os.fdopen(cfg["source_fd"], "rb") as f:
        source = f.read()
    run_dir = os.path.abspath("run") if cfg["isolate"] else cfg["workdir"]
    os.makedirs(run_dir, mode=0o700, exist_ok=True)
    with open(os.path.join(run_dir, "prog.py"), "wb") as f:
        f.write(source)
    for p in (run_dir, os.path.join(run_dir, "prog.py")):
        if cfg["uid"] >= 0:
            os.chown(p, cfg["uid"], cfg["uid"])
    os.chdir(run_dir)
    drop_privileges(cfg["uid"])
    pid = os.fork()
    if pid == 0:
        try:
            for name, value in cfg["limits"].items():
                resource.setrlimit(getattr(resource, name), (value, value))
            os.execve(cfg["python"], [cfg["python"], "-I", "prog.py"] + cfg["argv"], cfg["env"])
        except BaseException as e:
            os.write(2, f"sandbox: cannot start {cfg['python']}: {e}\n".encode())
        os._exit(127)
    return pid


def reap(pid: int) -> int:
    """Wait for `pid`, reaping every other child (orphans of the namespace) on the way; its exit status."""
    while True:
        child, status = os.wait()
        if child == pid:
            return os.WEXITSTATUS(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)


def main() -> None:
    child = 0
    signal.signal(signal.SIGTERM, lambda *_: os.kill(child, signal.SIGKILL) if child else os._exit(143))
    die_with_parent()
    if os.getppid() != cfg["parent"]:
        os._exit(137)
    if cfg["cgroup"]:
        with open(os.path.join(cfg["cgroup"], "cgroup.procs"), "w") as f:
            f.write(str(os.getpid()))
    if cfg["isolate"]:
        uid, gid = os.getuid(), os.getgid()
        check(libc.unshare(NEWNS | NEWPID | NEWNET | NEWIPC | NEWUTS | (NEWUSER if uid else 0)), "unshare")
        if uid:
            for name, text in (("setgroups", "deny"), ("uid_map", f"0 {uid} 1"), ("gid_map", f"0 {gid} 1")):
                with open(f"/proc/self/{name}", "w") as f:
                    f.write(text)
    alive_r, alive_w = os.pipe()
    child = os.fork()
    if child == 0:
        os.close(alive_w)
        die_with_parent()
        os.set_blocking(alive_r, False)
        try:
            if os.read(alive_r, 1) == b"":                   # B died before PDEATHSIG was armed
                os._exit(137)
        except BlockingIOError:
            pass
        os.close(alive_r)
        if cfg["isolate"]:
            build_root(cfg["root"])
        os._exit(reap(start_program()))
    os.close(alive_r)
    os.close(cfg["source_fd"])
    os._exit(reap(child))


if __name__ == "__main__":
    main()
