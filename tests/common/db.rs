//! A database of its own for each test, cloned from a template migrated once
//! per migration set, on the tests' PostgreSQL (see [`super::postgres`]).

use std::time::Duration;

use tokio_postgres::NoTls;

use super::postgres::{admin_url, url_for};

async fn admin() -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(admin_url(), NoTls)
        .await
        .expect("cannot connect to the tests' PostgreSQL");
    tokio::spawn(connection);
    client
}

/// The template's name changes whenever a migration does.
fn template_name() -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for entry in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect::<std::collections::BTreeSet<_>>()
    {
        for byte in std::fs::read(entry).unwrap() {
            hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("batchops_template_{hash:016x}")
}

/// A database of its own for one test, dropped at the end.
pub struct TestDb {
    pub name: String,
    pub url: String,
}

impl TestDb {
    pub async fn new() -> TestDb {
        let admin = admin().await;
        let template = template_name();
        // Serialise template creation across test processes.
        admin
            .execute("SELECT pg_advisory_lock(7421)", &[])
            .await
            .unwrap();
        let exists = admin
            .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&template])
            .await
            .unwrap()
            .is_some();
        if !exists {
            let building = format!("{template}_building");
            admin
                .batch_execute(&format!("DROP DATABASE IF EXISTS {building}"))
                .await
                .unwrap();
            admin
                .batch_execute(&format!("CREATE DATABASE {building}"))
                .await
                .unwrap();
            {
                let (mut client, connection) = tokio_postgres::connect(&url_for(&building), NoTls)
                    .await
                    .unwrap();
                let driver = tokio::spawn(connection);
                batchops::store::migrate(&mut client).await.unwrap();
                drop(client);
                let _ = driver.await;
            }
            admin
                .batch_execute(&format!("ALTER DATABASE {building} RENAME TO {template}"))
                .await
                .unwrap();
        }
        admin
            .execute("SELECT pg_advisory_unlock(7421)", &[])
            .await
            .unwrap();
        let name = format!("batchops_test_{}", uuid::Uuid::new_v4().simple());
        let mut attempt = 0;
        loop {
            match admin
                .batch_execute(&format!("CREATE DATABASE {name} TEMPLATE {template}"))
                .await
            {
                Ok(()) => break,
                // Another test is cloning the same template at this instant.
                Err(_) if attempt < 50 => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(error) => panic!("cannot clone template: {error}"),
            }
        }
        let url = url_for(&name);
        TestDb { name, url }
    }

    pub async fn client(&self) -> tokio_postgres::Client {
        let (client, connection) = tokio_postgres::connect(&self.url, NoTls).await.unwrap();
        tokio::spawn(connection);
        client
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                if let Ok((client, connection)) = tokio_postgres::connect(admin_url(), NoTls).await
                {
                    tokio::spawn(connection);
                    let _ = client
                        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .await;
                }
            });
        })
        .join();
    }
}
