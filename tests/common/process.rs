//! The real `batchops` binary as a child process.

use std::time::Duration;

use super::db::TestDb;

/// The real `batchops` binary as a child process on a free loopback port;
/// killed (SIGKILL) when dropped.
pub struct ServerProcess {
    pub child: std::process::Child,
    pub address: std::net::SocketAddr,
    /// Where `--metrics-listen` bound, when it was given.
    pub metrics_address: Option<std::net::SocketAddr>,
    /// Where the S3 Control listener bound, unless it was turned off.
    pub s3control_address: Option<std::net::SocketAddr>,
    /// Where the console listener bound, unless it was turned off.
    pub console_address: Option<std::net::SocketAddr>,
    /// Every JSON log line the process wrote so far.
    pub logs: std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>>,
}

impl ServerProcess {
    /// Starts the binary on port 0 and reads the address it bound from its
    /// JSON "serving" log line, so no other process can take the port first.
    pub fn start(
        db: &TestDb,
        object_store: &str,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> ServerProcess {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_batchops"));
        command
            .args(["serve", "--database-url", &db.url])
            .args(["--object-store", object_store, "--poll-interval-ms", "20"])
            .args(extra)
            .envs(env.iter().copied());
        ServerProcess::launch(command)
    }

    /// Runs `command` (a `batchops serve` without `--listen`) on port 0 and
    /// waits for the address it reports.
    pub fn launch(mut command: std::process::Command) -> ServerProcess {
        use std::io::BufRead;
        // The extra listeners on free ports, unless the test chose.
        for flag in ["--s3control-listen", "--console-listen"] {
            if !command
                .get_args()
                .any(|arg| arg.to_string_lossy().starts_with(flag))
            {
                command.args([flag, "127.0.0.1:0"]);
            }
        }
        let mut child = command
            .args(["--listen", "127.0.0.1:0", "--log-format", "json"])
            .env("RUST_LOG", "info")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (found, address) = std::sync::mpsc::channel();
        let logs = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let kept = logs.clone();
        std::thread::spawn(move || {
            let mut found = Some(found);
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                let Ok(entry) = serde_json::from_str::<serde_json::Value>(&line) else {
                    // What is not a log line (a last error message) is kept as text.
                    kept.lock()
                        .unwrap()
                        .push(serde_json::json!({ "text": line }));
                    continue;
                };
                kept.lock().unwrap().push(entry.clone());
                let message = entry["fields"]["message"].as_str().unwrap_or_default();
                if (message == "serving"
                    || message == "serving metrics"
                    || message == "serving S3 Control"
                    || message == "serving console")
                    && let Some(sender) = &found
                {
                    let address = entry["fields"]["address"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned();
                    let _ = sender.send((message.to_owned(), address));
                    if message == "serving" {
                        found = None;
                    }
                } else if entry["level"] == "WARN" || entry["level"] == "ERROR" {
                    eprintln!("server: {line}");
                }
            }
        });
        let mut metrics_address = None;
        let mut s3control_address = None;
        let mut console_address = None;
        let address = loop {
            let (message, reported) = address
                .recv_timeout(Duration::from_secs(30))
                .expect("the server did not report its address");
            let reported = reported.parse().unwrap();
            match message.as_str() {
                "serving" => break reported,
                "serving metrics" => metrics_address = Some(reported),
                "serving console" => console_address = Some(reported),
                _ => s3control_address = Some(reported),
            }
        };
        ServerProcess {
            child,
            address,
            metrics_address,
            s3control_address,
            console_address,
            logs,
        }
    }
}

impl ServerProcess {
    /// Sends SIGTERM and waits for the process to exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
        self.child.wait().unwrap()
    }
}

impl ServerProcess {
    /// Sends SIGTERM and asserts a clean exit (0), showing the server's
    /// last log lines when it was not.
    pub fn stop_cleanly(&mut self) {
        let status = self.terminate();
        if !status.success() {
            let logs = self.logs.lock().unwrap();
            let tail: Vec<String> = logs
                .iter()
                .rev()
                .take(20)
                .rev()
                .map(|line| line.to_string())
                .collect();
            panic!(
                "the server exited with {status:?}; its last log lines:\n{}",
                tail.join("\n")
            );
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
