//! Property-based fuzzing of everything that parses untrusted input: CSV
//! manifests, S3 Inventory `manifest.json` files, Invoke replies and the
//! proto → domain conversion of CreateJob. None may panic, whatever the
//! input; what they accept must be well-formed.
//!
//! CI runs 256 cases per property (a few seconds); set
//! `BATCHOPS_FUZZ_CASES=100000` for a longer run.

use batchops::api::ApiError;
use batchops::api::validate;
use batchops::domain::ManifestField;
use batchops::domain::{Task, TaskRow};
use batchops::objects::encode_key;
use batchops::objects::invoke::{Allowlist, interpret_reply};
use batchops::objects::manifest::{Inventory, parse_csv};
use batchops::proto as pb;
use proptest::prelude::*;

fn config() -> ProptestConfig {
    let cases = std::env::var("BATCHOPS_FUZZ_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(256);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn field() -> impl Strategy<Value = ManifestField> {
    prop_oneof![
        Just(ManifestField::Ignore),
        Just(ManifestField::Bucket),
        Just(ManifestField::Key),
        Just(ManifestField::VersionId),
    ]
}

/// Text that looks like CSV manifests: commas, quotes, escapes, newlines,
/// percent signs, NUL and non-ASCII mixed with ordinary characters.
fn csvish() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            "[a-z0-9/._-]{1,8}",
            Just(",".to_owned()),
            Just("\"".to_owned()),
            Just("\n".to_owned()),
            Just("\r\n".to_owned()),
            Just("%".to_owned()),
            Just("%00".to_owned()),
            Just("%zz".to_owned()),
            Just("%C3%A9".to_owned()),
            Just("\u{0}".to_owned()),
            Just("é☃".to_owned()),
            Just("..".to_owned()),
        ],
        0..40,
    )
    .prop_map(|parts| parts.concat())
}

fn parse_all(input: &[u8], fields: &[ManifestField]) -> Result<Vec<TaskRow>, String> {
    let mut rows = Vec::new();
    parse_csv(input, fields, 7, |batch| {
        rows.extend(batch);
        true
    })
    .map(|_| rows)
    .map_err(|error| error.to_string())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn csv_manifests_never_panic(
        text in csvish(),
        bytes in proptest::collection::vec(any::<u8>(), 0..256),
        fields in proptest::collection::vec(field(), 0..5),
    ) {
        for input in [text.as_bytes(), bytes.as_slice()] {
            if let Ok(rows) = parse_all(input, &fields) {
                for row in rows {
                    prop_assert!(!row.bucket.is_empty());
                    prop_assert!(!row.key.contains('\0'), "a NUL key was accepted");
                }
            }
        }
    }

    #[test]
    fn any_key_survives_the_manifest_encoding(
        bucket in "[a-z][a-z0-9-]{1,20}[a-z0-9]",
        key in "[^\u{0}]{1,60}",
        version in proptest::option::of("[A-Za-z0-9._]{1,20}"),
    ) {
        let line = match &version {
            Some(version) => format!("{bucket},{},{version}\n", encode_key(&key)),
            None => format!("{bucket},{}\n", encode_key(&key)),
        };
        let rows = parse_all(line.as_bytes(), &[]).map_err(TestCaseError::fail)?;
        prop_assert_eq!(rows, vec![TaskRow { bucket, key, version_id: version }]);
    }

    #[test]
    fn inventory_manifests_never_panic(
        bytes in proptest::collection::vec(any::<u8>(), 0..256),
        bucket in ".{0,20}",
        schema in "[A-Za-z, ]{0,60}",
        keys in proptest::collection::vec(".{0,20}", 0..4),
    ) {
        let _ = Inventory::parse(&bytes);
        let json = serde_json::json!({
            "sourceBucket": "src",
            "destinationBucket": bucket,
            "fileFormat": "CSV",
            "fileSchema": schema,
            "files": keys.iter().map(|k| serde_json::json!({"key": k, "size": 1, "MD5checksum": "x"})).collect::<Vec<_>>(),
        });
        if let Ok(inventory) = Inventory::parse(json.to_string().as_bytes()) {
            prop_assert!(inventory.fields.contains(&ManifestField::Bucket));
            prop_assert!(inventory.fields.contains(&ManifestField::Key));
        }
    }

    #[test]
    fn invoke_replies_never_panic_and_stay_storable(
        raw in ".{0,200}",
        code in prop_oneof![Just("Succeeded".to_owned()), Just("TemporaryFailure".to_owned()), Just("PermanentFailure".to_owned()), ".{0,12}"],
        result_string in ".{0,200}",
        long in 0usize..10_000,
        task_id in ".{0,12}",
        treat in proptest::option::of(".{0,20}"),
        status in 200i32..300,
        schema in prop_oneof![Just(serde_json::json!("1.0")), Just(serde_json::json!("2.0")), Just(serde_json::json!(1)), Just(serde_json::Value::Null)],
    ) {
        let structured = serde_json::json!({
            "invocationSchemaVersion": schema,
            "treatMissingKeysAs": treat,
            "invocationId": "x",
            "results": [{"taskId": task_id, "resultCode": code, "resultString": format!("{result_string}{}\u{0}", "y".repeat(long))}],
        });
        let task = Task {
            number: 0,
            object: TaskRow { bucket: "b".into(), key: "k".into(), version_id: None },
        };
        for body in [raw.clone(), structured.to_string()] {
            let result = interpret_reply(&body, &task_id, status).into_result(&task);
            if let Some(message) = &result.result_message {
                prop_assert!(!message.contains('\0'));
                prop_assert!(message.len() <= 4096 + 16, "message of {} bytes", message.len());
            }
        }
    }

    #[test]
    fn create_job_conversion_never_panics_and_names_the_field(
        account in prop_oneof![Just("111122223333".to_owned()), ".{0,14}"],
        token in ".{0,70}",
        description in ".{0,300}",
        priority in any::<i32>(),
        format in any::<i32>(),
        fields in proptest::collection::vec(any::<i32>(), 0..5),
        bucket in ".{0,70}",
        key in ".{0,40}",
        operation in 0u8..6,
        algorithm in any::<i32>(),
        endpoint in ".{0,30}",
        timeout in any::<u32>(),
        tags in proptest::collection::vec((".{0,10}", ".{0,10}"), 0..60),
        minimum in proptest::option::of(any::<u64>()),
        percent in proptest::option::of(any::<u32>()),
        report in proptest::option::of((any::<bool>(), ".{0,20}", ".{0,20}", any::<i32>())),
    ) {
        use pb::operation::Operation as O;
        let operation = match operation {
            0 => None,
            1 => Some(O::ComputeObjectChecksum(pb::ComputeObjectChecksumOperation { algorithm })),
            2 => Some(O::DeleteObject(pb::DeleteObjectOperation {})),
            3 => Some(O::Invoke(pb::InvokeOperation {
                endpoint_url: endpoint.clone(),
                invocation_schema_version: algorithm,
                user_arguments: Default::default(),
                timeout_seconds: timeout,
                function_arn: String::new(),
            })),
            _ => Some(O::PutObjectCopy(pb::PutObjectCopyOperation {
                target_bucket: bucket.clone(),
                target_key_prefix: key.clone(),
                metadata_directive: algorithm,
                new_object_metadata: None,
            })),
        };
        let request = pb::CreateJobRequest {
            account_id: account,
            client_request_token: token,
            description,
            priority,
            confirmation_required: None,
            manifest: Some(pb::Manifest { format, fields, bucket, key, ..Default::default() }),
            operation: operation.map(|operation| pb::Operation { operation: Some(operation) }),
            report: report.map(|(enabled, bucket, prefix, scope)| pb::JobReport { enabled, bucket, prefix, report_scope: scope }),
            tags: tags.into_iter().map(|(key, value)| pb::Tag { key, value }).collect(),
            failure_threshold: Some(pb::FailureThreshold { minimum_tasks_run: minimum, max_failure_percent: percent }),
            manifest_generator: None,
            role_arn: String::new(),
            dry_run: priority % 2 == 0,
            notification: None,
        };
        let allowlist = Allowlist::parse("http://127.0.0.1:9/").unwrap();
        match validate::create_job(&request, &allowlist, None) {
            Ok((spec, fingerprint)) => {
                prop_assert!(!fingerprint.is_empty());
                prop_assert!(spec.priority >= 0);
            }
            Err(ApiError::InvalidArgument { field, problem }) => {
                prop_assert!(!field.is_empty() && !problem.is_empty());
            }
            Err(other) => prop_assert!(false, "not an invalid argument: {other}"),
        }
    }
}
