//! The PostgreSQL server the tests use.
//!
//! By default the tests bring their own: a private cluster made with the
//! installed `initdb` (batchops's own [`PrivateCluster`], the one `serve`
//! runs without a database URL) under the system's temporary directory,
//! listening on a Unix socket only, so nothing needs to listen on 5432 and
//! no network but loopback is needed. Every test process of a run shares it:
//! each registers its process id under `users/`, and a small guardian
//! process, started with the cluster, stops the cluster and removes its
//! directory once no registered process has been alive for a while (the
//! gap between test binaries is far shorter). A guardian that is about to
//! stop marks the directory `stopping`; a process that registers meanwhile
//! waits for the removal and starts afresh.
//!
//! `BATCHOPS_TEST_DATABASE_URL` names an existing server instead: a URL of a
//! maintenance database (e.g. `postgres://postgres@127.0.0.1:5432/postgres`)
//! of a role that may create databases.

use std::{
    path::{Path, PathBuf},
    sync::OnceLock,
    time::{Duration, Instant},
};

use batchops::cluster::{Ownership, PrivateCluster};

/// The variable that names an existing server instead of the private one.
pub const DATABASE_URL_VARIABLE: &str = "BATCHOPS_TEST_DATABASE_URL";

/// Seconds without a live test process before the guardian stops the cluster.
const IDLE_SECONDS: u32 = 10;

/// The connection string of the maintenance database (`postgres`).
pub fn admin_url() -> &'static str {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| match std::env::var(DATABASE_URL_VARIABLE) {
        Ok(url) if !url.is_empty() => url,
        // On a thread of its own: callers are often inside a runtime.
        _ => std::thread::spawn(|| with_database(&shared_cluster(), "postgres"))
            .join()
            .unwrap_or_else(|_| panic!("the tests' PostgreSQL could not be set up")),
    })
}

/// The connection string of `database` on the test server.
pub fn url_for(database: &str) -> String {
    with_database(admin_url(), database)
}

/// `url` naming `database` instead: the path of a `postgres://` URL, or a
/// `dbname` appended to a key/value string (the last one wins).
pub fn with_database(url: &str, database: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://") {
        let (location, query) = match rest.split_once('?') {
            Some((location, query)) => (location, format!("?{query}")),
            None => (rest, String::new()),
        };
        let authority = location.split_once('/').map_or(location, |(a, _)| a);
        format!("{scheme}://{authority}/{database}{query}")
    } else {
        format!("{url} dbname={database}")
    }
}

/// Starts (or joins) the run's private cluster and returns its URL.
fn shared_cluster() -> String {
    let dir = cluster_dir();
    loop {
        let users = dir.join("users");
        std::fs::create_dir_all(&users).expect("cannot create the test cluster's directory");
        std::fs::write(users.join(std::process::id().to_string()), b"")
            .expect("cannot register with the test cluster");
        if !dir.join("stopping").exists() {
            break;
        }
        // The guardian is stopping it: wait until it is gone, then start anew.
        let deadline = Instant::now() + Duration::from_secs(60);
        while dir.exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let cluster = PrivateCluster::start(&dir, None, Ownership::Shared).unwrap_or_else(|error| {
        panic!(
            "the tests could not start their private PostgreSQL: {error}\n\
             (set {DATABASE_URL_VARIABLE} to use an existing server instead)"
        )
    });
    let url = cluster.database_url();
    // Never stopped by this process: the guardian stops it after the run.
    std::mem::forget(cluster);
    start_guardian(&dir);
    wait_until_accepting(&with_database(&url, "postgres"));
    url
}

/// `<tmp>/batchops-tests-<uid>-<checkout>`: one cluster per user and checkout.
fn cluster_dir() -> PathBuf {
    use std::os::unix::fs::MetadataExt;
    let uid = std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .or_else(|_| std::fs::metadata(std::env::temp_dir()).map(|m| m.uid()))
        .unwrap_or(0);
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in env!("CARGO_MANIFEST_DIR").bytes() {
        hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
    }
    std::env::temp_dir().join(format!("batchops-tests-{uid}-{hash:016x}"))
}

/// Polls until the server accepts connections (another process may still be
/// starting it).
fn wait_until_accepting(url: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    loop {
        let connected = runtime.block_on(async {
            tokio_postgres::connect(url, tokio_postgres::NoTls)
                .await
                .map(|(client, connection)| {
                    drop(client);
                    drop(connection);
                })
        });
        match connected {
            Ok(()) => return,
            Err(error) if Instant::now() > deadline => {
                panic!("the tests' private PostgreSQL did not come up: {error}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// Starts the guardian unless one is alive. It runs in a process group of
/// its own, so an interrupted test run does not take it along.
fn start_guardian(dir: &Path) {
    use std::os::unix::process::CommandExt;
    let pid_file = dir.join("guardian.pid");
    for _ in 0..2 {
        match std::fs::File::create_new(&pid_file) {
            Ok(_) => {
                // Never waited for: it outlives this process on purpose.
                #[allow(clippy::zombie_processes)]
                let child = std::process::Command::new("sh")
                    .args(["-c", GUARDIAN, "guardian"])
                    .arg(dir)
                    .arg(IDLE_SECONDS.to_string())
                    .stdin(std::process::Stdio::null())
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .process_group(0)
                    .spawn()
                    .expect("cannot start the test cluster's guardian");
                let _ = std::fs::write(&pid_file, child.id().to_string());
                return;
            }
            Err(_) => {
                let alive = std::fs::read_to_string(&pid_file)
                    .ok()
                    .and_then(|pid| pid.trim().parse::<i32>().ok())
                    .is_some_and(is_alive);
                if alive {
                    return;
                }
                // Written but not yet filled in, or its guardian died.
                std::thread::sleep(Duration::from_millis(200));
                let still_dead = std::fs::read_to_string(&pid_file)
                    .ok()
                    .and_then(|pid| pid.trim().parse::<i32>().ok())
                    .is_none_or(|pid| !is_alive(pid));
                if still_dead {
                    let _ = std::fs::remove_file(&pid_file);
                }
            }
        }
    }
}

fn is_alive(pid: i32) -> bool {
    std::process::Command::new("kill")
        .args(["-0", &pid.to_string()])
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// The guardian: `$1` is the cluster directory, `$2` the idle seconds.
const GUARDIAN: &str = r#"
dir=$1 idle_limit=$2 idle=0
live_users() {
  alive=0
  for user in "$dir"/users/*; do
    [ -e "$user" ] || continue
    if kill -0 "${user##*/}" 2>/dev/null; then alive=1; else rm -f "$user"; fi
  done
}
while :; do
  sleep 1
  [ -d "$dir" ] || exit 0
  live_users
  if [ "$alive" = 1 ]; then idle=0; continue; fi
  idle=$((idle + 1))
  [ "$idle" -ge "$idle_limit" ] || continue
  mkdir "$dir/stopping" 2>/dev/null || continue
  live_users
  if [ "$alive" = 1 ]; then rmdir "$dir/stopping"; idle=0; continue; fi
  break
done
pid=$(head -n 1 "$dir/postgres/postmaster.pid" 2>/dev/null)
if [ -n "$pid" ]; then
  kill -INT "$pid" 2>/dev/null
  while kill -0 "$pid" 2>/dev/null; do sleep 0.2; done
fi
rm -rf "$dir"
"#;
