"""The servers: nginx (storage for every client) and the ocxfs emulator."""

import http.client
import json
import os
import queue
import subprocess
import threading
import time
import urllib.parse

from .util import free_port, log, tail, wait_port

API_KEY = "0cxf5dem0000000000000000000000ke"


class Nginx:
    """nginx on 127.0.0.1 with its own config, pid file and logs in `dir`.

    Three server blocks: `data` (big.bin, par/, small/), the same files over
    TLS (`https_url`, under a CA made here: `ca_file`), and `many` (the
    10,000-file listing directory). The access log records $body_bytes_sent
    so any client's bytes fetched per byte read can be computed (and, over
    TLS, the protocol and cipher each connection used).
    """

    def __init__(self, procs, dir, data_root, many_root):
        self.procs, self.dir = procs, dir
        self.data_root, self.many_root = data_root, many_root
        self.proc = None
        self.access_log = os.path.join(dir, "access.log")
        self.error_log = os.path.join(dir, "error.log")
        self.conf = os.path.join(dir, "nginx.conf")

    def start(self):
        os.makedirs(self.dir, exist_ok=True)
        for sub in ("tmp",):
            os.makedirs(os.path.join(self.dir, sub), exist_ok=True)
        self.port, self.many_port, self.https_port = free_port(), free_port(), free_port()
        while len({self.port, self.many_port, self.https_port}) < 3:
            self.many_port, self.https_port = free_port(), free_port()
        d = self.dir
        self.ca_file = make_pki(d)
        conf = f"""
user root;
worker_processes auto;
pid {d}/nginx.pid;
error_log {self.error_log} warn;
events {{ worker_connections 4096; }}
http {{
    log_format bench '$msec $status $body_bytes_sent $request_length "$request" "$http_range" $connection';
    log_format bench_tls '$msec $status $body_bytes_sent $request_length "$request" "$http_range" $connection $ssl_protocol $ssl_cipher';
    access_log {self.access_log} bench;
    sendfile on;
    # no tcp_nopush: on loopback it cut curl's reads of big.bin from ~1,800
    # to ~1,200 MiB/s here
    tcp_nodelay on;
    keepalive_timeout 300s;
    keepalive_requests 10000000;
    default_type application/octet-stream;
    types {{ }}
    client_body_temp_path {d}/tmp/client;
    proxy_temp_path {d}/tmp/proxy;
    fastcgi_temp_path {d}/tmp/fastcgi;
    uwsgi_temp_path {d}/tmp/uwsgi;
    scgi_temp_path {d}/tmp/scgi;
    server {{
        listen 127.0.0.1:{self.port};
        root {self.data_root};
        autoindex on;
        location / {{ }}
    }}
    server {{
        # TLS as S3 and GCS serve it: 1.2 and 1.3, nginx's 16 KiB records
        listen 127.0.0.1:{self.https_port} ssl;
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_certificate {d}/server.pem;
        ssl_certificate_key {d}/server.key;
        access_log {self.access_log} bench_tls;
        root {self.data_root};
        autoindex on;
        location / {{ }}
    }}
    server {{
        listen 127.0.0.1:{self.many_port};
        root {self.many_root};
        autoindex on;
        location / {{ }}
    }}
}}
"""
        with open(self.conf, "w") as f:
            f.write(conf)
        open(self.access_log, "w").close()
        errf = open(os.path.join(d, "stderr.log"), "ab")
        self.proc = self.procs.start(
            "nginx",
            ["nginx", "-e", self.error_log, "-p", d + "/", "-c", self.conf, "-g", "daemon off;"],
            stdout=errf,
            stderr=errf,
        )
        errf.close()
        if not all(wait_port(p, proc=self.proc) for p in (self.port, self.many_port, self.https_port)):
            raise RuntimeError(f"nginx did not start: {tail(self.error_log)} {tail(os.path.join(d, 'stderr.log'))}")
        self.url = f"http://127.0.0.1:{self.port}"
        self.many_url = f"http://127.0.0.1:{self.many_port}"
        self.https_url = f"https://127.0.0.1:{self.https_port}"
        log(f"nginx pid {self.proc.pid} at {self.url} (data), {self.https_url} (data over TLS) "
            f"and {self.many_url} (many/)")

    def stop(self):
        self.procs.stop(self.proc)
        self.proc = None


def make_pki(d):
    """A CA and a certificate for 127.0.0.1 signed by it (EC P-256, as
    most S3 and GCS endpoints today), made with openssl in `d`; the CA's path."""
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"]

    def openssl(*args):
        subprocess.run(["openssl", *args], cwd=d, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    openssl("req", "-x509", "-nodes", "-days", "30", *ec, "-keyout", "ca.key", "-out", "ca.pem",
            "-subj", "/CN=ocxfs bench CA", "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    openssl("req", "-new", "-nodes", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1")
    with open(os.path.join(d, "server.ext"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-days", "30", "-out", "server.pem", "-extfile", "server.ext")
    return os.path.join(d, "ca.pem")


class NginxCounter:
    """Bytes nginx sent between a mark and now, from the access log."""

    kind = "nginx access log"

    def __init__(self, nginx):
        self.path = nginx.access_log

    def mark(self):
        return os.path.getsize(self.path)

    def since(self, mark, settle=0.3):
        time.sleep(settle)  # aborted requests are logged when their connection closes
        total = reqs = 0
        with open(self.path, "rb") as f:
            f.seek(mark)
            for line in f:
                parts = line.split()
                if len(parts) > 3:
                    try:
                        total += int(parts[2])
                        reqs += 1
                    except ValueError:
                        pass
        return total, reqs


class Emulator:
    """`ocxfs emulator` as a child; its base URL is the first line of stdout."""

    def __init__(self, procs, ocxfs, docs, logdir, name, extra=()):
        self.procs, self.ocxfs, self.docs = procs, ocxfs, docs
        self.name, self.extra = name, list(extra)
        self.log_path = os.path.join(logdir, f"emulator-{name}.log")
        self.proc = None
        self.base = None
        self._ids = None

    def start(self):
        errf = open(self.log_path, "ab")
        argv = [self.ocxfs, "emulator", "--listen", "127.0.0.1:0", "--docs", self.docs, *self.extra]
        env = dict(os.environ, OCXFS_EMULATOR_API_KEY=API_KEY)
        self.proc = self.procs.start(f"emulator-{self.name}", argv, stdout=subprocess.PIPE, stderr=errf, env=env)
        errf.close()
        lines = queue.Queue()

        def drain(stream):
            first = True
            for raw in stream:
                if first:
                    lines.put(raw.decode("utf-8", "replace").strip())
                    first = False
            if first:
                lines.put(None)

        threading.Thread(target=drain, args=(self.proc.stdout,), daemon=True).start()
        try:
            first = lines.get(timeout=60)
        except queue.Empty:
            first = None
        if not first or not first.startswith("http"):
            self.stop()
            raise RuntimeError(f"emulator {self.name} did not print its URL ({first!r}): {tail(self.log_path)}")
        self.base = first.split()[0].rstrip("/")
        u = urllib.parse.urlsplit(self.base)
        self.host, self.port = u.hostname, u.port
        log(f"emulator {self.name} pid {self.proc.pid} at {self.base} ({' '.join(self.extra) or 'own storage'})")

    def stop(self):
        self.procs.stop(self.proc)
        self.proc = None

    def request(self, method, path, body=None, key=True):
        conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
        try:
            headers = {"X-API-Key": API_KEY} if key else {}
            conn.request(method, path, body=body, headers=headers)
            r = conn.getresponse()
            data = r.read()
            if r.status >= 300:
                raise RuntimeError(f"{method} {path}: HTTP {r.status} {data[:200]!r}")
            return json.loads(data) if data else None
        finally:
            conn.close()

    def ids(self):
        """filename -> document id."""
        if self._ids is None:
            ids, page = {}, 1
            while True:
                docs = self.request("GET", f"/api/v1/documents?per_page=1000&page={page}")
                for d in docs:
                    ids[d["filename"]] = d["$uri"].rstrip("/").rsplit("/", 1)[-1]
                if len(docs) < 1000:
                    break
                page += 1
            self._ids = ids
        return self._ids

    def presign(self, filename):
        doc = self.ids()[filename]
        return self.request("POST", f"/api/v1/documents/{doc}/download_uri")["download_uri"]

    def stats(self):
        return self.request("GET", "/_emulator/stats", key=False)


class EmuCounter:
    """Storage bytes the emulator sent between a mark and now."""

    kind = "emulator storage_bytes"

    def __init__(self, emu):
        self.emu = emu

    def mark(self):
        s = self.emu.stats()
        return s["storage_bytes"], s["range_gets"] + s["full_gets"]

    def since(self, mark, settle=0.3):
        time.sleep(settle)
        s = self.emu.stats()
        return s["storage_bytes"] - mark[0], s["range_gets"] + s["full_gets"] - mark[1]
