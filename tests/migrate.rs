//! `batchops migrate` creates and migrates a database, and several processes
//! starting together agree (the migration lock).

use std::process::Command;

use tokio_postgres::NoTls;

const BASE: &str = "postgres://postgres@127.0.0.1:5432";

#[tokio::test]
async fn concurrent_migrate_commands_create_and_migrate_the_database_once() {
    let name = format!("batchops_migrate_{}", uuid::Uuid::new_v4().simple());
    let url = format!("{BASE}/{name}");
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
        .output()
        .unwrap();
    assert!(again.status.success());

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
    assert_eq!(versions, vec![1]);
    drop(client);
    let _ = driver.await;

    let (admin, connection) = tokio_postgres::connect(&format!("{BASE}/postgres"), NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    admin
        .batch_execute(&format!("DROP DATABASE {name} WITH (FORCE)"))
        .await
        .unwrap();
}

#[test]
fn serve_without_a_database_says_what_is_missing() {
    let output = Command::new(env!("CARGO_BIN_EXE_batchops"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env_remove("DATABASE_URL")
        .env_remove("BATCHOPS_DATABASE_URL")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--database-url"), "{stderr}");
}
