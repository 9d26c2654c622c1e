//! Object storage: the store a job's objects live in, the manifest readers
//! and the operations run on each object.
//!
//! Objects are addressed as `<bucket>/<key>` inside one `object_store` store.
//! With the local backend (`file:///dir`) a bucket is a first-level directory.

pub mod invoke;
pub mod manifest;
pub mod operations;

use std::sync::Arc;

use object_store::{ObjectStore, local::LocalFileSystem, path::Path};

/// Why an object store URL was refused.
#[derive(Debug, thiserror::Error)]
pub enum StoreUrlError {
    #[error("object store url {0:?} is not a url")]
    NotAUrl(String),
    #[error("object store scheme {0:?} is not supported (use file:///path)")]
    UnsupportedScheme(String),
    #[error("object store directory {path}: {source}")]
    Directory {
        path: String,
        #[source]
        source: object_store::Error,
    },
}

/// Opens the store named by `url`. `file:///dir` creates `dir` if missing.
pub fn open_store(url: &str) -> Result<Arc<dyn ObjectStore>, StoreUrlError> {
    let parsed = url::Url::parse(url).map_err(|_| StoreUrlError::NotAUrl(url.to_owned()))?;
    match parsed.scheme() {
        "file" => {
            let path = parsed
                .to_file_path()
                .map_err(|_| StoreUrlError::NotAUrl(url.to_owned()))?;
            let _ = std::fs::create_dir_all(&path);
            let store = LocalFileSystem::new_with_prefix(&path).map_err(|source| {
                StoreUrlError::Directory {
                    path: path.display().to_string(),
                    source,
                }
            })?;
            Ok(Arc::new(store))
        }
        other => Err(StoreUrlError::UnsupportedScheme(other.to_owned())),
    }
}

/// Why a bucket or key cannot name an object.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidKey {
    #[error("bucket name {0:?} is not valid")]
    Bucket(String),
    #[error("key {0:?} is empty, absolute, or leaves its bucket")]
    Key(String),
}

/// The store path of `key` in `bucket`, refusing anything that could name an
/// object outside the bucket: empty, `.` or `..` segments, leading `/`,
/// backslashes and control characters.
pub fn object_path(bucket: &str, key: &str) -> Result<Path, InvalidKey> {
    if !is_valid_bucket(bucket) {
        return Err(InvalidKey::Bucket(bucket.to_owned()));
    }
    let bad_segment = |segment: &str| segment.is_empty() || segment == "." || segment == "..";
    if key.is_empty()
        || key.len() > 1024
        || key.contains('\\')
        || key.chars().any(char::is_control)
        || key.split('/').any(bad_segment)
    {
        return Err(InvalidKey::Key(key.to_owned()));
    }
    Path::parse(format!("{bucket}/{key}")).map_err(|_| InvalidKey::Key(key.to_owned()))
}

/// S3's bucket naming rules, loosely: 3–63 of lowercase letters, digits, `.`,
/// `-`, `_`, starting and ending with a letter or digit.
pub fn is_valid_bucket(bucket: &str) -> bool {
    let bytes = bucket.as_bytes();
    (3..=63).contains(&bytes.len())
        && bytes.iter().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'_')
        })
        && bytes[0].is_ascii_alphanumeric()
        && bytes[bytes.len() - 1].is_ascii_alphanumeric()
        && !bucket.contains("..")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_that_leave_their_bucket_are_refused() {
        for key in [
            "../secret",
            "a/../../b",
            "/etc/passwd",
            "a//b",
            "./a",
            "a/.",
            "",
            "a\\..\\b",
            "a\nb",
        ] {
            assert!(object_path("bucket", key).is_err(), "{key:?}");
        }
    }

    #[test]
    fn ordinary_keys_map_under_their_bucket() {
        let path = object_path("my-bucket", "photos/2024/a b+c.jpg").unwrap();
        assert_eq!(path.as_ref(), "my-bucket/photos/2024/a b+c.jpg");
        assert!(object_path("my-bucket", "dir/").is_err());
    }

    #[test]
    fn bucket_names_follow_s3_rules() {
        assert!(is_valid_bucket("abc"));
        assert!(is_valid_bucket("my.bucket-1"));
        assert!(!is_valid_bucket("ab"));
        assert!(!is_valid_bucket("Upper"));
        assert!(!is_valid_bucket("../x"));
        assert!(!is_valid_bucket("-abc"));
    }
}
