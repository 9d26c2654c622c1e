//! `batchops migrate` creates and migrates a database, and several processes
//! starting together agree (the migration lock).

mod common;

use std::process::Command;

use common::{TestDb, admin_url, url_for};
use tokio_postgres::NoTls;

#[tokio::test]
async fn concurrent_migrate_commands_create_and_migrate_the_database_once() {
    let name = format!("batchops_migrate_{}", uuid::Uuid::new_v4().simple());
    let url = url_for(&name);
    let children: Vec<_> = (0..3)
        .map(|_| {
            Command::new(env!("CARGO_BIN_EXE_batchops"))
                .args(["migrate", "--database-url", &url])
                .env("RUST_LOG", "warn")
                .spawn()
                .unwrap()
        })
        .collect();
    for mut child in children {
        assert!(child.wait().unwrap().success());
    }
    let again = Command::new(env!("CARGO_BIN_EXE_batchops"))
        .args(["migrate", "--database-url", &url])
        .env("RUST_LOG", "info")
        .output()
        .unwrap();
    assert!(again.status.success());
    // A start on a migrated database logs no PostgreSQL notice.
    let logged = String::from_utf8_lossy(&again.stderr);
    assert!(
        !logged.contains("NOTICE") && !logged.contains("schema_migrations"),
        "{logged}"
    );

    let (client, connection) = tokio_postgres::connect(&url, NoTls).await.unwrap();
    let driver = tokio::spawn(connection);
    let versions: Vec<i32> = client
        .query(
            "SELECT version FROM schema_migrations ORDER BY version",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    // Every file of migrations/, once each.
    let mut files: Vec<i32> = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations"))
        .unwrap()
        .filter_map(|entry| {
            let name = entry.unwrap().file_name().to_string_lossy().into_owned();
            name.strip_prefix('V')?.split("__").next()?.parse().ok()
        })
        .collect();
    files.sort();
    assert_eq!(files, (1..=files.len() as i32).collect::<Vec<_>>());
    assert_eq!(versions, files);
    drop(client);
    let _ = driver.await;

    let (admin, connection) = tokio_postgres::connect(admin_url(), NoTls).await.unwrap();
    tokio::spawn(connection);
    admin
        .batch_execute(&format!("DROP DATABASE {name} WITH (FORCE)"))
        .await
        .unwrap();
}

async fn database_exists(name: &str) -> bool {
    let (admin, connection) = tokio_postgres::connect(admin_url(), NoTls).await.unwrap();
    tokio::spawn(connection);
    admin
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .await
        .unwrap()
        .is_some()
}

async fn drop_database(name: &str) {
    let (admin, connection) = tokio_postgres::connect(admin_url(), NoTls).await.unwrap();
    tokio::spawn(connection);
    let _ = admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .await;
}

#[tokio::test]
async fn settings_come_from_flags_then_environment_then_the_config_file() {
    let unique = uuid::Uuid::new_v4().simple().to_string();
    let [from_file, from_env, from_flag] =
        ["file", "env", "flag"].map(|source| format!("batchops_cfg_{source}_{unique}"));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("batchops.toml");
    std::fs::write(
        &file,
        format!(
            "database_url = {:?}\ndatabase_pool_size = 3\nmax_active_jobs = 8\n",
            url_for(&from_file)
        ),
    )
    .unwrap();
    let migrate = |env: Option<&str>, flag: Option<&str>| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_batchops"));
        command
            .args(["migrate", "--config", file.to_str().unwrap()])
            .env_remove("BATCHOPS_DATABASE_URL");
        if let Some(env) = env {
            command.env("BATCHOPS_DATABASE_URL", url_for(env));
        }
        if let Some(flag) = flag {
            command.args(["--database-url", &url_for(flag)]);
        }
        command.output().unwrap()
    };
    // The file alone.
    assert!(migrate(None, None).status.success());
    assert!(database_exists(&from_file).await);
    // The environment wins over the file.
    assert!(migrate(Some(&from_env), None).status.success());
    assert!(database_exists(&from_env).await);
    // The flag wins over both.
    assert!(migrate(Some(&from_env), Some(&from_flag)).status.success());
    assert!(database_exists(&from_flag).await);
    for name in [from_file, from_env, from_flag] {
        drop_database(&name).await;
    }

    // A key that names no setting is refused, naming it.
    std::fs::write(&file, "max_actve_jobs = 8\n").unwrap();
    let output = migrate(None, None);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("unknown setting \"max_actve_jobs\""),
        "{stderr}"
    );
    // As is a file that is not TOML.
    std::fs::write(&file, "max_active_jobs = = 8\n").unwrap();
    let stderr = String::from_utf8_lossy(&migrate(None, None).stderr).into_owned();
    assert!(
        stderr.contains("config file") && stderr.contains("batchops.toml"),
        "{stderr}"
    );
}

#[test]
fn database_names_replace_those_of_urls_and_strings() {
    assert_eq!(
        common::postgres::with_database("postgres://postgres@127.0.0.1:5432/postgres", "t1"),
        "postgres://postgres@127.0.0.1:5432/t1"
    );
    assert_eq!(
        common::postgres::with_database("postgresql://u@h/db?sslmode=disable", "t2"),
        "postgresql://u@h/t2?sslmode=disable"
    );
    assert_eq!(
        common::postgres::with_database(
            "host='/tmp/x/run' port=5432 user=postgres dbname=batchops",
            "t3"
        ),
        "host='/tmp/x/run' port=5432 user=postgres dbname=batchops dbname=t3"
    );
}

#[tokio::test]
async fn a_database_migrated_by_a_newer_batchops_is_refused_by_an_older_one() {
    // Given a database that a later version migrated further,
    let db = TestDb::new().await;
    db.client()
        .await
        .execute(
            "INSERT INTO schema_migrations (version, name) VALUES (999, 'from_the_future')",
            &[],
        )
        .await
        .unwrap();
    // when this version starts on it, it refuses, naming the migration.
    let store = batchops::store::Store::connect(&db.url, 2).await.unwrap();
    let error = store.migrate().await.unwrap_err().to_string();
    assert!(error.contains("migration 999"), "{error}");
    assert!(error.contains("newer version"), "{error}");
}
