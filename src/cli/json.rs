//! Proto3 JSON for the CLI: flags such as `--manifest` and `--operation`
//! take the contract's messages as JSON (field names as in the proto or in
//! lowerCamelCase, enum values by name), and `--output json` prints
//! responses in the canonical proto3 JSON mapping, the same shape `grpcurl`
//! and `buf curl` print, with every field present.

use std::sync::LazyLock;

use prost::{Message, Name};
use prost_reflect::{DescriptorPool, DynamicMessage, Kind, MessageDescriptor, SerializeOptions};

use crate::proto;

static POOL: LazyLock<DescriptorPool> = LazyLock::new(|| {
    DescriptorPool::decode(proto::FILE_DESCRIPTOR_SET)
        .expect("the descriptor set compiled into the binary decodes")
});

/// Parses `text` as the proto3 JSON of `M`; the error names what is wrong.
pub(crate) fn parse<M: Message + Name + Default>(text: &str) -> Result<M, String> {
    let descriptor = POOL
        .get_message_by_name(&M::full_name())
        .ok_or_else(|| format!("{} is not in the contract", M::full_name()))?;
    // Names and enum values are checked first, so that a mistake is told
    // with what would have been accepted.
    if let Ok(value) = serde_json::from_str::<serde_json::Value>(text) {
        check(&descriptor, &value, "")?;
    }
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let message = DynamicMessage::deserialize(descriptor, &mut deserializer)
        .map_err(|error| error.to_string())?;
    deserializer.end().map_err(|error| error.to_string())?;
    message
        .transcode_to::<M>()
        .map_err(|error| error.to_string())
}

/// Checks field names and enum values of `value` against `message`,
/// recursively; `path` names where in the document it is.
fn check(message: &MessageDescriptor, value: &serde_json::Value, path: &str) -> Result<(), String> {
    let serde_json::Value::Object(fields) = value else {
        return Ok(());
    };
    for (name, value) in fields {
        let here = if path.is_empty() {
            name.clone()
        } else {
            format!("{path}.{name}")
        };
        let Some(field) = message
            .get_field_by_name(name)
            .or_else(|| message.get_field_by_json_name(name))
        else {
            let known: Vec<String> = message.fields().map(|f| f.name().to_owned()).collect();
            return Err(format!(
                "unknown field {here:?} (one of {})",
                known.join(", ")
            ));
        };
        let items: Vec<&serde_json::Value> = match value {
            serde_json::Value::Array(items) if field.is_list() => items.iter().collect(),
            other => vec![other],
        };
        for item in items {
            match field.kind() {
                Kind::Enum(kind) => {
                    if let serde_json::Value::String(text) = item
                        && kind.get_value_by_name(text).is_none()
                    {
                        let known: Vec<String> = kind
                            .values()
                            .filter(|v| v.number() != 0)
                            .map(|v| v.name().to_owned())
                            .collect();
                        return Err(format!(
                            "{here}: unknown value {text:?} (one of {})",
                            known.join(", ")
                        ));
                    }
                }
                Kind::Message(inner) if !field.is_map() => check(&inner, item, &here)?,
                _ => {}
            }
        }
    }
    Ok(())
}

/// The proto3 JSON of `message`, with default-valued fields included so that
/// scripts find every field.
pub(crate) fn to_value<M: Message + Name>(message: &M) -> serde_json::Value {
    let Some(descriptor) = POOL.get_message_by_name(&M::full_name()) else {
        return serde_json::Value::Null;
    };
    let Ok(dynamic) = DynamicMessage::decode(descriptor, message.encode_to_vec().as_slice()) else {
        return serde_json::Value::Null;
    };
    let options = SerializeOptions::new().skip_default_fields(false);
    dynamic
        .serialize_with_options(serde_json::value::Serializer, &options)
        .unwrap_or(serde_json::Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto as pb;

    #[test]
    fn mistakes_are_told_with_what_is_accepted() {
        let error =
            parse::<pb::Operation>(r#"{"compute_object_checksum": {"algorithm": "SHA256"}}"#)
                .unwrap_err();
        assert!(
            error.contains("compute_object_checksum.algorithm"),
            "{error}"
        );
        assert!(error.contains("CHECKSUM_ALGORITHM_SHA256"), "{error}");
        assert!(!error.contains("UNSPECIFIED"), "{error}");
        let error = parse::<pb::Operation>(r#"{"checksum": {}}"#).unwrap_err();
        assert!(error.contains("delete_object"), "{error}");
        let error =
            parse::<pb::JobReport>(r#"{"enabled": true, "reportScope": "ALL"}"#).unwrap_err();
        assert!(error.contains("REPORT_SCOPE_FAILED_TASKS_ONLY"), "{error}");
        let error =
            parse::<pb::Manifest>(r#"{"fields": ["MANIFEST_FIELD_BUCKET", "KEY"]}"#).unwrap_err();
        assert!(error.contains("MANIFEST_FIELD_KEY"), "{error}");
    }

    #[test]
    fn operations_parse_with_proto_or_camel_case_names() {
        let snake: pb::Operation =
            parse(r#"{"compute_object_checksum": {"algorithm": "CHECKSUM_ALGORITHM_SHA256"}}"#)
                .unwrap();
        let camel: pb::Operation =
            parse(r#"{"computeObjectChecksum": {"algorithm": "CHECKSUM_ALGORITHM_SHA256"}}"#)
                .unwrap();
        assert_eq!(snake, camel);
        assert!(matches!(
            snake.operation,
            Some(pb::operation::Operation::ComputeObjectChecksum(ref op))
                if op.algorithm == pb::ChecksumAlgorithm::Sha256 as i32
        ));
    }

    #[test]
    fn unknown_fields_and_enum_values_are_refused_by_name() {
        let error = parse::<pb::Manifest>(r#"{"bucket": "b", "kee": "k"}"#).unwrap_err();
        assert!(error.contains("kee"), "{error}");
        let error = parse::<pb::Operation>(r#"{"compute_object_checksum": {"algorithm": "SHA3"}}"#)
            .unwrap_err();
        assert!(error.contains("SHA3"), "{error}");
        assert!(parse::<pb::Manifest>(r#"{"bucket": "b"} trailing"#).is_err());
    }

    #[test]
    fn output_has_every_field_in_camel_case() {
        let value = to_value(&pb::JobProgressSummary {
            total_number_of_tasks: 3,
            ..Default::default()
        });
        assert_eq!(value["totalNumberOfTasks"], "3");
        assert_eq!(value["numberOfTasksFailed"], "0");
    }
}
