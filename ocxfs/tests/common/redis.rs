//! A real `redis-server` for the shared-cache tests: its own free port and
//! directory, no persistence, stopped by process id.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct RedisProc {
    child: Option<Child>,
    pub port: u16,
    dir: tempfile::TempDir,
}

impl RedisProc {
    pub fn start() -> RedisProc {
        let found = Command::new("redis-server").arg("--version").output();
        assert!(
            found.is_ok_and(|o| o.status.success()),
            "redis-server is missing: install the redis-server package (scripts/setup-redis)"
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut r = RedisProc {
            child: None,
            port,
            dir: tempfile::tempdir().unwrap(),
        };
        r.restart();
        r
    }

    /// Starts the server (again, after `stop`) on the same port, empty.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "redis-server is running");
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .spawn()
            .expect("start redis-server");
        self.child = Some(child);
        let start = Instant::now();
        while self.cli(&["PING"]) != "PONG" {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "redis-server did not answer"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// One `redis-cli` command's output, trimmed ("" when it fails).
    pub fn cli(&self, args: &[&str]) -> String {
        Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default()
    }

    /// Sends `signal` (SIGSTOP: a Redis that accepts connections but
    /// never answers; SIGCONT: back to work).
    pub fn signal(&self, signal: i32) {
        let pid = self.child.as_ref().expect("running").id() as i32;
        // SAFETY: plain kill(2) on our own child.
        assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
    }

    /// SIGTERM by process id, then wait for it to exit.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // SAFETY: plain kill(2) on our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let start = Instant::now();
        while child.try_wait().unwrap().is_none() {
            if start.elapsed() > Duration::from_secs(10) {
                let _ = child.kill();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for RedisProc {
    fn drop(&mut self) {
        self.stop();
    }
}
