//! ListJobs page tokens. A token carries the sort key of the last job shown
//! and a MAC over it and the listing it belongs to (account and status
//! filter), made with a key all processes of the database share. Its
//! contents are not an interface: any token the server did not issue for
//! that listing, forged, tampered with or from another account, is
//! INVALID_ARGUMENT.

use base64::Engine;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::ApiError;

/// The `server_keys` name of the signing key.
pub const KEY_NAME: &str = "page_tokens";

const VERSION: u8 = 1;
const MAC_BYTES: usize = 16;
const BODY_BYTES: usize = 1 + 8 + 16;

/// Where a page ends: the last job's creation time and id.
pub type Cursor = (DateTime<Utc>, uuid::Uuid);

/// Signs and checks page tokens.
#[derive(Clone)]
pub struct PageTokens {
    key: [u8; 32],
}

impl std::fmt::Debug for PageTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PageTokens")
    }
}

impl PageTokens {
    /// Tokens signed with `key` (the database's shared page-token key).
    pub fn new(key: [u8; 32]) -> PageTokens {
        PageTokens { key }
    }

    /// The token for the page after `cursor` of the listing `scope`.
    pub fn seal(&self, scope: &[u8], cursor: Cursor) -> String {
        let mut token = Vec::with_capacity(BODY_BYTES + MAC_BYTES);
        token.push(VERSION);
        token.extend_from_slice(&cursor.0.timestamp_micros().to_be_bytes());
        token.extend_from_slice(cursor.1.as_bytes());
        let mac = self.mac(scope, &token);
        token.extend_from_slice(&mac[..MAC_BYTES]);
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(token)
    }

    /// The cursor of a token this server issued for `scope`; `None` for the
    /// empty token (the first page).
    pub fn open(&self, scope: &[u8], token: &str) -> Result<Option<Cursor>, ApiError> {
        if token.is_empty() {
            return Ok(None);
        }
        let invalid = || ApiError::invalid("page_token", "is not a token this listing returned");
        if token.len() > 128 {
            return Err(invalid());
        }
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(token)
            .map_err(|_| invalid())?;
        if bytes.len() != BODY_BYTES + MAC_BYTES || bytes[0] != VERSION {
            return Err(invalid());
        }
        let (body, tag) = bytes.split_at(BODY_BYTES);
        let mut mac = self.hasher(scope);
        mac.update(body);
        mac.verify_truncated_left(tag).map_err(|_| invalid())?;
        let micros = i64::from_be_bytes(body[1..9].try_into().map_err(|_| invalid())?);
        let time = DateTime::from_timestamp_micros(micros).ok_or_else(invalid)?;
        let id = uuid::Uuid::from_slice(&body[9..]).map_err(|_| invalid())?;
        Ok(Some((time, id)))
    }

    fn hasher(&self, scope: &[u8]) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(b"batchops page token\0");
        mac.update(&(scope.len() as u64).to_be_bytes());
        mac.update(scope);
        mac
    }

    fn mac(&self, scope: &[u8], body: &[u8]) -> [u8; 32] {
        let mut mac = self.hasher(scope);
        mac.update(body);
        mac.finalize().into_bytes().into()
    }
}

/// The scope of a ListJobs listing: its account and status filter.
pub fn list_jobs_scope(account: &str, statuses: &[&str]) -> Vec<u8> {
    let mut scope = account.as_bytes().to_vec();
    for status in statuses {
        scope.push(0);
        scope.extend_from_slice(status.as_bytes());
    }
    scope
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cursor() -> Cursor {
        (
            DateTime::from_timestamp_micros(1_764_000_000_123_456).unwrap(),
            uuid::Uuid::from_u128(42),
        )
    }

    #[test]
    fn a_token_opens_for_its_own_listing_only() {
        let tokens = PageTokens::new([7; 32]);
        let token = tokens.seal(b"a", cursor());
        assert_eq!(tokens.open(b"a", &token).unwrap(), Some(cursor()));
        assert!(tokens.open(b"b", &token).is_err(), "another listing");
        assert!(
            PageTokens::new([8; 32]).open(b"a", &token).is_err(),
            "another key"
        );
        assert_eq!(tokens.open(b"a", "").unwrap(), None);
    }

    #[test]
    fn forged_and_tampered_tokens_are_invalid_arguments() {
        let tokens = PageTokens::new([7; 32]);
        let token = tokens.seal(b"a", cursor());
        let mut bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(&token)
            .unwrap();
        bytes[3] ^= 1;
        let tampered = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        // The old format: a timestamp far outside any real one.
        let forged = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(format!("-8200000000000000000|{}", uuid::Uuid::nil()));
        for bad in [
            tampered.as_str(),
            forged.as_str(),
            "%%%",
            &"A".repeat(10_000),
        ] {
            let error = tokens.open(b"a", bad).unwrap_err();
            assert!(
                matches!(error, ApiError::InvalidArgument { ref field, .. } if field == "page_token"),
                "{bad:.40}: {error}"
            );
        }
    }
}
