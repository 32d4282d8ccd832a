"""FUSE filesystems under test: ocxfs, rclone mount, httpdirfs.

Each is started as a foreground child (its pid is the FUSE daemon), waited for
in /proc/mounts, and unmounted by SIGTERM to that pid, then `fusermount3 -u -z`
if the mount is still there, then SIGKILL.
"""

import os
import shutil
import signal
import time

from .util import force_unmount, is_mounted, log, now, proc_status, tail


class MountError(Exception):
    pass


class FuseSystem:
    kind = "fuse"
    storage = "nginx"
    note = ""
    cache_dir = None  # emptied before every cold run

    def __init__(self, ctx, name, mnt, counter):
        self.ctx, self.name, self.mnt, self.counter = ctx, name, mnt, counter
        self.proc = None
        self.failures = 0
        self.log_path = os.path.join(ctx.logdir, f"{name}.log")

    # --- to override
    def argv(self):
        raise NotImplementedError

    def env(self):
        return dict(os.environ)

    def path(self, rel):
        return os.path.join(self.mnt, rel)

    # ---
    @property
    def pid(self):
        return self.proc.pid if self.proc is not None else None

    def hwm(self):
        return proc_status(self.pid, "VmHWM") if self.pid else None

    def clear_cache(self):
        if self.cache_dir:
            shutil.rmtree(self.cache_dir, ignore_errors=True)
            os.makedirs(self.cache_dir, exist_ok=True)

    def mount(self, timeout=60):
        if self.failures >= 2:
            raise MountError(f"{self.name}: gave up after {self.failures} failed mounts")
        self.unmount()
        os.makedirs(self.mnt, exist_ok=True)
        with open(self.log_path, "ab") as lf:
            lf.write(f"\n==== {time.strftime('%H:%M:%S')} {' '.join(self.argv())}\n".encode())
            lf.flush()
            self.proc = self.ctx.procs.start(self.name, self.argv(), stdout=lf, stderr=lf, env=self.env())
        deadline = now() + timeout
        while now() < deadline:
            if is_mounted(self.mnt):
                self.failures = 0
                return
            rc = self.proc.poll()
            if rc is not None:
                self.proc = None
                self.failures += 1
                raise MountError(f"{self.name} exited with status {rc} before mounting: {tail(self.log_path, 3)}")
            time.sleep(0.02)
        self.failures += 1
        self.unmount()
        raise MountError(f"{self.name} did not mount within {timeout}s: {tail(self.log_path, 3)}")

    def unmount(self):
        p = self.proc
        if p is not None and p.poll() is None:
            try:
                os.kill(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            deadline = now() + 15
            while p.poll() is None and now() < deadline:
                time.sleep(0.02)
        if is_mounted(self.mnt):
            if not force_unmount(self.mnt):
                log(f"warning: {self.mnt} is still mounted")
        if p is not None:
            self.ctx.procs.stop(p, timeout=5)
        self.proc = None

    def kill(self):
        """For a hung run: end the daemon so blocked readers get an error."""
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        force_unmount(self.mnt)


class Ocxfs(FuseSystem):
    def __init__(self, ctx, name, mnt, counter, emu, note="", storage="emulator", ca_file=None):
        super().__init__(ctx, name, mnt, counter)
        self.emu, self.note, self.storage, self.ca_file = emu, note, storage, ca_file
        # Its own XDG dirs, emptied before every cold mount: nothing it keeps
        # across remounts (persisted presigned URLs, ...) survives into a cold run,
        # and the user's own ~/.local/state is left alone.
        self.cache_dir = os.path.join(ctx.workdir, "cache", name)

    def argv(self):
        a = [self.ctx.ocxfs, "mount", self.mnt, "--foreground", "--api-base", self.emu.base]
        if self.ctx.ocxfs_has_max_memory:
            a += ["--max-memory", self.ctx.max_memory]
        if self.ca_file:
            a += ["--ca-file", self.ca_file]
        return a

    def env(self):
        env = {k: v for k, v in os.environ.items()
               if k not in ("OCXFS_API_KEY", "ONE_CODEX_BEARER_TOKEN", "ONE_CODEX_API_BASE")}
        env["ONE_CODEX_API_KEY"] = self.ctx.api_key
        env["XDG_STATE_HOME"] = os.path.join(self.cache_dir, "state")
        env["XDG_CACHE_HOME"] = os.path.join(self.cache_dir, "cache")
        env["HOME"] = self.cache_dir  # no ~/.onecodex from the machine's user
        env.setdefault("RUST_LOG", "warn")
        return env

    def path(self, rel):
        return os.path.join(self.mnt, "documents", os.path.basename(rel))


class Rclone(FuseSystem):
    def __init__(self, ctx, name, mnt, counter, url, full_cache=False, ca_file=None):
        super().__init__(ctx, name, mnt, counter)
        self.url, self.full_cache, self.ca_file = url, full_cache, ca_file
        self.cache_dir = os.path.join(ctx.workdir, "cache", name)
        self.note = "--vfs-cache-mode full" if full_cache else "no cache"

    def argv(self):
        a = ["rclone", "mount", ":http:", self.mnt, "--http-url", self.url.rstrip("/") + "/",
             "--read-only", "--cache-dir", self.cache_dir, "--log-level", "NOTICE"]
        a += ["--vfs-cache-mode", "full" if self.full_cache else "off"]
        if self.ca_file:
            a += ["--ca-cert", self.ca_file]
        return a

    def env(self):
        conf = os.path.join(self.ctx.workdir, "rclone.conf")
        if not os.path.exists(conf):
            open(conf, "w").close()
        return dict(os.environ, RCLONE_CONFIG=conf)


class Httpdirfs(FuseSystem):
    def __init__(self, ctx, name, mnt, counter, url, cache=False):
        super().__init__(ctx, name, mnt, counter)
        self.url, self.cache = url, cache
        self.cache_dir = os.path.join(ctx.workdir, "cache", name) if cache else None
        self.note = "--cache" if cache else "no cache"

    def argv(self):
        a = ["httpdirfs", "-f", "--no-range-check"]
        if self.cache:
            a += ["--cache", "--cache-location", self.cache_dir]
        return a + [self.url.rstrip("/") + "/", self.mnt]

    def env(self):
        return dict(os.environ, XDG_CACHE_HOME=os.path.join(self.ctx.workdir, "cache", "xdg"))
