//! Flags that take the contract's messages: as proto3 JSON, `file://path`
//! to read it from a file, or a shorthand (`bucket/key` manifests,
//! `key=value` tags).

use super::{CliError, json};
use crate::proto as pb;

/// A flag's value, or the file a `file://path` value names (as the AWS CLI
/// reads parameters).
pub(super) fn flag_text(flag: &str, value: &str) -> Result<String, CliError> {
    match value.strip_prefix("file://") {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|error| CliError::Usage(format!("--{flag}: cannot read {path}: {error}"))),
        None => Ok(value.to_owned()),
    }
}

/// A message flag given as proto3 JSON.
pub(super) fn json_flag<M: prost::Message + prost::Name + Default>(
    flag: &str,
    value: &str,
) -> Result<M, CliError> {
    json::parse(&flag_text(flag, value)?)
        .map_err(|problem| CliError::Usage(format!("--{flag}: {problem}")))
}

/// `--manifest`: JSON, file://, or the `bucket/key` of a Bucket,Key CSV.
pub(super) fn manifest_flag(value: &str) -> Result<pb::Manifest, CliError> {
    let text = flag_text("manifest", value)?;
    if text.trim_start().starts_with('{') {
        return json_flag("manifest", &text);
    }
    let Some((bucket, key)) = text.trim().split_once('/') else {
        return Err(CliError::Usage(format!(
            "--manifest: {text:?} is neither JSON nor bucket/key"
        )));
    };
    Ok(pb::Manifest {
        format: pb::ManifestFormat::S3BatchOperationsCsv20180820 as i32,
        fields: vec![
            pb::ManifestField::Bucket as i32,
            pb::ManifestField::Key as i32,
        ],
        bucket: bucket.to_owned(),
        key: key.to_owned(),
        ..pb::Manifest::default()
    })
}

/// `--tags`: `key=value,…` or a JSON list of tags.
pub(super) fn tags_flag(value: &str) -> Result<Vec<pb::Tag>, CliError> {
    let text = flag_text("tags", value)?;
    if text.trim_start().starts_with('[') {
        let response: pb::GetJobTaggingResponse = json::parse(&format!("{{\"tags\": {text}}}"))
            .map_err(|problem| CliError::Usage(format!("--tags: {problem}")))?;
        return Ok(response.tags);
    }
    text.split(',')
        .filter(|pair| !pair.trim().is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((key, value)) => Ok(pb::Tag {
                key: key.trim().to_owned(),
                value: value.trim().to_owned(),
            }),
            None => Err(CliError::Usage(format!(
                "--tags: {pair:?} is not key=value"
            ))),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manifest_flag_may_be_bucket_slash_key() {
        let manifest = manifest_flag("photos/lists/manifest.csv").unwrap();
        assert_eq!(manifest.bucket, "photos");
        assert_eq!(manifest.key, "lists/manifest.csv");
        assert_eq!(
            manifest.format,
            pb::ManifestFormat::S3BatchOperationsCsv20180820 as i32
        );
        assert!(manifest_flag("no-slash").is_err());
        let json = manifest_flag(r#"{"bucket": "b", "key": "k", "etag": "e"}"#).unwrap();
        assert_eq!(json.etag, "e");
    }

    #[test]
    fn tags_may_be_pairs_or_json() {
        let pairs = tags_flag("team=data, env=prod").unwrap();
        let json =
            tags_flag(r#"[{"key":"team","value":"data"},{"key":"env","value":"prod"}]"#).unwrap();
        assert_eq!(pairs, json);
        assert!(tags_flag("").unwrap().is_empty());
        assert!(matches!(tags_flag("novalue"), Err(CliError::Usage(_))));
    }
}
