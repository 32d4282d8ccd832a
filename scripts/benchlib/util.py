"""Small helpers: logging, child processes, mounts, caches, statistics."""

import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import time


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def now():
    return time.monotonic()


class Procs:
    """Every process the benchmark starts, so that each is stopped by its pid."""

    def __init__(self):
        self.live = {}  # pid -> (Popen, name)

    def start(self, name, argv, stdout=None, stderr=None, env=None, cwd=None):
        p = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=stdout if stdout is not None else subprocess.DEVNULL,
            stderr=stderr if stderr is not None else subprocess.DEVNULL,
            env=env,
            cwd=cwd,
            start_new_session=True,  # a Ctrl-C reaches us, and we stop them in order
        )
        self.live[p.pid] = (p, name)
        return p

    def stop(self, p, sig=signal.SIGTERM, timeout=15.0):
        """Stops one process by its pid: `sig`, then SIGKILL after `timeout`."""
        if p is None:
            return
        if p.poll() is None:
            try:
                os.kill(p.pid, sig)
            except ProcessLookupError:
                pass
            try:
                p.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                try:
                    os.kill(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    log(f"process {p.pid} ({self.live.get(p.pid, (None, '?'))[1]}) did not die")
        self.live.pop(p.pid, None)

    def stop_all(self):
        for pid, (p, name) in list(self.live.items())[::-1]:
            if p.poll() is None:
                log(f"stopping {name} (pid {pid})")
            self.stop(p, timeout=10)


def _unescape_mount(s):
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), s)


def mount_entry(path):
    """The /proc/mounts line fields for mount point `path`, or None."""
    path = os.path.realpath(path)
    try:
        with open("/proc/mounts") as f:
            lines = f.readlines()
    except OSError:
        return None
    for line in lines:
        parts = line.split()
        if len(parts) >= 3 and _unescape_mount(parts[1]) == path:
            return parts
    return None


def is_mounted(path):
    return mount_entry(path) is not None


def force_unmount(path):
    """Lazy unmount of a FUSE mount point (ours only: callers pass our paths)."""
    for argv in (["fusermount3", "-u", "-z", path], ["umount", "-l", path]):
        if not is_mounted(path):
            return True
        try:
            subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=20)
        except (OSError, subprocess.TimeoutExpired):
            pass
    return not is_mounted(path)


def cpu_busy_seconds():
    """CPU time the whole machine has spent busy (user, system, interrupts)
    since boot, summed over its cores: from the first line of /proc/stat."""
    with open("/proc/stat") as f:
        user, nice, system, _idle, _iowait, irq, softirq = (int(x) for x in f.readline().split()[1:8])
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def drop_caches():
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")


def warm_files(paths, limit=None):
    """Reads files (or their first `limit` bytes) so the storage side serves them from RAM."""
    buf = bytearray(4 << 20)
    mv = memoryview(buf)
    for p in paths:
        fd = os.open(p, os.O_RDONLY)
        try:
            done = 0
            while limit is None or done < limit:
                n = os.readv(fd, [mv])
                if n <= 0:
                    break
                done += n
        finally:
            os.close(fd)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, timeout=15.0, proc=None):
    deadline = now() + timeout
    while now() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def proc_status(pid, key):
    """A kB figure from /proc/PID/status (VmHWM, VmRSS), in bytes, or None."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def tail(path, n=5):
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - 8192))
            lines = f.read().decode("utf-8", "replace").splitlines()
        return " | ".join(l.strip() for l in lines[-n:])
    except OSError:
        return ""


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def cmd_output(argv, timeout=20):
    """stdout+stderr of a command, or the error text."""
    try:
        r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout)
        return r.stdout.decode("utf-8", "replace").strip()
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"unavailable ({e})"


def fmt_num(x):
    if x is None:
        return "-"
    ax = abs(x)
    if ax >= 1000:
        return f"{x:,.0f}"
    if ax >= 100:
        return f"{x:.0f}"
    if ax >= 10:
        return f"{x:.1f}"
    if ax >= 1:
        return f"{x:.2f}"
    if ax >= 0.01:
        return f"{x:.3f}"
    return f"{x:.2g}"


MiB = 1 << 20
GiB = 1 << 30
