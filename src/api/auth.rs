//! Who may call `JobService`, for which accounts, and how many streams each
//! caller may hold open.
//!
//! With `--auth-tokens FILE`, every call needs `authorization: Bearer
//! <token>`: a missing or unknown token is UNAUTHENTICATED, and a call for an
//! account the token does not grant is PERMISSION_DENIED before anything is
//! looked up, so it never reveals whether a job exists. The file is TOML:
//!
//! ```toml
//! [[tokens]]
//! name = "dashboard"                       # shown in logs, never the token
//! sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
//! accounts = ["111122223333"]              # or ["*"] for every account
//!
//! [[tokens]]
//! name = "ci"
//! token = "plain-text-token"               # instead of sha256
//! accounts = ["*"]
//! buckets = ["ci-data", "ci-reports-*"]    # optional: jobs may use only these
//! ```
//!
//! An entry may carry an AWS access key instead of (or besides) a token,
//! for the S3 Control API: `access_key_id = "AKIA…"` and
//! `secret_access_key = "…"`. Requests there must then carry a valid
//! Signature Version 4 from a known key, and the key's accounts and buckets
//! apply exactly as a token's do.
//!
//! With `buckets`, a job created with the token may read its manifest from,
//! write its report to, copy into and run tasks on those buckets only (a
//! name, or a prefix ending in `*`): CreateJob refuses anything else with
//! PERMISSION_DENIED naming the bucket, the job records the grant in its
//! created event, and a task whose object lies in another bucket fails with
//! `AccessDenied` without touching it.
//!
//! Tokens are compared by their SHA-256 digests, so the file may hold
//! digests only. Health checks and reflection stay open. Without the file,
//! every caller may act for every account (for one machine or a trusted
//! network).

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};

use serde::Deserialize;
use sha2::{Digest, Sha256};
use tonic::{Request, Status};

use crate::domain::text::quoted;
use crate::domain::{AccountId, BucketGrant};

/// What a token lets its caller do.
#[derive(Debug, Clone)]
pub struct Grant {
    /// The token's name, shown in errors and stream limits (never the token).
    pub name: String,
    accounts: Accounts,
    /// The buckets jobs created with the token may use; `None` for any.
    buckets: Option<BucketGrant>,
}

#[derive(Debug, Clone)]
enum Accounts {
    All,
    Only(HashSet<String>),
}

/// Why a tokens file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TokensFileError {
    /// The file is unreadable or invalid; `problem` says where.
    #[error("auth tokens file {path}: {problem}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong, and where.
        problem: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokensFile {
    #[serde(default)]
    tokens: Vec<TokenEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenEntry {
    name: String,
    token: Option<String>,
    sha256: Option<String>,
    accounts: Vec<String>,
    #[serde(default)]
    buckets: Option<Vec<String>>,
    #[serde(default)]
    access_key_id: Option<String>,
    #[serde(default)]
    secret_access_key: Option<String>,
}

/// The callers' rules: the tokens (if any) and the stream limit.
pub struct Access {
    tokens: Option<HashMap<[u8; 32], Grant>>,
    /// AWS access keys (for the S3 Control API): id → secret and grant.
    access_keys: HashMap<String, (String, Grant)>,
    max_streams: usize,
    open_streams: Arc<Mutex<HashMap<String, usize>>>,
}

impl Access {
    /// No tokens: every caller may act for every account.
    pub fn open(max_streams: usize) -> Access {
        Access {
            tokens: None,
            access_keys: HashMap::new(),
            max_streams,
            open_streams: Arc::default(),
        }
    }

    /// The tokens of `path`.
    pub fn from_file(path: &Path, max_streams: usize) -> Result<Access, TokensFileError> {
        let invalid = |problem: String| TokensFileError::Invalid {
            path: path.display().to_string(),
            problem,
        };
        let text = std::fs::read_to_string(path).map_err(|e| invalid(e.to_string()))?;
        let file: TokensFile =
            toml::from_str(&text).map_err(|e| invalid(e.message().to_owned()))?;
        if file.tokens.is_empty() {
            return Err(invalid("no [[tokens]]: every call would be refused".into()));
        }
        let mut tokens = HashMap::new();
        let mut access_keys = HashMap::new();
        for entry in file.tokens {
            let keys = match (&entry.access_key_id, &entry.secret_access_key) {
                (Some(id), Some(secret)) if !id.is_empty() && !secret.is_empty() => {
                    Some((id.clone(), secret.clone()))
                }
                (None, None) => None,
                _ => {
                    return Err(invalid(format!(
                        "token {:?}: give both access_key_id and secret_access_key",
                        entry.name
                    )));
                }
            };
            let digest: Option<[u8; 32]> = match (&entry.token, &entry.sha256) {
                (None, None) if keys.is_some() => None,
                (Some(token), None) if !token.is_empty() => {
                    Some(Sha256::digest(token.as_bytes()).into())
                }
                (None, Some(hex_digest)) => {
                    let bytes = hex::decode(hex_digest.trim())
                        .ok()
                        .filter(|b| b.len() == 32)
                        .ok_or_else(|| {
                            invalid(format!(
                                "token {:?}: sha256 is not 64 hex digits",
                                entry.name
                            ))
                        })?;
                    let mut digest = [0u8; 32];
                    digest.copy_from_slice(&bytes);
                    Some(digest)
                }
                _ => {
                    return Err(invalid(format!(
                        "token {:?}: give exactly one of token and sha256 (or an access key alone)",
                        entry.name
                    )));
                }
            };
            if entry.accounts.is_empty() {
                return Err(invalid(format!("token {:?}: no accounts", entry.name)));
            }
            if let Some(bad) = entry
                .accounts
                .iter()
                .find(|a| *a != "*" && !AccountId::is_valid(a))
            {
                return Err(invalid(format!(
                    "token {:?}: account {bad:?} is not 12 digits (or \"*\")",
                    entry.name
                )));
            }
            let accounts = if entry.accounts.iter().any(|a| a == "*") {
                Accounts::All
            } else {
                Accounts::Only(entry.accounts.into_iter().collect())
            };
            let buckets = entry
                .buckets
                .map(BucketGrant::new)
                .transpose()
                .map_err(|problem| invalid(format!("token {:?}: {problem}", entry.name)))?;
            let grant = Grant {
                name: entry.name.clone(),
                accounts,
                buckets,
            };
            if let Some((id, secret)) = keys
                && access_keys.insert(id, (secret, grant.clone())).is_some()
            {
                return Err(invalid(format!(
                    "token {:?}: its access key is listed twice",
                    entry.name
                )));
            }
            if let Some(digest) = digest
                && tokens.insert(digest, grant).is_some()
            {
                return Err(invalid(format!("token {:?} is listed twice", entry.name)));
            }
        }
        Ok(Access {
            tokens: Some(tokens),
            access_keys,
            max_streams,
            open_streams: Arc::default(),
        })
    }

    /// Whether callers need no credentials (no tokens file).
    pub fn is_open(&self) -> bool {
        self.tokens.is_none()
    }

    /// The secret of an AWS access key, for verifying a signature.
    pub fn secret_of(&self, access_key_id: &str) -> Option<String> {
        self.access_keys
            .get(access_key_id)
            .map(|(secret, _)| secret.clone())
    }

    /// What an AWS access key grants; put into a request's extensions, it
    /// is checked by [`Access::authorize`] as a bearer token's grant is.
    pub fn grant_of_key(&self, access_key_id: &str) -> Option<Grant> {
        self.access_keys
            .get(access_key_id)
            .map(|(_, grant)| grant.clone())
    }

    /// The interceptor's part: checks the bearer token and keeps its grant
    /// in the request for [`Access::authorize`].
    pub fn authenticate(&self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let Some(tokens) = &self.tokens else {
            return Ok(request);
        };
        let token = request
            .metadata()
            .get("authorization")
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "))
            .ok_or_else(|| {
                Status::unauthenticated("an `authorization: Bearer <token>` header is required")
            })?;
        let digest: [u8; 32] = Sha256::digest(token.trim().as_bytes()).into();
        let grant = tokens
            .get(&digest)
            .ok_or_else(|| Status::unauthenticated("the token is not valid"))?
            .clone();
        request.extensions_mut().insert(grant);
        Ok(request)
    }

    /// Whether the caller may act for `account_id`. Runs before anything is
    /// looked up.
    pub fn authorize<T>(&self, request: &Request<T>, account_id: &str) -> Result<(), Status> {
        if self.tokens.is_none() {
            return Ok(());
        }
        let Some(grant) = request.extensions().get::<Grant>() else {
            return Err(Status::unauthenticated("the call was not authenticated"));
        };
        match &grant.accounts {
            Accounts::All => Ok(()),
            Accounts::Only(accounts) if accounts.contains(account_id) => Ok(()),
            Accounts::Only(_) => Err(Status::permission_denied(format!(
                "token {:?} does not grant account {}",
                grant.name,
                quoted(account_id)
            ))),
        }
    }

    /// The buckets the caller's token limits new jobs to, if it does.
    pub fn bucket_grant<T>(&self, request: &Request<T>) -> Option<BucketGrant> {
        request
            .extensions()
            .get::<Grant>()
            .and_then(|grant| grant.buckets.clone())
    }

    /// Takes one of the caller's stream slots (callers are told apart by
    /// token, else by IP address) until the permit drops.
    pub fn open_stream<T>(&self, request: &Request<T>) -> Result<StreamPermit, Status> {
        let caller = match request.extensions().get::<Grant>() {
            Some(grant) => format!("token {}", grant.name),
            None => request
                .remote_addr()
                .map(|address| address.ip().to_string())
                .unwrap_or_else(|| "unknown".to_owned()),
        };
        let mut open = self.open_streams.lock().unwrap_or_else(|e| e.into_inner());
        let count = open.entry(caller.clone()).or_default();
        if *count >= self.max_streams {
            return Err(Status::resource_exhausted(format!(
                "{caller} has {count} streams open, the most allowed (--max-streams-per-caller)"
            )));
        }
        *count += 1;
        Ok(StreamPermit {
            caller,
            open: self.open_streams.clone(),
        })
    }
}

/// One open stream of a caller; frees its slot when dropped.
pub struct StreamPermit {
    caller: String,
    open: Arc<Mutex<HashMap<String, usize>>>,
}

impl Drop for StreamPermit {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = open.get_mut(&self.caller) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&self.caller);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access(toml: &str) -> Result<Access, TokensFileError> {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), toml).unwrap();
        Access::from_file(file.path(), 2)
    }

    fn call(token: Option<&str>) -> Request<()> {
        let mut request = Request::new(());
        if let Some(token) = token {
            request
                .metadata_mut()
                .insert("authorization", format!("Bearer {token}").parse().unwrap());
        }
        request
    }

    const FILE: &str = r#"
        [[tokens]]
        name = "one"
        token = "secret-one"
        accounts = ["111122223333"]

        [[tokens]]
        name = "all"
        sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
        accounts = ["*"]
    "#;

    #[test]
    fn tokens_grant_their_accounts_only() {
        let access = access(FILE).unwrap();
        let one = access.authenticate(call(Some("secret-one"))).unwrap();
        assert!(access.authorize(&one, "111122223333").is_ok());
        let denied = access.authorize(&one, "444455556666").unwrap_err();
        assert_eq!(denied.code(), tonic::Code::PermissionDenied);
        // sha256("test") is the digest in the file.
        let all = access.authenticate(call(Some("test"))).unwrap();
        assert!(access.authorize(&all, "444455556666").is_ok());
    }

    #[test]
    fn missing_or_unknown_tokens_are_unauthenticated() {
        let access = access(FILE).unwrap();
        for token in [None, Some("wrong"), Some("")] {
            let error = access.authenticate(call(token)).unwrap_err();
            assert_eq!(error.code(), tonic::Code::Unauthenticated);
        }
        let unauthenticated = access.authorize(&call(None), "111122223333").unwrap_err();
        assert_eq!(unauthenticated.code(), tonic::Code::Unauthenticated);
    }

    #[test]
    fn bad_files_are_refused_naming_the_problem() {
        let both = "[[tokens]]\nname = \"x\"\ntoken = \"a\"\nsha256 = \"b\"\naccounts = [\"*\"]\n";
        assert!(
            access(both)
                .err()
                .unwrap()
                .to_string()
                .contains("exactly one")
        );
        let short = "[[tokens]]\nname = \"x\"\nsha256 = \"abc\"\naccounts = [\"*\"]\n";
        assert!(access(short).err().unwrap().to_string().contains("64 hex"));
        let typo = "[[tokens]]\nname = \"x\"\ntoken = \"a\"\naccount = [\"*\"]\n";
        assert!(access(typo).err().unwrap().to_string().contains("account"));
        assert!(
            access("")
                .err()
                .unwrap()
                .to_string()
                .contains("no [[tokens]]")
        );
    }

    #[test]
    fn each_caller_has_its_own_stream_limit() {
        let access = access(FILE).unwrap();
        let one = access.authenticate(call(Some("secret-one"))).unwrap();
        let all = access.authenticate(call(Some("test"))).unwrap();
        let first = access.open_stream(&one).unwrap();
        let _second = access.open_stream(&one).unwrap();
        let refused = access.open_stream(&one).err().unwrap();
        assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
        assert!(
            access.open_stream(&all).is_ok(),
            "another caller is not limited"
        );
        drop(first);
        assert!(
            access.open_stream(&one).is_ok(),
            "a closed stream frees its slot"
        );
    }
}
