//! Bucket grants: the buckets a job may read from and write to. A token may
//! be limited to some buckets; a job created with it records the grant in
//! its `JobCreated` event, so replays and restarts keep it, and every
//! manifest, report, copy target and task object must fall within it.

use serde::{Deserialize, Serialize};

use super::{JobSpec, ManifestSource, Operation};

/// Bucket names, or name prefixes ending in `*`, that a job may use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketGrant {
    /// Bucket names, or prefixes ending in `*`.
    pub patterns: Vec<String>,
}

impl BucketGrant {
    /// A grant of `patterns`: each a bucket name or a prefix followed by one
    /// trailing `*` (`"logs-*"`); `"*"` alone grants every bucket.
    pub fn new(patterns: Vec<String>) -> Result<BucketGrant, String> {
        if patterns.is_empty() {
            return Err("buckets is empty: the token could use no bucket".into());
        }
        for pattern in &patterns {
            let stem = pattern.strip_suffix('*').unwrap_or(pattern);
            let valid = stem.len() <= 63
                && !stem.contains('*')
                && stem.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'_')
                })
                && (pattern.ends_with('*') || !stem.is_empty());
            if !valid {
                return Err(format!(
                    "bucket pattern {pattern:?} is not a bucket name or a name prefix ending in '*'"
                ));
            }
        }
        Ok(BucketGrant { patterns })
    }

    /// Whether the grant covers `bucket`.
    pub fn permits(&self, bucket: &str) -> bool {
        self.patterns
            .iter()
            .any(|pattern| match pattern.strip_suffix('*') {
                Some(prefix) => bucket.starts_with(prefix),
                None => pattern == bucket,
            })
    }
}

impl JobSpec {
    /// Every bucket the job names at creation: where its manifest is read
    /// (or listed), where its report goes and where copies go.
    pub fn named_buckets(&self) -> Vec<&str> {
        let mut buckets = vec![match &self.manifest {
            ManifestSource::Manifest(manifest) => manifest.location.bucket.as_str(),
            ManifestSource::Generator(generator) => generator.source_bucket.as_str(),
        }];
        if let Some(report) = &self.report {
            buckets.push(&report.bucket);
        }
        if let Operation::PutObjectCopy(copy) = &self.operation {
            buckets.push(&copy.target_bucket);
        }
        buckets
    }

    /// The first bucket the job names that `grant` does not cover.
    pub fn bucket_outside(&self, grant: &BucketGrant) -> Option<&str> {
        self.named_buckets()
            .into_iter()
            .find(|bucket| !grant.permits(bucket))
    }

    /// Whether the job may touch `bucket`: always without a grant.
    pub fn may_use_bucket(&self, bucket: &str) -> bool {
        self.bucket_grant
            .as_ref()
            .is_none_or(|grant| grant.permits(bucket))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_are_names_or_prefixes() {
        let grant = BucketGrant::new(vec!["photos".into(), "logs-*".into()]).unwrap();
        assert!(grant.permits("photos"));
        assert!(grant.permits("logs-2026"));
        assert!(!grant.permits("photos2"));
        assert!(!grant.permits("logs"));
        assert!(BucketGrant::new(vec!["*".into()]).unwrap().permits("any"));
        for bad in ["", "a*b", "Upper", "x**", "../x"] {
            assert!(BucketGrant::new(vec![bad.into()]).is_err(), "{bad}");
        }
        assert!(BucketGrant::new(vec![]).is_err());
    }
}
