//! Keys shared by every process of one database (see
//! `migrations/V2__server_keys.sql`): the first process to ask for a key
//! makes it, every later one reads the same.

use tokio_postgres::Client;

use super::{StoreError, error::During};

const INSERT_KEY: &str = "
    INSERT INTO server_keys (name, key) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING";
const SELECT_KEY: &str = "SELECT key FROM server_keys WHERE name = $1";

/// The 32-byte key named `name`, made from `fresh` if there is none yet.
pub async fn shared_key(
    client: &Client,
    name: &str,
    fresh: [u8; 32],
) -> Result<[u8; 32], StoreError> {
    client
        .execute(INSERT_KEY, &[&name, &&fresh[..]])
        .await
        .during("INSERT_KEY")?;
    let stored: Vec<u8> = client
        .query_one(SELECT_KEY, &[&name])
        .await
        .during("SELECT_KEY")?
        .try_get(0)?;
    stored
        .get(..32)
        .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
        .ok_or_else(|| StoreError::Corrupt(format!("server key {name} is shorter than 32 bytes")))
}
