//! Looking into the database directly: task results as stored, and table
//! locks that stop the engine at a known point.

use super::db::TestDb;

/// Holds an exclusive lock on a table from a separate connection, so that
/// the engine blocks at a known point, until released.
pub struct TableLock {
    client: tokio_postgres::Client,
}

impl TableLock {
    pub async fn take(db: &TestDb, table: &str) -> TableLock {
        let client = db.client().await;
        client
            .batch_execute(&format!(
                "BEGIN; LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE"
            ))
            .await
            .unwrap();
        TableLock { client }
    }

    pub async fn release(self) {
        self.client.batch_execute("COMMIT").await.unwrap();
    }
}

/// One stored task result: succeeded, HTTP status code, error code, message.
pub type ResultRow = (bool, i32, Option<String>, Option<String>);

/// A job's task results, read from the database in task order.
pub async fn task_results(db: &TestDb, job_id: &str) -> Vec<ResultRow> {
    let client = db.client().await;
    let id = uuid::Uuid::parse_str(job_id).unwrap();
    client
        .query(
            "SELECT succeeded, http_status_code, error_code, result_message FROM task_results
             WHERE job_id = $1 ORDER BY task_number",
            &[&id],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect()
}

/// How many of a job's chunks are leased by a worker right now.
pub async fn leased_chunks(db: &TestDb, job_id: &str) -> i64 {
    let id = uuid::Uuid::parse_str(job_id).unwrap();
    db.client()
        .await
        .query_one(
            "SELECT count(*) FROM task_chunks WHERE job_id = $1 AND lease_owner IS NOT NULL",
            &[&id],
        )
        .await
        .unwrap()
        .get(0)
}
