"""scripts/bench: compare ocxfs with direct HTTP, rclone mount and httpdirfs.

Everything runs on this machine against 127.0.0.1: nginx serves the data
files (storage for curl, rclone, httpdirfs, and for ocxfs through the
emulator's --storage-base when it has that flag), the ocxfs emulator plays
the One Codex API (and S3-like storage for the *-emu rows).
"""

import argparse
import atexit
import datetime
import http.client
import json
import os
import platform
import shlex
import shutil
import signal
import subprocess
import sys
import time
import urllib.parse

from . import workloads as W
from .servers import API_KEY, EmuCounter, Emulator, Nginx, NginxCounter
from .systems import Httpdirfs, Ocxfs, Rclone
from .util import MiB, Procs, cmd_output, fmt_num, force_unmount, is_mounted, log, median

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

PROFILES = {
    "full": {"big": 1 << 30, "par": 256 << 20, "npar": 4, "small": 64 << 10, "nsmall": 200, "many": 10000,
             "fio_runtime": 20},
    "quick": {"big": 64 << 20, "par": 16 << 20, "npar": 4, "small": 64 << 10, "nsmall": 20, "many": 1000,
              "fio_runtime": 3},
}
ALL_SYSTEMS = ["curl", "curl-emu", "ocxfs", "ocxfs-emu", "rclone", "rclone-full", "httpdirfs", "httpdirfs-cache",
               "curl-https", "ocxfs-https", "rclone-https"]
PACKAGES = {"nginx": "nginx", "fio": "fio", "rclone": "rclone", "httpdirfs": "httpdirfs", "curl": "curl",
            "fusermount3": "fuse3", "openssl": "openssl"}
REFERENCE = {"seq": "curl", "par": "curl", "seq-https": "curl-https", "par-https": "curl-https", "random": "http-keepalive", "warm": "tmpfs", "ttfb": "curl",
             "small": "curl", "ls-cold": "local-disk", "ls-warm": "local-disk", "latency": "curl"}


def parse_args(argv):
    p = argparse.ArgumentParser(prog="scripts/bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workdir", default="/tmp/ocxfs-bench", help="data, configs, logs, mounts (default %(default)s)")
    p.add_argument("--json", help="result file (default WORKDIR/bench.json, WORKDIR/bench-quick.json with --quick); "
                                  "a previous one is renamed NAME-YYYYmmdd-HHMMSS.json")
    p.add_argument("--runs", type=int, help="runs per (workload, system); median reported (default 3, 1 with --quick)")
    p.add_argument("--cap", type=float, help="time limit of one measured run, seconds (default 30, 10 with --quick)")
    p.add_argument("--only", help="workloads, comma-separated: " + ",".join(W.ALL_WORKLOADS))
    p.add_argument("--systems", help="systems, comma-separated: " + ",".join(ALL_SYSTEMS)
                   + " (each workload's reference always runs)")
    p.add_argument("--quick", action="store_true", help="1 run, small files, short fio: a smoke check")
    p.add_argument("--far", type=float, default=0.05,
                   help="a system below this fraction of its reference's speed in its first run is not "
                        "repeated (default %(default)s; 0 repeats everything)")
    p.add_argument("--ocxfs", help="ocxfs binary to use (default: cargo build --release, then target/release/ocxfs)")
    p.add_argument("--no-build", action="store_true", help="use target/release/ocxfs as it is")
    p.add_argument("--no-install", action="store_true", help="never apt-get install missing tools")
    p.add_argument("--max-memory", default="512M", help="ocxfs --max-memory (default %(default)s)")
    p.add_argument("--latency-ms", type=int, default=20, help="emulator storage latency of workload 8 (default 20)")
    p.add_argument("--fio-runtime", type=int, help="seconds of random reads (default 20, 3 with --quick)")
    p.add_argument("--cold-storage", action="store_true",
                   help="after dropping the page cache, do NOT re-read the storage-side files: "
                        "servers then read from disk (about 550 MB/s here), which caps every system")
    a = p.parse_args(argv)
    prof = dict(PROFILES["quick" if a.quick else "full"])
    a.profile_name = "quick" if a.quick else "full"
    if a.fio_runtime:
        prof["fio_runtime"] = a.fio_runtime
    a.prof = prof
    a.runs = a.runs or (1 if a.quick else 3)
    a.cap = a.cap or (10.0 if a.quick else 30.0)
    a.only = [x.strip() for x in (a.only or ",".join(W.ALL_WORKLOADS)).split(",") if x.strip()]
    bad = [x for x in a.only if x not in W.ALL_WORKLOADS]
    if bad:
        p.error(f"unknown workload(s) {bad}; known: {W.ALL_WORKLOADS}")
    a.systems = [x.strip() for x in (a.systems or ",".join(ALL_SYSTEMS)).split(",") if x.strip()]
    bad = [x for x in a.systems if x not in ALL_SYSTEMS]
    if bad:
        p.error(f"unknown system(s) {bad}; known: {ALL_SYSTEMS}")
    return a


def parse_size(s):
    s = s.strip().upper().rstrip("B").rstrip("I")
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    if s and s[-1] in mult:
        return int(float(s[:-1]) * mult[s[-1]])
    return int(s)


class Ctx:
    def __init__(self, a):
        self.args = a
        self.prof = a.prof
        self.runs, self.cap = a.runs, a.cap
        self.far = a.far
        self.only = a.only
        self.selected = set(a.systems)
        self.workdir = os.path.abspath(a.workdir)
        base = self.workdir if a.profile_name == "full" else os.path.join(self.workdir, "quick")
        self.datadir = os.path.join(base, "data")
        self.manydir = os.path.join(base, "many")
        self.logdir = os.path.join(self.workdir, "logs")
        self.mntdir = os.path.join(self.workdir, "mnt")
        self.json_path = a.json or os.path.join(self.workdir, "bench.json" if a.profile_name == "full"
                                                 else "bench-quick.json")
        self.shm_copy = f"/dev/shm/ocxfs-bench-{a.profile_name}-big.bin"
        self.max_memory = a.max_memory
        self.max_memory_bytes = parse_size(a.max_memory)
        self.latency_ms = a.latency_ms
        self.cold_storage = a.cold_storage
        self.api_key = API_KEY
        self.procs = Procs()
        self.rows, self.notes = [], []
        self.systems, self.unavailable = {}, {}
        self.extra_mounts = []
        self.nginx = self.emu_data = self.emu_nginx = self.emu_https = self.emu_many = self.emu_lat = None
        self.big = "big.bin"
        self.par = [f"par/p{i}.bin" for i in range(self.prof["npar"])]
        self.small = [f"small/f{i:03d}.bin" for i in range(self.prof["nsmall"])]
        self.started = time.time()
        self.machine = {}
        self.ocxfs = None
        self.binaries, self.tools = [], []
        self.ocxfs_has_max_memory = True
        self.json_kept = False

    def note(self, msg):
        log("NOTE: " + msg)
        self.notes.append(msg)

    def add_row(self, row):
        W.finish_row(row)
        self.rows.append(row)

    def add_error_row(self, workload, system, err):
        self.add_row({"workload": workload, "system": system, "unit": "", "better": "higher", "ref": None,
                      "samples": [], "runs": [], "notes": [], "error": err})


# --------------------------------------------------------------------------- setup

def install_tools(ctx):
    missing = [pkg for tool, pkg in PACKAGES.items() if shutil.which(tool) is None]
    if not missing:
        return
    if ctx.args.no_install:
        ctx.note(f"missing and not installed (--no-install): {', '.join(missing)}")
        return
    log(f"installing {' '.join(missing)} with apt-get")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    try:
        subprocess.run(["apt-get", "update", "-qq"], env=env, check=True, timeout=600,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        r = subprocess.run(["apt-get", "install", "-y", "-qq", *missing], env=env, timeout=900,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if r.returncode != 0:
            # one by one, so one uninstallable peer does not keep the others out
            for pkg in missing:
                subprocess.run(["apt-get", "install", "-y", "-qq", pkg], env=env, timeout=900,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError) as e:
        ctx.note(f"apt-get failed: {e}")
    still = [tool for tool in PACKAGES if shutil.which(tool) is None]
    if still:
        ctx.note(f"still missing after apt-get: {', '.join(still)}")


def build_ocxfs(ctx):
    a = ctx.args
    if a.ocxfs:
        src = os.path.abspath(a.ocxfs)
    else:
        src = os.path.join(REPO, "target", "release", "ocxfs")
        if not a.no_build:
            log("cargo build --release")
            r = subprocess.run(["cargo", "build", "--release"], cwd=REPO, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
            if r.returncode != 0:
                tailtxt = r.stderr.decode(errors="replace").strip().splitlines()[-5:]
                if os.path.exists(src):
                    ctx.note("cargo build --release failed; using the existing target/release/ocxfs: "
                             + " | ".join(tailtxt))
                else:
                    raise SystemExit("cargo build --release failed:\n" + "\n".join(tailtxt))
    if not os.access(src, os.X_OK):
        raise SystemExit(f"no ocxfs binary at {src}")
    # A private copy: others may rebuild target/release while we run.
    os.makedirs(os.path.join(ctx.workdir, "bin"), exist_ok=True)
    dst = os.path.join(ctx.workdir, "bin", "ocxfs")
    tmp = dst + ".tmp"
    shutil.copyfile(src, tmp)
    os.chmod(tmp, 0o755)
    os.replace(tmp, dst)
    ctx.ocxfs = dst
    ctx.ocxfs_source = src


def ensure_file(path, size):
    if os.path.exists(path) and os.path.getsize(path) == size:
        return False
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        left = size
        while left > 0:
            n = min(left, 8 << 20)
            f.write(os.urandom(n))
            left -= n
    os.replace(tmp, path)
    return True


def make_data(ctx):
    p = ctx.prof
    made = 0
    t0 = time.time()
    made += ensure_file(os.path.join(ctx.datadir, ctx.big), p["big"])
    for r in ctx.par:
        made += ensure_file(os.path.join(ctx.datadir, r), p["par"])
    for r in ctx.small:
        made += ensure_file(os.path.join(ctx.datadir, r), p["small"])
    # nothing else may sit in the data dir: every file there is a document
    want = {ctx.big, *ctx.par, *ctx.small}
    for root, dirs, files in os.walk(ctx.datadir):
        for f in files:
            rel = os.path.relpath(os.path.join(root, f), ctx.datadir)
            if rel not in want:
                os.unlink(os.path.join(root, f))
    os.makedirs(ctx.manydir, exist_ok=True)
    names = {f"m{i:05d}.bin" for i in range(p["many"])}
    have = set(os.listdir(ctx.manydir))
    for extra in have - names:
        os.unlink(os.path.join(ctx.manydir, extra))
    for n in sorted(names - have):
        with open(os.path.join(ctx.manydir, n), "wb") as f:
            f.write(os.urandom(1))
        made += 1
    if made:
        log(f"generated {made} data files in {time.time() - t0:.1f}s")
    else:
        log(f"reusing data in {ctx.datadir} and {ctx.manydir}")


def clear_stale_mounts(ctx):
    """Mounts left under our own mnt/ by an interrupted run."""
    if not os.path.isdir(ctx.mntdir):
        return
    for d in os.listdir(ctx.mntdir):
        path = os.path.join(ctx.mntdir, d)
        if is_mounted(path):
            log(f"unmounting a stale mount {path}")
            force_unmount(path)


def machine_info(ctx):
    def first(s):
        return s.splitlines()[0] if s else s

    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = ""
    try:
        with open("/proc/meminfo") as f:
            mem = f.readline().split(":", 1)[1].strip()
    except OSError:
        pass
    rev = cmd_output(["git", "-C", REPO, "rev-parse", "HEAD"])
    dirty = cmd_output(["git", "-C", REPO, "status", "--porcelain", "--untracked-files=no"])
    return {
        "nproc": os.cpu_count(),
        "kernel": platform.release(),
        "uname": " ".join(platform.uname()),
        "cpu": cpu,
        "memory": mem,
        "python": sys.version.split()[0],
        "versions": {
            "nginx": cmd_output(["nginx", "-v"]),
            "rclone": first(cmd_output(["rclone", "version"])),
            "httpdirfs": first(cmd_output(["httpdirfs", "--version"])),
            "fio": cmd_output(["fio", "--version"]),
            "curl": first(cmd_output(["curl", "--version"])),
            "ocxfs": first(cmd_output([ctx.ocxfs, "--version"])) if ctx.ocxfs else None,
        },
        "ocxfs_git": {"commit": rev, "tracked_changes": bool(dirty.strip()), "binary": ctx.ocxfs_source},
    }


def setup_servers(ctx):
    ctx.nginx = Nginx(ctx.procs, os.path.join(ctx.workdir, "nginx"), ctx.datadir, ctx.manydir)
    ctx.nginx.start()
    nginx_counter = NginxCounter(ctx.nginx)
    mount_help = cmd_output([ctx.ocxfs, "mount", "--help"])
    ctx.ocxfs_has_max_memory = "--max-memory" in mount_help
    if not ctx.ocxfs_has_max_memory:
        ctx.note("this ocxfs mount has no --max-memory: mounted with its default memory budget")
    help_text = cmd_output([ctx.ocxfs, "emulator", "--help"])
    has_sb = "--storage-base" in help_text
    ctx.has_storage_base = has_sb
    sel = ctx.selected
    try:
        ctx.emu_data = Emulator(ctx.procs, ctx.ocxfs, ctx.datadir, ctx.logdir, "data")
        ctx.emu_data.start()
    except Exception as e:  # noqa: BLE001
        ctx.note(f"emulator failed to start: {e}")
        ctx.emu_data = None
    if has_sb:
        try:
            ctx.emu_nginx = Emulator(ctx.procs, ctx.ocxfs, ctx.datadir, ctx.logdir, "nginx-storage",
                                     ["--storage-base", ctx.nginx.url])
            ctx.emu_nginx.start()
            # check once that the presigned URLs really lead to nginx and serve the file
            url = ctx.emu_nginx.presign(os.path.basename(ctx.big))
            if not url.startswith(ctx.nginx.url + "/"):
                raise RuntimeError(f"its presigned URL does not point at nginx: {url[:80]}")
            status, body = range_get(url)
            with open(os.path.join(ctx.datadir, ctx.big), "rb") as f:
                want = f.read(16)
            if status != 206 or body != want:
                raise RuntimeError(f"a 16-byte Range GET of its presigned URL answered {status} "
                                   f"with other bytes: {url[:80]}")
        except Exception as e:  # noqa: BLE001
            ctx.note(f"emulator with --storage-base {ctx.nginx.url} is not usable ({e}); "
                     "falling back to emulator storage")
            if ctx.emu_nginx is not None:
                ctx.emu_nginx.stop()
            ctx.emu_nginx = None
    else:
        ctx.note("this ocxfs emulator has no --storage-base: the 'ocxfs' rows use emulator storage "
                 "(same as ocxfs-emu, which is therefore not run separately)")

    if has_sb and ({"ocxfs-https"} & sel) and ({"seq-https", "par-https"} & set(ctx.only)):
        try:
            ctx.emu_https = Emulator(ctx.procs, ctx.ocxfs, ctx.datadir, ctx.logdir, "nginx-https-storage",
                                     ["--storage-base", ctx.nginx.https_url])
            ctx.emu_https.start()
        except Exception as e:  # noqa: BLE001
            ctx.note(f"emulator with --storage-base {ctx.nginx.https_url} did not start ({e})")
            ctx.emu_https = None

    mnt = ctx.mntdir
    if ctx.emu_https is not None:
        ctx.systems["ocxfs-https"] = Ocxfs(ctx, "ocxfs-https", os.path.join(mnt, "ocxfs-https"), nginx_counter,
                                           ctx.emu_https, note="storage=nginx over TLS, --ca-file",
                                           storage="nginx-https", ca_file=ctx.nginx.ca_file)
    else:
        ctx.unavailable["ocxfs-https"] = "no emulator with HTTPS --storage-base"
    if ctx.emu_nginx is not None:
        ctx.systems["ocxfs"] = Ocxfs(ctx, "ocxfs", os.path.join(mnt, "ocxfs"), nginx_counter, ctx.emu_nginx,
                                     note="storage=nginx", storage="nginx")
        if ctx.emu_data is not None:
            ctx.systems["ocxfs-emu"] = Ocxfs(ctx, "ocxfs-emu", os.path.join(mnt, "ocxfs-emu"),
                                             EmuCounter(ctx.emu_data), ctx.emu_data, note="storage=emulator")
    elif ctx.emu_data is not None:
        ctx.systems["ocxfs"] = Ocxfs(ctx, "ocxfs", os.path.join(mnt, "ocxfs"), EmuCounter(ctx.emu_data),
                                     ctx.emu_data, note="storage=emulator (no usable --storage-base)")
        ctx.unavailable["ocxfs-emu"] = "same as ocxfs here (no --storage-base)"
    else:
        ctx.unavailable["ocxfs"] = ctx.unavailable["ocxfs-emu"] = "emulator did not start"
    for name, tool, make in [
        ("rclone", "rclone", lambda: Rclone(ctx, "rclone", os.path.join(mnt, "rclone"), nginx_counter, ctx.nginx.url)),
        ("rclone-full", "rclone", lambda: Rclone(ctx, "rclone-full", os.path.join(mnt, "rclone-full"), nginx_counter,
                                                 ctx.nginx.url, full_cache=True)),
        ("rclone-https", "rclone", lambda: Rclone(ctx, "rclone-https", os.path.join(mnt, "rclone-https"),
                                                  nginx_counter, ctx.nginx.https_url, ca_file=ctx.nginx.ca_file)),
        ("httpdirfs", "httpdirfs", lambda: Httpdirfs(ctx, "httpdirfs", os.path.join(mnt, "httpdirfs"),
                                                     nginx_counter, ctx.nginx.url)),
        ("httpdirfs-cache", "httpdirfs", lambda: Httpdirfs(ctx, "httpdirfs-cache", os.path.join(mnt, "httpdirfs-cache"),
                                                           nginx_counter, ctx.nginx.url, cache=True)),
    ]:
        if shutil.which(tool) is None:
            ctx.unavailable[name] = f"{tool} is not installed"
        else:
            ctx.systems[name] = make()
    if any(getattr(ctx.systems.get(n), "storage", "") == "emulator" for n in sel) and "curl-emu" not in sel:
        sel.add("curl-emu")  # the reference on the same storage
    if shutil.which("fio") is None:
        ctx.note("fio is missing: random-read rows of FUSE systems will fail")
    for name in sorted(sel):
        if name in ctx.unavailable and not ctx.unavailable[name].startswith("same as"):
            for wl in ctx.only:
                if wl in ("seq", "par", "random", "warm", "ttfb", "small"):
                    ctx.add_error_row(wl, name, ctx.unavailable[name])


def range_get(url, n=16):
    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    try:
        conn.request("GET", u.path + ("?" + u.query if u.query else ""), headers={"Range": f"bytes=0-{n - 1}"})
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def cleanup(ctx):
    for s in list(ctx.systems.values()) + ctx.extra_mounts:
        try:
            s.unmount()
        except Exception as e:  # noqa: BLE001
            log(f"unmounting {s.name}: {e}")
    for emu in (ctx.emu_lat, ctx.emu_many, ctx.emu_https, ctx.emu_nginx, ctx.emu_data):
        if emu is not None:
            emu.stop()
    if ctx.nginx is not None:
        ctx.nginx.stop()
    ctx.procs.stop_all()
    if os.path.exists(ctx.shm_copy):
        os.unlink(ctx.shm_copy)
    for d in ("cache",):
        shutil.rmtree(os.path.join(ctx.workdir, d), ignore_errors=True)
    if os.path.isdir(ctx.mntdir):
        for d in os.listdir(ctx.mntdir):
            p = os.path.join(ctx.mntdir, d)
            if is_mounted(p):
                force_unmount(p)


# --------------------------------------------------------------------------- report

def ratio(ctx, row):
    ref_name = row.get("ref")
    if not ref_name or row.get("median") is None:
        return None, None
    ref = W.ref_row(ctx, row)
    if ref is None or not ref.get("median"):
        return None, ref_name
    if row["better"] == "higher":
        return row["median"] / ref["median"], ref_name
    return ref["median"] / row["median"] if row["median"] else None, ref_name


REF_SYSTEMS = {"curl", "curl-emu", "curl-https", "http-keepalive", "http-keepalive-emu", "tmpfs", "local-disk"}
WL_ORDER = ["seq", "par", "seq-https", "par-https", "rss-par", "random", "warm", "ttfb", "small", "ls-cold", "ls-warm", "latency"]


def sorted_rows(ctx):
    def key(r):
        wl = WL_ORDER.index(r["workload"]) if r["workload"] in WL_ORDER else 99
        return (wl, 0 if r.get("ref") is None else 1)
    return sorted(ctx.rows, key=key)  # stable: systems keep their run order


def table(ctx):
    head = ["workload", "system", "median", "unit", "speed vs ref", "fetched/read", "n", "notes"]
    lines = []
    for r in sorted_rows(ctx):
        rt, ref_name = ratio(ctx, r)
        r["ratio"], r["ratio_ref"] = rt, ref_name
        ref = W.ref_row(ctx, r)
        r["paired_ratio"] = W.paired_ratio(r, ref) if ref else None
        notes = list(r["notes"])
        if r["error"]:
            notes.insert(0, "ERROR: " + r["error"])
        if r["workload"] == "rss-par" and r.get("budget_bytes") and r.get("median"):
            notes.append(f"{r['median'] * MiB / r['budget_bytes']:.0%} of the budget")
        lines.append([r["workload"], r["system"], fmt_num(r.get("median")), r["unit"],
                      (f"{rt:.3g}x {ref_name}"
                       + (f" (paired {r['paired_ratio']:.3g}x)" if r["paired_ratio"] is not None else "")
                       if rt is not None else
                       ("(ref)" if r["system"] in REF_SYSTEMS and not r["error"] else "-")),
                      fmt_num(r.get("fetched_per_read")), str(len(r["samples"])), "; ".join(notes)])
    widths = [max(len(h), *(len(l[i]) for l in lines)) if lines else len(h) for i, h in enumerate(head)]
    widths[-1] = 0
    out = ["  ".join(h.ljust(w) for h, w in zip(head, widths)).rstrip()]
    out.append("  ".join("-" * max(w, 5) for w in widths).rstrip())
    for l in lines:
        out.append("  ".join(c.rjust(w) if i in (2, 5, 6) else c.ljust(w)
                             for i, (c, w) in enumerate(zip(l, widths))).rstrip())
    return "\n".join(out)


def versus_peers(ctx):
    """ocxfs against each peer on the same storage (seq, par): ratio of the
    medians and, as rounds pair them, the median of the paired ratios."""
    out = []
    for wl in ("seq", "par", "seq-https", "par-https"):
        rows = {r["system"]: r for r in ctx.rows if r["workload"] == wl and r.get("median")}
        for mine in ("ocxfs", "ocxfs-emu", "ocxfs-https"):
            for peer in ("rclone", "rclone-full", "httpdirfs", "httpdirfs-cache", "rclone-https"):
                if mine not in rows or peer not in rows:
                    continue
                if rows[mine].get("ref") != rows[peer].get("ref"):
                    continue  # only rows on the same storage (the peers read from nginx)
                paired = W.paired_ratio(rows[mine], rows[peer])
                out.append({"workload": wl, "system": mine, "peer": peer,
                            "ratio": rows[mine]["median"] / rows[peer]["median"], "paired_ratio": paired})
    return out


def write_json(ctx, final=False):
    for r in ctx.rows:
        r["ratio"], r["ratio_ref"] = ratio(ctx, r)
        ref = W.ref_row(ctx, r)
        r["paired_ratio"] = W.paired_ratio(r, ref) if ref else None
    doc = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "started": datetime.datetime.fromtimestamp(ctx.started, datetime.timezone.utc).isoformat(timespec="seconds"),
        "elapsed_seconds": round(time.time() - ctx.started, 1),
        "complete": final,
        "command": " ".join(shlex.quote(x) for x in [sys.argv[0], *sys.argv[1:]]),
        "argv": sys.argv,
        "cwd": os.getcwd(),
        "machine": ctx.machine,
        "settings": {
            "profile": ctx.args.profile_name, "sizes": ctx.prof, "runs": ctx.runs, "cap_seconds": ctx.cap,
            "not_repeated_below_speed_ratio": ctx.far,
            "workloads": ctx.only, "systems": sorted(ctx.selected), "max_memory": ctx.max_memory,
            "latency_ms": ctx.latency_ms, "storage_page_cache": "cold (disk)" if ctx.cold_storage else
            "warm: page cache dropped, then the storage-side files re-read before each run",
            "storage_base": getattr(ctx, "has_storage_base", None),
            "workdir": ctx.workdir,
        },
        "notes": ctx.notes,
        "ratio": "speed relative to the row's reference: median/ref for rates, ref/median for times; >1 is faster",
        "paired_ratio": "rows measured in interleaved rounds (seq, par: each round runs the reference, then every "
                        "system): the median over rounds of the same ratio within one round",
        "rows": sorted_rows(ctx),
        "versus_peers": versus_peers(ctx),
    }
    if not ctx.json_kept and os.path.exists(ctx.json_path):
        # keep the previous run's results: bench.json -> bench-YYYYmmdd-HHMMSS.json
        stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(os.path.getmtime(ctx.json_path)))
        root, ext = os.path.splitext(ctx.json_path)
        os.replace(ctx.json_path, f"{root}-{stamp}{ext}")
    ctx.json_kept = True
    tmp = ctx.json_path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(doc, f, indent=1)
    os.replace(tmp, ctx.json_path)


# --------------------------------------------------------------------------- main

def main(argv):
    a = parse_args(argv)
    if os.geteuid() != 0:
        print("scripts/bench must run as root (drop_caches, apt-get, FUSE mounts)", file=sys.stderr)
        return 2
    ctx = Ctx(a)
    for d in (ctx.workdir, ctx.logdir, ctx.mntdir):
        os.makedirs(d, exist_ok=True)

    def on_signal(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    done = {"v": False}

    def at_exit():
        if not done["v"]:
            cleanup(ctx)

    atexit.register(at_exit)
    interrupted = False
    try:
        clear_stale_mounts(ctx)
        install_tools(ctx)
        build_ocxfs(ctx)
        ctx.machine = machine_info(ctx)
        make_data(ctx)
        setup_servers(ctx)
        ctx.binaries = [b for b in (ctx.ocxfs, shutil.which("nginx")) if b]
        ctx.tools = [[t, "--version"] for t in ("curl", "cat", "ls", "stat", "fio") if shutil.which(t)]
        ctx.tools.append([sys.executable, "-c", "import json, os, sys, time, http.client"])
        wanted = set(ctx.only)
        if "rss" in wanted:
            wanted.add("par")
        for name, fn, title in W.WORKLOADS:
            if name not in wanted:
                continue
            log(f"=== {title}")
            t0 = time.time()
            try:
                fn(ctx)
            except KeyboardInterrupt:
                raise
            except Exception as e:  # noqa: BLE001 - one broken workload does not stop the others
                ctx.note(f"workload {name} failed: {type(e).__name__}: {e}")
            log(f"=== {name} took {time.time() - t0:.0f}s")
            write_json(ctx)
    except KeyboardInterrupt as e:
        interrupted = True
        ctx.note(f"interrupted ({e}): results are partial")
    finally:
        cleanup(ctx)
        done["v"] = True
    write_json(ctx, final=not interrupted)
    elapsed = time.time() - ctx.started
    print()
    print(f"ocxfs benchmark ({a.profile_name}: {ctx.runs} run(s), medians; cap {ctx.cap:g}s per run; "
          f"{ctx.machine.get('nproc')} cores, kernel {ctx.machine.get('kernel')})")
    print("speed vs ref: median/ref for rates, ref/median for times (>1 = faster than the reference); "
          "paired: seq and par run in rounds (the reference, then each system), and this is the median "
          "of the ratios within a round. fetched/read: bytes served by storage per byte read.")
    print("cold = page cache dropped + fresh mount; storage side "
          + ("cold (disk)" if ctx.cold_storage else "re-read into RAM after the drop (see --cold-storage)"))
    print()
    loads = [r.get("loadavg_1min_at_start") for row in ctx.rows for r in row["runs"]
             if r.get("loadavg_1min_at_start") is not None]
    if loads:
        print(f"1-min load average at the start of the runs: {min(loads):.1f} to {max(loads):.1f} "
              f"(median {median(loads):.1f}; {ctx.machine.get('nproc')} cores: above that, other work shared the CPU)")
    print()
    print(table(ctx))
    for wl in ("seq", "par", "seq-https", "par-https"):
        cpu = [(r["system"], median(x for x in (d.get("machine_cpu_s_per_gib") for d in r["runs"]) if x))
               for r in sorted_rows(ctx) if r["workload"] == wl
               and any(d.get("machine_cpu_s_per_gib") for d in r["runs"])]
        if cpu:
            print(f"{wl}: CPU seconds per GiB read, whole machine ({ctx.machine.get('nproc')} cores), median: "
                  + ", ".join(f"{name} {x:.2f}" for name, x in cpu))
    for v in versus_peers(ctx):
        print(f"{v['workload']}: {v['system']} / {v['peer']} = {v['ratio']:.3g}x"
              + (f" (paired {v['paired_ratio']:.3g}x)" if v["paired_ratio"] is not None else ""))
    if ctx.notes:
        print()
        for n in ctx.notes:
            print("note: " + n)
    print()
    print(f"results: {ctx.json_path}")
    print(f"took {elapsed / 60:.1f} min")
    return 130 if interrupted else 0
