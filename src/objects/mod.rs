//! Object storage: the store a job's objects live in, the manifest readers
//! and the operations run on each object.
//!
//! Objects are addressed as `<bucket>/<key>` inside one `object_store` store.
//! With the local backend (`file:///dir`) a bucket is a first-level directory.

pub mod directory;
pub mod invoke;
pub mod manifest;
pub mod object_state;
pub mod operations;
pub mod outcome;
pub mod report;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use object_store::{ObjectStore, aws::AmazonS3Builder, path::Path};

use directory::DirectoryStore;
pub use outcome::{LocalOperation, TaskOperation, TaskOutcome};

/// Why an object store URL was refused.
#[derive(Debug, thiserror::Error)]
pub enum StoreUrlError {
    /// A plain path that cannot be made absolute.
    #[error("object store path {0:?} cannot be used")]
    Path(String),
    /// Not a URL.
    #[error("object store url {0:?} is not a url")]
    NotAUrl(String),
    /// Neither `file` nor `s3`.
    #[error("object store scheme {0:?} is not supported (use file:///path or s3://)")]
    UnsupportedScheme(String),
    /// The directory cannot be made or opened.
    #[error("object store directory {path}: {source}")]
    Directory {
        /// The directory.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// `--object-store` as a URL: a plain path becomes `file://` of its absolute
/// form; URLs pass through.
pub fn store_url(value: &str) -> Result<String, StoreUrlError> {
    if value.contains("://") {
        return Ok(value.to_owned());
    }
    let absolute = std::path::absolute(std::path::Path::new(value))
        .map_err(|_| StoreUrlError::Path(value.to_owned()))?;
    url::Url::from_directory_path(&absolute)
        .map(String::from)
        .map_err(|_| StoreUrlError::Path(value.to_owned()))
}

/// An object resolved to the store that holds it and its path there.
pub struct ObjectRef {
    /// The store that holds the object.
    pub store: Arc<dyn ObjectStore>,
    /// The object's path in it.
    pub path: Path,
}

/// Where buckets live. With a directory, a bucket is a first-level directory
/// of one store; with S3 (or an S3-compatible server) each bucket gets its own
/// client, configured from the usual `AWS_*` environment variables
/// (`AWS_ENDPOINT`, `AWS_REGION`, `AWS_ACCESS_KEY_ID`, `AWS_ALLOW_HTTP`, …).
#[derive(Clone)]
pub struct Buckets {
    backend: Backend,
}

#[derive(Clone)]
enum Backend {
    /// One store for every bucket, as an `ObjectStore` and as itself (for
    /// operations that run as plain file work).
    Directory(Arc<dyn ObjectStore>, DirectoryStore),
    S3(Arc<Mutex<HashMap<String, Arc<dyn ObjectStore>>>>),
}

impl Buckets {
    /// Opens `file:///dir` (created if missing) or `s3://`.
    pub fn open(url: &str) -> Result<Buckets, StoreUrlError> {
        let parsed = url::Url::parse(url).map_err(|_| StoreUrlError::NotAUrl(url.to_owned()))?;
        let backend = match parsed.scheme() {
            "file" => {
                let path = parsed
                    .to_file_path()
                    .map_err(|_| StoreUrlError::NotAUrl(url.to_owned()))?;
                let store =
                    DirectoryStore::open(&path).map_err(|source| StoreUrlError::Directory {
                        path: path.display().to_string(),
                        source,
                    })?;
                Backend::Directory(Arc::new(store.clone()), store)
            }
            "s3" => Backend::S3(Arc::default()),
            other => return Err(StoreUrlError::UnsupportedScheme(other.to_owned())),
        };
        Ok(Buckets { backend })
    }

    /// The directory store every bucket is in, when buckets are directories.
    pub fn directory(&self) -> Option<&DirectoryStore> {
        match &self.backend {
            Backend::Directory(_, files) => Some(files),
            Backend::S3(_) => None,
        }
    }

    /// The store and path of `key` in `bucket`; keys that could leave their
    /// bucket are refused (see [`object_path`]).
    pub fn locate(&self, bucket: &str, key: &str) -> Result<ObjectRef, InvalidKey> {
        let path = object_path(bucket, key)?;
        match &self.backend {
            Backend::Directory(store, _) => Ok(ObjectRef {
                store: store.clone(),
                path,
            }),
            Backend::S3(clients) => {
                let store = s3_client(clients, bucket)?;
                let path = Path::parse(key).map_err(|_| InvalidKey::Key(key.to_owned()))?;
                Ok(ObjectRef { store, path })
            }
        }
    }
}

/// Where to list the keys of `bucket` that start with `key_prefix`: the
/// store, the path of the deepest directory the prefix names, and how many
/// leading bytes of a listed location are not part of the key.
pub struct Listing {
    /// The store that holds the bucket.
    pub store: Arc<dyn ObjectStore>,
    /// The directory to list, if any.
    pub directory: Option<Path>,
    /// Bytes of a listed location before the key.
    pub strip: usize,
}

impl Buckets {
    /// The listing of `bucket` under `key_prefix`. Store listings go by whole
    /// path segments, so the caller filters keys by the prefix itself.
    pub fn listing(&self, bucket: &str, key_prefix: &str) -> Result<Listing, InvalidKey> {
        if !is_valid_bucket(bucket) {
            return Err(InvalidKey::Bucket(bucket.to_owned()));
        }
        let directory = key_prefix
            .rsplit_once('/')
            .map(|(dir, _)| dir)
            .unwrap_or("");
        let bad_segment = |s: &str| s.is_empty() || s == "." || s == "..";
        if !directory.is_empty() && directory.split('/').any(bad_segment) {
            return Err(InvalidKey::Key(key_prefix.to_owned()));
        }
        let parse =
            |text: String| Path::parse(text).map_err(|_| InvalidKey::Key(key_prefix.to_owned()));
        match &self.backend {
            Backend::Directory(store, _) => Ok(Listing {
                store: store.clone(),
                directory: Some(if directory.is_empty() {
                    parse(bucket.to_owned())?
                } else {
                    parse(format!("{bucket}/{directory}"))?
                }),
                strip: bucket.len() + 1,
            }),
            Backend::S3(clients) => Ok(Listing {
                store: s3_client(clients, bucket)?,
                directory: if directory.is_empty() {
                    None
                } else {
                    Some(parse(directory.to_owned())?)
                },
                strip: 0,
            }),
        }
    }
}

fn s3_client(
    clients: &Mutex<HashMap<String, Arc<dyn ObjectStore>>>,
    bucket: &str,
) -> Result<Arc<dyn ObjectStore>, InvalidKey> {
    let mut clients = clients
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(client) = clients.get(bucket) {
        return Ok(client.clone());
    }
    let client: Arc<dyn ObjectStore> = Arc::new(
        AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .build()
            .map_err(|_| InvalidKey::Bucket(bucket.to_owned()))?,
    );
    clients.insert(bucket.to_owned(), client.clone());
    Ok(client)
}

/// Percent-encodes a key as S3 does in events and reports: everything but
/// unreserved characters and `/`.
pub fn encode_key(key: &str) -> String {
    const KEEP: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~')
        .remove(b'/');
    percent_encoding::utf8_percent_encode(key, KEEP).to_string()
}

/// Why a bucket or key cannot name an object.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidKey {
    /// Not an S3 bucket name.
    #[error("bucket name {0:?} is not valid")]
    Bucket(String),
    /// Empty, too long, absolute, or leaving its bucket.
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
