"""The workloads. Each adds rows to ctx (one per system) through `measure`."""

import http.client
import json
import os
import random
import shutil
import subprocess
import sys
import threading
import urllib.parse

from .servers import EmuCounter, Emulator
from .systems import Httpdirfs, Ocxfs, Rclone
from .util import GiB, MiB, cpu_busy_seconds, drop_caches, log, median, now, warm_files

READER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "reader.py")

FUSE_ORDER = ["ocxfs", "ocxfs-emu", "rclone", "rclone-full", "httpdirfs", "httpdirfs-cache"]
HTTPS_ORDER = ["ocxfs-https", "rclone-https"]


# --------------------------------------------------------------------------- rows

class Series:
    """One row (a workload on one system), measured run by run: `run_fn(i)`
    returns a dict with 'value'.

    A run that hit the time cap is not repeated (the figure comes from the
    bytes actually read); an exception ends that system's row with an error
    note, never the whole benchmark.
    """

    def __init__(self, ctx, workload, system, unit, better, run_fn, ref=None, note="", runs=None):
        self.ctx, self.run_fn = ctx, run_fn
        self.runs = runs or ctx.runs
        self.done = False
        self.row = {"workload": workload, "system": system, "unit": unit, "better": better, "ref": ref,
                    "samples": [], "runs": [], "notes": [n for n in [note] if n], "error": None}

    def run(self, i, ref=None):
        """Run `i`; `ref`: the reference's row while it is measured alongside."""
        row, ctx = self.row, self.ctx
        workload, system, unit = row["workload"], row["system"], row["unit"]
        if i == 0:
            log(f"{workload}: {system} ...")
        load = os.getloadavg()[0]
        try:
            d = self.run_fn(i)
        except Exception as e:  # noqa: BLE001 - a failing system becomes a row
            msg = f"{type(e).__name__}: {e}"
            row["error"] = msg[:300]
            log(f"{workload}: {system} failed: {msg[:300]}")
            self.done = True
            return
        d.setdefault("loadavg_1min_at_start", round(load, 2))
        d["round"] = i
        row["runs"].append(d)
        row["samples"].append(d["value"])
        log(f"{workload}: {system} run {i + 1}: {d['value']:.4g} {unit}"
            + (f" (fetched/read {d['fetched_per_read']:.3g})" if d.get("fetched_per_read") is not None else "")
            + (" CAPPED" if d.get("capped") else ""))
        if d.get("note") and d["note"] not in row["notes"]:
            row["notes"].append(d["note"])
        self.done = len(row["samples"]) >= self.runs
        if d.get("capped"):
            row["notes"].append(d.get("cap_note") or
                                f"capped at {ctx.cap:g}s: figure from the bytes actually read; not repeated")
            self.done = True
            return
        speed = speed_vs_ref(ctx, row, d["value"], ref)
        if i == 0 and self.runs > 1 and speed is not None and speed < ctx.far:
            row["notes"].append(f"{speed:.2g}x the reference in run 1, far below {ctx.far:g}x: not repeated")
            self.done = True

    def finish(self):
        self.ctx.add_row(self.row)
        return self.row


def measure(ctx, workload, system, unit, better, run_fn, ref=None, note="", runs=None):
    """All runs of one system, then the next system's."""
    series = Series(ctx, workload, system, unit, better, run_fn, ref, note, runs)
    i = 0
    while not series.done:
        series.run(i)
        i += 1
    return series.finish()


def measure_rounds(ctx, series):
    """Interleaved: round i runs every system once, the reference first, so
    that a slow spell of this shared machine falls on all of them alike and
    each round gives a paired ratio (see `paired_ratio`)."""
    by_name = {s.row["system"]: s for s in series}
    i = 0
    while not all(s.done for s in series):
        for s in series:
            if not s.done:
                ref = by_name.get(s.row["ref"])
                s.run(i, ref.row if ref else None)
        i += 1
    return [s.finish() for s in series]


def ref_row(ctx, row):
    """The finished row of `row`'s reference, if any."""
    return next((r for r in ctx.rows if r["workload"] == row["workload"] and r["system"] == row.get("ref")), None)


def speed_vs_ref(ctx, row, value, live_ref=None):
    ref = live_ref or ref_row(ctx, row)
    ref_value = median(ref["samples"]) if ref and ref["samples"] else None
    if not ref_value or not value:
        return None
    return value / ref_value if row["better"] == "higher" else ref_value / value


def paired_ratio(row, ref):
    """Median over rounds of this row's value over the reference's in the
    same round (rows measured by `measure_rounds`), else None."""
    ref_by_round = {d["round"]: d["value"] for d in ref["runs"] if "round" in d and d["value"]}
    pairs = [(d["value"], ref_by_round[d["round"]]) for d in row["runs"]
             if d.get("round") in ref_by_round and d["value"] and not d.get("capped")]
    if not pairs or not row.get("paired"):
        return None
    return median([v / r if row["better"] == "higher" else r / v for v, r in pairs])


def finish_row(row):
    row["median"] = median(row["samples"])
    fpr = [r.get("fetched_per_read") for r in row["runs"]]
    row["fetched_per_read"] = median(fpr) if any(x is not None for x in fpr) else None


# --------------------------------------------------------------------------- helpers

def drop(ctx):
    """drop_caches, then reload the programs (not the data) it evicted: the
    running servers' binaries and the tools about to be timed, so no run pays
    for loading curl's libraries or nginx's code from disk."""
    drop_caches()
    warm_files(ctx.binaries)
    for argv in ctx.tools:
        subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def prepare_storage(ctx, rels, head=None):
    """Cold: drop the page cache; then (unless --cold-storage) re-read the
    storage-side files so the server answers from RAM, not from the disk."""
    drop(ctx)
    if not ctx.cold_storage and rels:
        warm_files([os.path.join(ctx.datadir, r) for r in rels], limit=head)


def cold_mount(ctx, sysm, rels, head=None):
    sysm.unmount()
    sysm.clear_cache()
    prepare_storage(ctx, rels, head)
    sysm.mount()


def check_sizes(ctx, sysm, rels):
    """stat (not timed) the files through the mount and check their sizes."""
    paths = [sysm.path(r) for r in rels]
    try:
        r = subprocess.run(["stat", "-c", "%s", *paths], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=ctx.cap + 30)
    except subprocess.TimeoutExpired:
        sysm.kill()
        raise RuntimeError(f"stat of {len(paths)} files took over {ctx.cap + 30:g}s")
    if r.returncode != 0:
        raise RuntimeError(f"stat failed: {r.stderr.decode(errors='replace').strip()[:200]}")
    sizes = [int(x) for x in r.stdout.split()]
    want = [os.path.getsize(os.path.join(ctx.datadir, x)) for x in rels]
    if sizes != want:
        raise RuntimeError(f"sizes through the mount {sizes[:4]} differ from the files' {want[:4]}")


def run_readers(ctx, groups, sysm=None, mode="read", extra=None):
    """One reader child per group of paths, started together; returns their results."""
    go = now() + 0.3
    procs = []
    for paths in groups:
        spec = {"mode": mode, "paths": paths, "cap": ctx.cap, "go": go, "bufsize": MiB}
        spec.update(extra or {})
        procs.append(ctx.procs.start("reader", [sys.executable, READER, json.dumps(spec)],
                                     stdout=subprocess.PIPE))
    deadline = go + ctx.cap + 30
    outs, hung = [], False
    for p in procs:
        try:
            out, _ = p.communicate(timeout=max(1.0, deadline - now()))
        except subprocess.TimeoutExpired:
            hung = True
            if sysm is not None:
                sysm.kill()
            p.kill()
            out, _ = p.communicate()
        ctx.procs.stop(p)
        outs.append(out)
    if hung:
        raise RuntimeError(f"reader still blocked {ctx.cap + 30:g}s after start: daemon killed")
    res = []
    for out in outs:
        try:
            d = json.loads(out.decode().strip().splitlines()[-1])
        except (ValueError, IndexError):
            raise RuntimeError(f"reader printed {out[:200]!r}")
        if "error" in d:
            raise RuntimeError(d["error"])
        res.append(d)
    return res


def throughput(res):
    total = sum(d["bytes"] for d in res)
    secs = max(d["end"] for d in res) - min(d["start"] for d in res)
    return total, secs, any(d["capped"] for d in res)


def curl(ctx, urls, extra=(), timeout=None):
    """One curl process fetching `urls` (keep-alive between them) to /dev/null."""
    argv = ["curl", "-s", "-S", "--noproxy", "*", "-w", "%{http_code} %{size_download} %{time_starttransfer} %{time_total}\\n",
            "--max-time", str(int(timeout or ctx.cap)), *extra]
    for u in urls:
        argv += ["-o", "/dev/null", u]
    return argv


def parse_curl(out):
    rows = []
    for line in out.decode().split("\n"):
        parts = line.split()
        if len(parts) == 4:
            rows.append((int(parts[0]), int(parts[1]), float(parts[2]), float(parts[3])))
    return rows


def run_curls(ctx, argvs, timeout):
    t0 = now()
    procs = [ctx.procs.start("curl", a, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for a in argvs]
    results = []
    for p in procs:
        try:
            out, err = p.communicate(timeout=timeout + 30)
        except subprocess.TimeoutExpired:
            p.kill()
            out, err = p.communicate()
        ctx.procs.stop(p)
        results.append((p.returncode, out, err))
    wall = now() - t0
    return results, wall


def nginx_url(ctx, rel):
    return f"{ctx.nginx.url}/{rel}"


def ref_for(ctx, sysm, nginx_ref, emu_ref):
    """The reference on the same storage as the system."""
    return emu_ref if getattr(sysm, "storage", "nginx") == "emulator" and "curl-emu" in ctx.selected else nginx_ref


def with_fuse(ctx, names):
    return [n for n in FUSE_ORDER if n in names and n in ctx.systems]


def fuse_read_run(ctx, sysm, groups, warm_rels):
    """Cold mount, then the readers; bytes fetched from storage counted until unmount."""
    rels = [r for g in groups for r in g]
    cold_mount(ctx, sysm, warm_rels)
    try:
        check_sizes(ctx, sysm, rels)
        m = sysm.counter.mark()
        busy = cpu_busy_seconds()
        res = run_readers(ctx, [[sysm.path(r) for r in g] for g in groups], sysm)
        busy = cpu_busy_seconds() - busy
        hwm = sysm.hwm()
    finally:
        sysm.unmount()
    fetched, reqs = sysm.counter.since(m)
    total, secs, capped = throughput(res)
    return {"value": total / MiB / secs, "bytes": total, "seconds": secs, "capped": capped,
            "storage_bytes": fetched, "storage_requests": reqs,
            "fetched_per_read": fetched / total if total else None, "vm_hwm_bytes": hwm,
            "machine_cpu_s_per_gib": busy / (total / GiB) if total else None}


def curl_read_run(ctx, url_fn, rels_groups, warm_rels, extra=()):
    prepare_storage(ctx, warm_rels)
    urls = [[url_fn(r) for r in g] for g in rels_groups]
    busy = cpu_busy_seconds()
    results, wall = run_curls(ctx, [curl(ctx, u, extra) for u in urls], ctx.cap)
    busy = cpu_busy_seconds() - busy
    total = 0
    capped = False
    for rc, out, err in results:
        rows = parse_curl(out)
        if rc == 28:
            capped = True
        elif rc != 0 or not rows or any(r[0] != 200 for r in rows):
            raise RuntimeError(f"curl exit {rc}: {err.decode(errors='replace').strip()[:200]} {rows[:2]}")
        total += sum(r[1] for r in rows)
    # curl's own clocks, without process start-up; parallel curls start within
    # a few ms of each other, so the slowest one's time is the aggregate's
    secs = max(sum(r[3] for r in parse_curl(out)) for _, out, _ in results)
    return {"value": total / MiB / secs, "bytes": total, "seconds": secs, "capped": capped,
            "machine_cpu_s_per_gib": busy / (total / GiB) if total else None}


# --------------------------------------------------------------------------- 1 + 2 (+9)

def seq_like(ctx, workload, groups, https=False):
    """Plain HTTP: curl of nginx, the FUSE systems on nginx or the emulator.
    `https`: curl of nginx over TLS, ocxfs and rclone on the same TLS server."""
    warm = [r for g in groups for r in g]
    sel = ctx.selected
    ref, base, extra = ("curl-https", ctx.nginx.https_url, ("--cacert", ctx.nginx.ca_file)) if https else \
        ("curl", ctx.nginx.url, ())
    series = [Series(ctx, workload, ref, "MiB/s", "higher",
                     lambda i: curl_read_run(ctx, lambda r: f"{base}/{r}", groups, warm, extra),
                     note=("nginx over TLS" if https else "nginx")
                     + (", 4 parallel curls" if len(groups) > 1 else ""))]
    if https:
        for name in [n for n in HTTPS_ORDER if n in sel and n in ctx.systems]:
            sysm = ctx.systems[name]
            series.append(Series(ctx, workload, name, "MiB/s", "higher",
                                 lambda i, s=sysm: fuse_read_run(ctx, s, groups, warm), ref=ref, note=sysm.note))
    if "curl-emu" in sel and ctx.emu_data and not https:
        series.append(Series(ctx, workload, "curl-emu", "MiB/s", "higher",
                             lambda i: curl_read_run(ctx, lambda r: ctx.emu_data.presign(os.path.basename(r)),
                                                     groups, warm),
                             note="emulator presigned URL"))
    for name in [] if https else with_fuse(ctx, sel):
        sysm = ctx.systems[name]
        ref = ref_for(ctx, sysm, "curl", "curl-emu")
        series.append(Series(ctx, workload, name, "MiB/s", "higher",
                             lambda i, s=sysm: fuse_read_run(ctx, s, groups, warm), ref=ref, note=sysm.note))
    for s in series:
        s.row["paired"] = True
    return [r for r in measure_rounds(ctx, series) if r["system"] not in ("curl", "curl-emu", "curl-https")]


def w_seq(ctx):
    seq_like(ctx, "seq", [[ctx.big]])


def w_seq_https(ctx):
    seq_like(ctx, "seq-https", [[ctx.big]], https=True)


def w_par_https(ctx):
    seq_like(ctx, "par-https", [[p] for p in ctx.par], https=True)


def w_par(ctx):
    rows = seq_like(ctx, "par", [[p] for p in ctx.par])
    if "rss" in ctx.only or "par" in ctx.only:
        for row in rows:
            hw = [r.get("vm_hwm_bytes") for r in row["runs"] if r.get("vm_hwm_bytes")]
            new = {"workload": "rss-par", "system": row["system"], "unit": "MiB", "better": "lower",
                   "ref": None, "samples": [h / MiB for h in hw], "runs": [{"value": h / MiB} for h in hw],
                   "notes": ["peak RSS (VmHWM) of the FUSE daemon during the 4 parallel readers"],
                   "error": row["error"] if not hw else None}
            if row["system"].startswith("ocxfs") and ctx.ocxfs_has_max_memory:
                new["notes"].append(f"--max-memory {ctx.max_memory} ({ctx.max_memory_bytes / MiB:.0f} MiB)")
                new["budget_bytes"] = ctx.max_memory_bytes
            ctx.add_row(new)


# --------------------------------------------------------------------------- 3

def keepalive_random(ctx, url, size, runtime):
    u = urllib.parse.urlsplit(url)
    path = u.path + ("?" + u.query if u.query else "")
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    rng = random.Random(4)
    blocks = size // 4096
    n = 0
    t0 = now()
    deadline = t0 + runtime
    try:
        while now() < deadline:
            off = rng.randrange(blocks) * 4096
            conn.request("GET", path, headers={"Range": f"bytes={off}-{off + 4095}"})
            r = conn.getresponse()
            data = r.read()
            if r.status != 206 or len(data) != 4096:
                raise RuntimeError(f"Range GET answered {r.status} with {len(data)} bytes")
            n += 1
    finally:
        conn.close()
    secs = now() - t0
    return {"value": n / secs, "requests": n, "seconds": secs, "io_bytes": n * 4096,
            "fetched_per_read": 1.0}


def fio_run(ctx, sysm):
    cold_mount(ctx, sysm, [ctx.big])
    out = os.path.join(ctx.workdir, "fio.json")
    try:
        check_sizes(ctx, sysm, [ctx.big])
        m = sysm.counter.mark()
        argv = ["fio", "--name=r", f"--filename={sysm.path(ctx.big)}", "--rw=randread", "--bs=4k",
                "--ioengine=psync", "--time_based", f"--runtime={ctx.prof['fio_runtime']}", "--direct=0",
                "--readonly", "--output-format=json", f"--output={out}"]
        p = ctx.procs.start("fio", argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            _, err = p.communicate(timeout=ctx.prof["fio_runtime"] + ctx.cap + 30)
        except subprocess.TimeoutExpired:
            sysm.kill()
            p.kill()
            p.communicate()
            raise RuntimeError("fio did not finish in time: daemon killed")
        finally:
            ctx.procs.stop(p)
        if p.returncode != 0:
            raise RuntimeError(f"fio exit {p.returncode}: {err.decode(errors='replace').strip()[:200]}")
        hwm = sysm.hwm()
    finally:
        sysm.unmount()
    fetched, reqs = sysm.counter.since(m)
    with open(out) as f:
        text = f.read()
    job = json.loads(text[text.index("{"):])["jobs"][0]["read"]
    io = job["io_bytes"]
    return {"value": job["iops"], "io_bytes": io, "runtime_ms": job["runtime"],
            "storage_bytes": fetched, "storage_requests": reqs,
            "fetched_per_read": fetched / io if io else None, "vm_hwm_bytes": hwm,
            "lat_mean_us": job.get("clat_ns", {}).get("mean", 0) / 1000}


def w_random(ctx):
    size = os.path.getsize(os.path.join(ctx.datadir, ctx.big))
    rt = ctx.prof["fio_runtime"]

    def ka(url_fn):
        def run(i):
            prepare_storage(ctx, [ctx.big])
            return keepalive_random(ctx, url_fn(), size, rt)
        return run

    measure(ctx, "random", "http-keepalive", "IOPS", "higher", ka(lambda: nginx_url(ctx, ctx.big)),
            note="serial 4 KiB Range GETs, one connection, nginx")
    if "curl-emu" in ctx.selected and ctx.emu_data:
        measure(ctx, "random", "http-keepalive-emu", "IOPS", "higher",
                ka(lambda: ctx.emu_data.presign(os.path.basename(ctx.big))),
                note="same, emulator presigned URL")
    for name in with_fuse(ctx, ctx.selected):
        sysm = ctx.systems[name]
        ref = ref_for(ctx, sysm, "http-keepalive", "http-keepalive-emu")
        measure(ctx, "random", name, "IOPS", "higher", lambda i, s=sysm: fio_run(ctx, s), ref=ref,
                note=f"fio randread 4k psync {rt}s" + (f"; {sysm.note}" if sysm.note else ""))


# --------------------------------------------------------------------------- 4

def w_warm(ctx):
    src = os.path.join(ctx.datadir, ctx.big)
    shm = ctx.shm_copy
    if not os.path.exists(shm) or os.path.getsize(shm) != os.path.getsize(src):
        shutil.copyfile(src, shm)

    def tmpfs(i):
        run_readers(ctx, [[shm]])  # make sure every page is in memory
        total, secs, capped = throughput(run_readers(ctx, [[shm]]))
        return {"value": total / MiB / secs, "bytes": total, "seconds": secs, "capped": capped}

    measure(ctx, "warm", "tmpfs", "MiB/s", "higher", tmpfs, note="/dev/shm copy, second read")

    def fuse(sysm):
        def run(i):
            cold_mount(ctx, sysm, [ctx.big])
            try:
                check_sizes(ctx, sysm, [ctx.big])
                t1, s1, c1 = throughput(run_readers(ctx, [[sysm.path(ctx.big)]], sysm))
                if c1:
                    raise RuntimeError(f"first read did not finish within {ctx.cap:g}s "
                                       f"({t1 / MiB / s1:.3g} MiB/s): nothing to re-read")
                m = sysm.counter.mark()
                total, secs, capped = throughput(run_readers(ctx, [[sysm.path(ctx.big)]], sysm))
            finally:
                sysm.unmount()
            fetched, _ = sysm.counter.since(m)
            return {"value": total / MiB / secs, "bytes": total, "seconds": secs, "capped": capped,
                    "first_read_mib_s": t1 / MiB / s1, "storage_bytes": fetched,
                    "fetched_per_read": fetched / total if total else None}
        return run

    for name in with_fuse(ctx, ctx.selected):
        sysm = ctx.systems[name]
        measure(ctx, "warm", name, "MiB/s", "higher", fuse(sysm), ref="tmpfs",
                note="second read after a full first read" + (f"; {sysm.note}" if sysm.note else ""))


# --------------------------------------------------------------------------- 5

def w_ttfb(ctx):
    head = 64 * MiB
    rel = ctx.big

    def curl_ttfb(url_fn):
        def run(i):
            prepare_storage(ctx, [rel], head)
            url = url_fn()
            results, _ = run_curls(ctx, [curl(ctx, [url], extra=["-r", "0-0"])], ctx.cap)
            rc, out, err = results[0]
            rows = parse_curl(out)
            if rc != 0 or not rows or rows[0][0] != 206:
                raise RuntimeError(f"curl exit {rc} {rows}: {err.decode(errors='replace')[:200]}")
            return {"value": rows[0][2] * 1000}
        return run

    measure(ctx, "ttfb", "curl", "ms", "lower", curl_ttfb(lambda: nginx_url(ctx, rel)),
            note="1-byte Range GET, new connection (time_starttransfer)")
    if "curl-emu" in ctx.selected and ctx.emu_data:
        measure(ctx, "ttfb", "curl-emu", "ms", "lower",
                curl_ttfb(lambda: ctx.emu_data.presign(os.path.basename(rel))),
                note="same on a presigned URL; the POST is not timed")

    def fuse(sysm):
        def run(i):
            cold_mount(ctx, sysm, [rel], head)
            try:
                d = run_readers(ctx, [[]], sysm, mode="ttfb", extra={"path": sysm.path(rel)})[0]
            finally:
                sysm.unmount()
            return {"value": d["seconds"] * 1000}
        return run

    for name in with_fuse(ctx, ctx.selected):
        sysm = ctx.systems[name]
        ref = ref_for(ctx, sysm, "curl", "curl-emu")
        measure(ctx, "ttfb", name, "ms", "lower", fuse(sysm), ref=ref,
                note="fresh mount, stat untimed, then open + read(1)" + (f"; {sysm.note}" if sysm.note else ""))


# --------------------------------------------------------------------------- 6

def cat_files(ctx, paths, sysm, each):
    """`cat` of every path with stdout counted through a pipe; capped."""
    t0 = now()
    p = ctx.procs.start("cat", ["cat", *paths], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    got = [0]

    def count():
        while True:
            b = p.stdout.read1(1 << 20) if hasattr(p.stdout, "read1") else p.stdout.read(1 << 20)
            if not b:
                break
            got[0] += len(b)

    th = threading.Thread(target=count, daemon=True)
    th.start()
    capped = False
    try:
        p.wait(timeout=ctx.cap)
    except subprocess.TimeoutExpired:
        capped = True
        p.kill()
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            sysm.kill()
            p.wait(timeout=30)
    secs = now() - t0
    th.join(timeout=10)
    err = p.stderr.read()
    ctx.procs.stop(p)
    if not capped and p.returncode != 0:
        raise RuntimeError(f"cat exit {p.returncode}: {err.decode(errors='replace').strip()[:200]}")
    total = len(paths) * each
    d = {"bytes": got[0], "seconds": secs, "capped": capped}
    if capped:
        d["value"] = secs * total / max(got[0], 1)
        d["cap_note"] = (f"capped at {ctx.cap:g}s: time extrapolated from the {got[0] / each:.0f} of "
                         f"{len(paths)} files read; not repeated")
    else:
        d["value"] = secs
    return d


def w_small(ctx):
    rels = ctx.small
    each = ctx.prof["small"]

    def curl_all(url_fn):
        def run(i):
            urls = [url_fn(r) for r in rels]  # presigning (emulator) is not timed
            prepare_storage(ctx, rels)
            argv = curl(ctx, urls, timeout=ctx.cap)
            results, wall = run_curls(ctx, [argv], ctx.cap)
            rc, out, err = results[0]
            rows = parse_curl(out)
            if rc != 0 or len(rows) != len(rels) or any(r[0] != 200 for r in rows):
                raise RuntimeError(f"curl exit {rc}, {len(rows)} answers: {err.decode(errors='replace')[:200]}")
            return {"value": wall, "bytes": sum(r[1] for r in rows)}
        return run

    measure(ctx, "small", "curl", "s", "lower", curl_all(lambda r: nginx_url(ctx, r)),
            note=f"one curl, {len(rels)} URLs, keep-alive")
    if "curl-emu" in ctx.selected and ctx.emu_data:
        measure(ctx, "small", "curl-emu", "s", "lower",
                curl_all(lambda r: ctx.emu_data.presign(os.path.basename(r))),
                note="same on presigned URLs; the POSTs are not timed")

    def fuse(sysm):
        def run(i):
            cold_mount(ctx, sysm, rels)
            try:
                m = sysm.counter.mark()
                d = cat_files(ctx, [sysm.path(r) for r in rels], sysm, each)
            finally:
                sysm.unmount()
            fetched, reqs = sysm.counter.since(m)
            d.update(storage_bytes=fetched, storage_requests=reqs,
                     fetched_per_read=fetched / d["bytes"] if d["bytes"] else None)
            return d
        return run

    for name in with_fuse(ctx, ctx.selected):
        sysm = ctx.systems[name]
        ref = ref_for(ctx, sysm, "curl", "curl-emu")
        measure(ctx, "small", name, "s", "lower", fuse(sysm), ref=ref,
                note=f"cat of {len(rels)} files, fresh mount" + (f"; {sysm.note}" if sysm.note else ""))


# --------------------------------------------------------------------------- 7

def timed_ls(ctx, path, sysm=None):
    t0 = now()
    p = ctx.procs.start("ls", ["ls", "-l", path], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out, err = p.communicate(timeout=ctx.cap)
    except subprocess.TimeoutExpired:
        p.kill()
        try:
            p.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            if sysm:
                sysm.kill()
            p.communicate()
        ctx.procs.stop(p)
        return {"value": now() - t0, "capped": True, "entries": None,
                "cap_note": f"did not finish within {ctx.cap:g}s: the figure is a lower bound; not repeated"}
    secs = now() - t0
    ctx.procs.stop(p)
    if p.returncode != 0:
        raise RuntimeError(f"ls exit {p.returncode}: {err.decode(errors='replace').strip()[:200]}")
    entries = max(0, len(out.splitlines()) - 1)
    return {"value": secs, "entries": entries}


def w_ls(ctx):
    n = ctx.prof["many"]
    pairs = []  # (name, run_fn giving (cold, warm), note)

    def local(i):
        drop(ctx)
        return timed_ls(ctx, ctx.manydir), timed_ls(ctx, ctx.manydir)

    pairs.append(("local-disk", local, "ls -l of the directory on local disk"))

    def fuse(sysm, sub):
        def run(i):
            sysm.unmount()
            sysm.clear_cache()
            drop(ctx)
            sysm.mount()
            try:
                path = os.path.join(sysm.mnt, sub)
                return timed_ls(ctx, path, sysm), timed_ls(ctx, path, sysm)
            finally:
                sysm.unmount()
        return run

    sel = ctx.selected
    if "ocxfs" in sel or "ocxfs-emu" in sel:
        try:
            if ctx.emu_many is None:
                ctx.emu_many = Emulator(ctx.procs, ctx.ocxfs, ctx.manydir, ctx.logdir, "many")
                ctx.emu_many.start()
            s = Ocxfs(ctx, "ocxfs", os.path.join(ctx.mntdir, "ls-ocxfs"), EmuCounter(ctx.emu_many), ctx.emu_many)
            ctx.extra_mounts.append(s)
            pairs.append(("ocxfs", fuse(s, "documents"), f"emulator listing of {n} documents"))
        except Exception as e:  # noqa: BLE001
            ctx.add_error_row("ls-cold", "ocxfs", f"emulator for many/: {e}")
    peers = [("rclone", lambda: Rclone(ctx, "ls-rclone", os.path.join(ctx.mntdir, "ls-rclone"), None, ctx.nginx.many_url)),
             ("httpdirfs", lambda: Httpdirfs(ctx, "ls-httpdirfs", os.path.join(ctx.mntdir, "ls-httpdirfs"), None,
                                             ctx.nginx.many_url))]
    for name, make in peers:
        if name in sel and name not in ctx.unavailable:
            s = make()
            ctx.extra_mounts.append(s)
            pairs.append((name, fuse(s, ""), "nginx autoindex of many/"))

    for name, run_fn, note in pairs:
        store = {}

        def cold(i, run_fn=run_fn, store=store):
            c, w = run_fn(i)
            store[i] = w
            for d in (c, w):
                if d.get("entries") is not None and d["entries"] != n:
                    d["note"] = f"listed {d['entries']} entries, expected {n}"
            return c

        row = measure(ctx, "ls-cold", name, "s", "lower", cold, ref="local-disk" if name != "local-disk" else None,
                      note=f"{note}; first ls -l after mount" if name != "local-disk" else f"{note}, after drop_caches")
        warm_row = {"workload": "ls-warm", "system": name, "unit": "s", "better": "lower",
                    "ref": "local-disk" if name != "local-disk" else None,
                    "samples": [store[i]["value"] for i in sorted(store)], "runs": [store[i] for i in sorted(store)],
                    "notes": ["second ls -l"], "error": row["error"] if not store else None}
        ctx.add_row(warm_row)


# --------------------------------------------------------------------------- 8

def w_latency(ctx):
    sel = ctx.selected
    ms = ctx.latency_ms
    try:
        if ctx.emu_lat is None:
            ctx.emu_lat = Emulator(ctx.procs, ctx.ocxfs, ctx.datadir, ctx.logdir, "latency",
                                   ["--latency-ms", str(ms)])
            ctx.emu_lat.start()
    except Exception as e:  # noqa: BLE001
        ctx.add_error_row("latency", "curl", f"emulator with --latency-ms: {e}")
        return
    emu = ctx.emu_lat
    measure(ctx, "latency", "curl", "MiB/s", "higher",
            lambda i: curl_read_run(ctx, lambda r: emu.presign(os.path.basename(r)), [[ctx.big]], [ctx.big]),
            note=f"emulator storage +{ms} ms per response, one GET")
    if "ocxfs" in sel or "ocxfs-emu" in sel:
        s = Ocxfs(ctx, "ocxfs-latency", os.path.join(ctx.mntdir, "ocxfs-latency"), EmuCounter(emu), emu)
        ctx.extra_mounts.append(s)
        measure(ctx, "latency", "ocxfs", "MiB/s", "higher", lambda i: fuse_read_run(ctx, s, [[ctx.big]], [ctx.big]),
                ref="curl", note=f"emulator storage +{ms} ms per response")
    try:
        emu.stop()
    finally:
        ctx.emu_lat = None


WORKLOADS = [
    ("seq", w_seq, "1. sequential cold read of the big file"),
    ("par", w_par, "2. four parallel readers (+ 9. peak RSS)"),
    ("seq-https", w_seq_https, "1s. sequential cold read of the big file over HTTPS"),
    ("par-https", w_par_https, "2s. four parallel readers over HTTPS"),
    ("random", w_random, "3. random 4 KiB reads"),
    ("warm", w_warm, "4. warm re-read"),
    ("ttfb", w_ttfb, "5. time to first byte"),
    ("small", w_small, "6. cat of the small files"),
    ("ls", w_ls, "7. ls -l of many documents"),
    ("latency", w_latency, "8. sequential read with storage latency"),
]
ALL_WORKLOADS = [w for w, _, _ in WORKLOADS] + ["rss"]
