//! A private PostgreSQL cluster under batchops's data directory, for
//! `batchops serve` without a database URL.
//!
//! The cluster is made with the PostgreSQL binaries installed on the machine
//! (`initdb`, `pg_ctl`), listens on a Unix socket inside the data directory
//! only (no TCP port, so it never collides with another server), trusts local
//! connections, and is started and stopped by the batchops process that
//! holds the data directory's lock. PostgreSQL refuses to run as root, so when
//! batchops runs as root the cluster belongs to, and runs as, the `postgres`
//! user.
//!
//! Layout of the data directory:
//! ```text
//! batchops.lock    held (flock) by the serving process
//! postgres/        the cluster (PGDATA)
//! run/             its Unix socket
//! postgres.log     its server log
//! ```
//! A cluster left running by a process that was killed is found by
//! `pg_ctl status` and reused.

use std::{
    fs::{self, File},
    io,
    os::unix::{fs::PermissionsExt, process::CommandExt},
    path::{Path, PathBuf},
    process::{Command, Output},
};

use tracing::{info, warn};

/// The database batchops uses inside its private cluster.
const DATABASE: &str = "batchops";

/// The port number in the socket's file name; nothing listens on TCP.
const PORT: u16 = 5432;

/// Longest Unix socket path the kernel accepts, without the final NUL.
const MAX_SOCKET_PATH: usize = 107;

/// Why the private cluster cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error(
        "no database URL was given and PostgreSQL's server programs (initdb, pg_ctl) were not \
         found: install PostgreSQL (Debian/Ubuntu: `apt install postgresql`, Fedora: `dnf install \
         postgresql-server`, macOS: `brew install postgresql`), or pass --postgres-bin-dir, or \
         pass --database-url for an existing server"
    )]
    /// PostgreSQL's server programs are not installed.
    NotInstalled,
    /// The directory `--postgres-bin-dir` names lacks the programs.
    #[error("--postgres-bin-dir {0}: no initdb and pg_ctl there")]
    BinDir(String),
    #[error(
        "data directory {0} is in use by another batchops process; stop it or choose another \
         --data-dir"
    )]
    /// Another batchops process serves this data directory.
    InUse(String),
    #[error(
        "batchops runs as root, and PostgreSQL refuses to: a `postgres` user must exist to own \
         the private cluster (or pass --database-url)"
    )]
    /// batchops runs as root and no `postgres` user exists to own the cluster.
    NoPostgresUser,
    #[error(
        "socket path {0} is longer than the {MAX_SOCKET_PATH} bytes Unix sockets allow; choose a \
         shorter --data-dir"
    )]
    /// The socket path would be longer than Unix sockets allow.
    SocketPathTooLong(String),
    /// The data directory (or a file in it) cannot be made or used.
    #[error("data directory {path}: {source}")]
    DataDir {
        /// The path that failed.
        path: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A PostgreSQL program (`initdb`, `pg_ctl`) failed; `output` is what it said.
    #[error("{program} failed: {output}")]
    Program {
        /// The program.
        program: String,
        /// What it said.
        output: String,
    },
}

/// Whether this process starts and stops the cluster, or only connects to
/// one that another batchops process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ownership {
    /// Take the data directory's lock (refused while another process holds
    /// it), start the cluster if needed, stop it on drop.
    Exclusive,
    /// Start the cluster only when no batchops process holds the lock, and
    /// then stop it again on drop; otherwise connect to the running one.
    Shared,
}

/// A running private cluster. Stopped on [`PrivateCluster::stop`] or drop when
/// this process started or adopted it.
#[derive(Debug)]
pub struct PrivateCluster {
    bin: PathBuf,
    pgdata: PathBuf,
    socket_dir: PathBuf,
    owner: Option<Owner>,
    /// The held lock; `None` when another process owns the cluster.
    lock: Option<File>,
}

/// The user the cluster's programs run as when batchops runs as root.
#[derive(Debug, Clone, Copy)]
struct Owner {
    uid: u32,
    gid: u32,
}

impl PrivateCluster {
    /// Finds the PostgreSQL binaries, creates the cluster under `data_dir` on
    /// first use and starts it unless it runs already. Blocking: call it
    /// from `spawn_blocking`.
    pub fn start(
        data_dir: &Path,
        bin_dir: Option<&Path>,
        ownership: Ownership,
    ) -> Result<PrivateCluster, ClusterError> {
        let bin = find_binaries(bin_dir)?;
        let data_dir = prepare_dir(data_dir)?;
        let lock = lock(&data_dir)?;
        if lock.is_none() && ownership == Ownership::Exclusive {
            return Err(ClusterError::InUse(data_dir.display().to_string()));
        }
        let owner = owner()?;
        let cluster = PrivateCluster {
            bin,
            pgdata: data_dir.join("postgres"),
            socket_dir: data_dir.join("run"),
            owner,
            lock,
        };
        let socket = cluster.socket_dir.join(format!(".s.PGSQL.{PORT}"));
        if socket.as_os_str().len() > MAX_SOCKET_PATH {
            return Err(ClusterError::SocketPathTooLong(
                socket.display().to_string(),
            ));
        }
        if cluster.lock.is_some() {
            cluster.initialize()?;
            cluster.start_server(&data_dir)?;
        }
        Ok(cluster)
    }

    /// A connection string for the batchops database on the cluster's
    /// socket.
    pub fn database_url(&self) -> String {
        format!(
            "host='{}' port={PORT} user=postgres dbname={DATABASE}",
            self.socket_dir.display().to_string().replace('\'', "\\'")
        )
    }

    /// Stops the cluster when this process owns it (fast shutdown: open
    /// connections are closed, committed work is kept).
    pub fn stop(mut self) -> Result<(), ClusterError> {
        self.stop_server()
    }

    fn stop_server(&mut self) -> Result<(), ClusterError> {
        if self.lock.take().is_none() {
            return Ok(());
        }
        let pgdata = self.pgdata.display().to_string();
        if !self.is_running() {
            warn!(
                pgdata,
                "private PostgreSQL was already down (it stopped or was killed); nothing to stop"
            );
            return Ok(());
        }
        self.run("pg_ctl", &["stop", "-D", &pgdata, "-m", "fast", "-w", "-s"])?;
        info!(pgdata, "private PostgreSQL stopped");
        Ok(())
    }

    /// Runs initdb when the cluster does not exist yet, and writes the
    /// settings batchops needs (socket only, in `run/`).
    fn initialize(&self) -> Result<(), ClusterError> {
        self.make_owned_dir(&self.socket_dir, 0o700)?;
        if !self.pgdata.join("PG_VERSION").exists() {
            self.make_owned_dir(&self.pgdata, 0o700)?;
            let pgdata = self.pgdata.display().to_string();
            self.run(
                "initdb",
                &[
                    "-D",
                    &pgdata,
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "--encoding=UTF8",
                    "--locale=C",
                ],
            )?;
            let conf = self.pgdata.join("postgresql.conf");
            let mut text = fs::read_to_string(&conf).map_err(|e| self.io_error(&conf, e))?;
            text.push_str("\n# Written by batchops.\ninclude 'batchops.conf'\n");
            fs::write(&conf, text).map_err(|e| self.io_error(&conf, e))?;
            info!(pgdata, "private PostgreSQL cluster created");
        }
        // Rewritten at every start, so that a moved data directory still works.
        let settings = self.pgdata.join("batchops.conf");
        let quoted = self.socket_dir.display().to_string().replace('\'', "''");
        fs::write(
            &settings,
            format!("listen_addresses = ''\nunix_socket_directories = '{quoted}'\nport = {PORT}\n"),
        )
        .map_err(|e| self.io_error(&settings, e))?;
        self.give_to_owner(&settings)
    }

    /// Whether `pg_ctl status` finds the cluster's server running.
    fn is_running(&self) -> bool {
        let pgdata = self.pgdata.display().to_string();
        self.command("pg_ctl", &["status", "-D", &pgdata])
            .output()
            .is_ok_and(|output| output.status.success())
    }

    /// Starts the server unless `pg_ctl status` finds it running (left
    /// behind by a killed batchops, then adopted).
    fn start_server(&self, data_dir: &Path) -> Result<(), ClusterError> {
        let pgdata = self.pgdata.display().to_string();
        if self.is_running() {
            warn!(
                pgdata,
                "private PostgreSQL was already running; adopting it"
            );
            return Ok(());
        }
        let log = data_dir.join("postgres.log");
        if !log.exists() {
            File::create(&log).map_err(|e| self.io_error(&log, e))?;
        }
        self.give_to_owner(&log)?;
        let log = log.display().to_string();
        self.run(
            "pg_ctl",
            &["start", "-D", &pgdata, "-l", &log, "-w", "-t", "60", "-s"],
        )?;
        info!(pgdata, "private PostgreSQL started");
        Ok(())
    }

    fn command(&self, program: &str, args: &[&str]) -> Command {
        let mut command = Command::new(self.bin.join(program));
        command.args(args).current_dir("/").env("LC_ALL", "C");
        if let Some(owner) = self.owner {
            command.uid(owner.uid).gid(owner.gid);
        }
        command
    }

    fn run(&self, program: &str, args: &[&str]) -> Result<Output, ClusterError> {
        let failed = |output: String| ClusterError::Program {
            program: program.to_owned(),
            output,
        };
        let output = self
            .command(program, args)
            .output()
            .map_err(|e| failed(e.to_string()))?;
        if output.status.success() {
            return Ok(output);
        }
        let mut text = String::from_utf8_lossy(&output.stderr).trim().to_owned();
        if text.is_empty() {
            text = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        }
        if self.owner.is_some() && text.contains("ermission denied") {
            text.push_str(
                " (the cluster runs as the postgres user, which must be able to reach the data \
                 directory: choose a --data-dir outside private directories such as /root)",
            );
        }
        Err(failed(text))
    }

    fn make_owned_dir(&self, path: &Path, mode: u32) -> Result<(), ClusterError> {
        fs::create_dir_all(path).map_err(|e| self.io_error(path, e))?;
        fs::set_permissions(path, fs::Permissions::from_mode(mode))
            .map_err(|e| self.io_error(path, e))?;
        self.give_to_owner(path)
    }

    fn give_to_owner(&self, path: &Path) -> Result<(), ClusterError> {
        match self.owner {
            Some(owner) => std::os::unix::fs::chown(path, Some(owner.uid), Some(owner.gid))
                .map_err(|e| self.io_error(path, e)),
            None => Ok(()),
        }
    }

    fn io_error(&self, path: &Path, source: io::Error) -> ClusterError {
        ClusterError::DataDir {
            path: path.display().to_string(),
            source,
        }
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        if let Err(error) = self.stop_server() {
            warn!(%error, "could not stop the private PostgreSQL");
        }
    }
}

/// Creates the data directory and returns its absolute path.
fn prepare_dir(data_dir: &Path) -> Result<PathBuf, ClusterError> {
    let failed = |source| ClusterError::DataDir {
        path: data_dir.display().to_string(),
        source,
    };
    fs::create_dir_all(data_dir).map_err(failed)?;
    data_dir.canonicalize().map_err(failed)
}

/// Takes the data directory's lock; `None` when another process holds it.
fn lock(data_dir: &Path) -> Result<Option<File>, ClusterError> {
    let path = data_dir.join("batchops.lock");
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|source| ClusterError::DataDir {
            path: path.display().to_string(),
            source,
        })?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(fs::TryLockError::WouldBlock) => Ok(None),
        Err(fs::TryLockError::Error(source)) => Err(ClusterError::DataDir {
            path: path.display().to_string(),
            source,
        }),
    }
}

/// The directory holding `initdb` and `pg_ctl`: the flag, else `PATH`, else
/// `pg_config --bindir`, else the usual install locations (newest version
/// first).
fn find_binaries(bin_dir: Option<&Path>) -> Result<PathBuf, ClusterError> {
    let has_both = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
    if let Some(dir) = bin_dir {
        return has_both(dir)
            .then(|| dir.to_path_buf())
            .ok_or_else(|| ClusterError::BinDir(dir.display().to_string()));
    }
    let from_path = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .unwrap_or_default();
    let from_pg_config = Command::new("pg_config")
        .arg("--bindir")
        .output()
        .ok()
        .filter(|output| output.status.success())
        .map(|output| PathBuf::from(String::from_utf8_lossy(&output.stdout).trim()));
    let mut installed = Vec::new();
    for parent in ["/usr/lib/postgresql", "/usr/local/opt", "/opt/homebrew/opt"] {
        if let Ok(entries) = fs::read_dir(parent) {
            for entry in entries.flatten() {
                installed.push(entry.path().join("bin"));
            }
        }
    }
    if let Ok(entries) = fs::read_dir("/usr") {
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with("pgsql-") {
                installed.push(entry.path().join("bin"));
            }
        }
    }
    installed.push(PathBuf::from("/usr/local/pgsql/bin"));
    installed.sort_by_key(|dir| std::cmp::Reverse(version_of(dir)));
    first_with_programs(from_path.into_iter().chain(from_pg_config).chain(installed))
}

/// The first directory holding both `initdb` and `pg_ctl`.
fn first_with_programs(
    mut candidates: impl Iterator<Item = PathBuf>,
) -> Result<PathBuf, ClusterError> {
    candidates
        .find(|dir| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file())
        .ok_or(ClusterError::NotInstalled)
}

/// The major version in an install path such as `/usr/lib/postgresql/15/bin`
/// or `/usr/pgsql-16/bin`, for picking the newest.
fn version_of(dir: &Path) -> u32 {
    dir.components()
        .filter_map(|part| {
            let text = part.as_os_str().to_string_lossy();
            let digits: String = text
                .chars()
                .skip_while(|c| !c.is_ascii_digit())
                .take_while(char::is_ascii_digit)
                .collect();
            digits.parse().ok()
        })
        .max()
        .unwrap_or(0)
}

/// The `postgres` user when this process runs as root; `None` otherwise.
fn owner() -> Result<Option<Owner>, ClusterError> {
    use std::os::unix::fs::MetadataExt;
    // /proc/self belongs to the process's effective user.
    let euid = fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(u32::MAX);
    if euid != 0 {
        return Ok(None);
    }
    let id = |flag: &str| -> Option<u32> {
        let output = Command::new("id").args([flag, "postgres"]).output().ok()?;
        if !output.status.success() {
            return None;
        }
        String::from_utf8_lossy(&output.stdout).trim().parse().ok()
    };
    match (id("-u"), id("-g")) {
        (Some(uid), Some(gid)) => Ok(Some(Owner { uid, gid })),
        _ => Err(ClusterError::NoPostgresUser),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newest_install_is_preferred() {
        let mut dirs = [
            PathBuf::from("/usr/lib/postgresql/13/bin"),
            PathBuf::from("/usr/pgsql-16/bin"),
            PathBuf::from("/usr/lib/postgresql/15/bin"),
            PathBuf::from("/usr/local/pgsql/bin"),
        ];
        dirs.sort_by_key(|dir| std::cmp::Reverse(version_of(dir)));
        assert_eq!(dirs[0], PathBuf::from("/usr/pgsql-16/bin"));
        assert_eq!(dirs[1], PathBuf::from("/usr/lib/postgresql/15/bin"));
        assert_eq!(dirs[3], PathBuf::from("/usr/local/pgsql/bin"));
    }

    #[test]
    fn no_installation_is_explained_with_what_to_install() {
        let empty = tempfile::tempdir().unwrap();
        let error = first_with_programs([empty.path().to_path_buf()].into_iter()).unwrap_err();
        let message = error.to_string();
        assert!(message.contains("apt install postgresql"), "{message}");
        assert!(message.contains("--database-url"), "{message}");
    }

    #[test]
    fn a_bin_dir_without_the_programs_is_refused_by_name() {
        let empty = tempfile::tempdir().unwrap();
        let error = find_binaries(Some(empty.path())).unwrap_err();
        assert!(
            error
                .to_string()
                .contains(&empty.path().display().to_string())
        );
    }
}
