//! The operations that change what S3 keeps about an object besides its
//! bytes (tags, Object Lock, ACLs, restores), from the contract into domain
//! values.

use chrono::{DateTime, Utc};

use super::{Result, text};
use crate::api::ApiError;
use crate::domain::{
    AclGrant, AclPermission, AclSpec, CannedAcl, GlacierJobTier, Grantee, LegalHold, ObjectTag,
    Operation, RestoreSpec, RetentionMode, RetentionSpec,
};
use crate::proto as pb;

/// Tags S3 keeps on one object.
pub(super) const MAX_OBJECT_TAGS: usize = 10;
/// Grants of one access control policy.
pub(super) const MAX_GRANTS: usize = 100;
/// The longest a restored copy may be kept, in days (100 years).
pub(super) const MAX_RESTORE_DAYS: u32 = 36_500;

/// S3PutObjectTagging: at most 10 tags, keys 1–128 characters and
/// distinct, values at most 256.
pub(super) fn put_object_tagging(value: &pb::PutObjectTaggingOperation) -> Result<Operation> {
    const FIELD: &str = "operation.put_object_tagging.tags";
    if value.tags.len() > MAX_OBJECT_TAGS {
        return Err(ApiError::invalid(
            FIELD,
            format!("at most {MAX_OBJECT_TAGS} tags, got {}", value.tags.len()),
        ));
    }
    let mut tags: Vec<ObjectTag> = Vec::with_capacity(value.tags.len());
    for (i, tag) in value.tags.iter().enumerate() {
        let field = format!("{FIELD}[{i}]");
        if tag.key.is_empty() {
            return Err(ApiError::invalid(format!("{field}.key"), "is required"));
        }
        text(&format!("{field}.key"), &tag.key, 128)?;
        text(&format!("{field}.value"), &tag.value, 256)?;
        if tags.iter().any(|seen| seen.key == tag.key) {
            return Err(ApiError::invalid(
                format!("{field}.key"),
                "repeats an earlier tag's key",
            ));
        }
        tags.push(ObjectTag {
            key: tag.key.clone(),
            value: tag.value.clone(),
        });
    }
    Ok(Operation::PutObjectTagging { tags })
}

/// S3PutObjectLegalHold: ON or OFF.
pub(super) fn put_object_legal_hold(value: &pb::PutObjectLegalHoldOperation) -> Result<Operation> {
    let status = match pb::LegalHoldStatus::try_from(value.status) {
        Ok(pb::LegalHoldStatus::On) => LegalHold::On,
        Ok(pb::LegalHoldStatus::Off) => LegalHold::Off,
        Ok(pb::LegalHoldStatus::Unspecified) | Err(_) => {
            return Err(ApiError::invalid(
                "operation.put_object_legal_hold.status",
                format!(
                    "must be LEGAL_HOLD_STATUS_ON or LEGAL_HOLD_STATUS_OFF, got {}",
                    value.status
                ),
            ));
        }
    };
    Ok(Operation::PutObjectLegalHold { status })
}

/// S3PutObjectRetention: a mode and a date after `now`, in whole seconds.
pub(super) fn put_object_retention(
    value: &pb::PutObjectRetentionOperation,
    now: DateTime<Utc>,
) -> Result<Operation> {
    const FIELD: &str = "operation.put_object_retention";
    let mode = match pb::RetentionMode::try_from(value.mode) {
        Ok(pb::RetentionMode::Governance) => RetentionMode::Governance,
        Ok(pb::RetentionMode::Compliance) => RetentionMode::Compliance,
        Ok(pb::RetentionMode::Unspecified) | Err(_) => {
            return Err(ApiError::invalid(
                format!("{FIELD}.mode"),
                format!(
                    "must be RETENTION_MODE_GOVERNANCE or RETENTION_MODE_COMPLIANCE, got {}",
                    value.mode
                ),
            ));
        }
    };
    let field = format!("{FIELD}.retain_until");
    let Some(until) = &value.retain_until else {
        return Err(ApiError::invalid(field, "is required"));
    };
    if until.nanos != 0 {
        return Err(ApiError::invalid(field, "must be whole seconds"));
    }
    let retain_until = DateTime::from_timestamp(until.seconds, 0)
        .filter(|at| at.timestamp() < 253_402_300_800)
        .ok_or_else(|| ApiError::invalid(&field, "is not a date before the year 10000"))?;
    if retain_until <= now {
        return Err(ApiError::invalid(field, "must be in the future"));
    }
    Ok(Operation::PutObjectRetention(RetentionSpec {
        mode,
        retain_until,
        bypass_governance: value.bypass_governance_retention,
    }))
}

/// S3PutObjectAcl: a canned ACL or a policy of at most 100 grants.
pub(super) fn put_object_acl(value: &pb::PutObjectAclOperation) -> Result<Operation> {
    use pb::put_object_acl_operation::Acl;
    const FIELD: &str = "operation.put_object_acl";
    let acl = match &value.acl {
        None => {
            return Err(ApiError::invalid(
                FIELD,
                "one of canned_acl or access_control_policy is required",
            ));
        }
        Some(Acl::CannedAcl(canned)) => AclSpec::Canned(canned_acl(*canned)?),
        Some(Acl::AccessControlPolicy(policy)) => {
            let field = format!("{FIELD}.access_control_policy");
            if policy.owner_id.is_empty() {
                return Err(ApiError::invalid(
                    format!("{field}.owner_id"),
                    "is required",
                ));
            }
            text(&format!("{field}.owner_id"), &policy.owner_id, 1024)?;
            text(
                &format!("{field}.owner_display_name"),
                &policy.owner_display_name,
                1024,
            )?;
            if policy.grants.len() > MAX_GRANTS {
                return Err(ApiError::invalid(
                    format!("{field}.grants"),
                    format!("at most {MAX_GRANTS} grants, got {}", policy.grants.len()),
                ));
            }
            let grants = policy
                .grants
                .iter()
                .enumerate()
                .map(|(i, grant)| acl_grant(&format!("{field}.grants[{i}]"), grant))
                .collect::<Result<Vec<_>>>()?;
            AclSpec::Policy {
                owner_id: policy.owner_id.clone(),
                owner_display_name: non_empty(&policy.owner_display_name),
                grants,
            }
        }
    };
    Ok(Operation::PutObjectAcl(acl))
}

fn canned_acl(value: i32) -> Result<CannedAcl> {
    Ok(match pb::CannedAcl::try_from(value) {
        Ok(pb::CannedAcl::Private) => CannedAcl::Private,
        Ok(pb::CannedAcl::PublicRead) => CannedAcl::PublicRead,
        Ok(pb::CannedAcl::PublicReadWrite) => CannedAcl::PublicReadWrite,
        Ok(pb::CannedAcl::AwsExecRead) => CannedAcl::AwsExecRead,
        Ok(pb::CannedAcl::AuthenticatedRead) => CannedAcl::AuthenticatedRead,
        Ok(pb::CannedAcl::BucketOwnerRead) => CannedAcl::BucketOwnerRead,
        Ok(pb::CannedAcl::BucketOwnerFullControl) => CannedAcl::BucketOwnerFullControl,
        Ok(pb::CannedAcl::Unspecified) | Err(_) => {
            return Err(ApiError::invalid(
                "operation.put_object_acl.canned_acl",
                format!("must be a CANNED_ACL_* value, got {value}"),
            ));
        }
    })
}

fn acl_grant(field: &str, value: &pb::AclGrant) -> Result<AclGrant> {
    use pb::acl_grantee::Grantee as G;
    let missing = || {
        ApiError::invalid(
            format!("{field}.grantee"),
            "one of canonical_user_id, email_address or group_uri is required",
        )
    };
    let grantee = value.grantee.as_ref().ok_or_else(missing)?;
    let (name, id, make): (&str, &String, fn(String) -> Grantee) =
        match grantee.grantee.as_ref().ok_or_else(missing)? {
            G::CanonicalUserId(id) => ("canonical_user_id", id, Grantee::CanonicalUser),
            G::EmailAddress(email) => ("email_address", email, Grantee::Email),
            G::GroupUri(uri) => ("group_uri", uri, Grantee::Group),
        };
    let id_field = format!("{field}.grantee.{name}");
    if id.is_empty() {
        return Err(ApiError::invalid(id_field, "must not be empty"));
    }
    text(&id_field, id, 1024)?;
    text(
        &format!("{field}.grantee.display_name"),
        &grantee.display_name,
        1024,
    )?;
    let permission = match pb::AclPermission::try_from(value.permission) {
        Ok(pb::AclPermission::FullControl) => AclPermission::FullControl,
        Ok(pb::AclPermission::Read) => AclPermission::Read,
        Ok(pb::AclPermission::Write) => AclPermission::Write,
        Ok(pb::AclPermission::ReadAcp) => AclPermission::ReadAcp,
        Ok(pb::AclPermission::WriteAcp) => AclPermission::WriteAcp,
        Ok(pb::AclPermission::Unspecified) | Err(_) => {
            return Err(ApiError::invalid(
                format!("{field}.permission"),
                format!(
                    "must be an ACL_PERMISSION_* value, got {}",
                    value.permission
                ),
            ));
        }
    };
    Ok(AclGrant {
        grantee: make(id.clone()),
        display_name: non_empty(&grantee.display_name),
        permission,
    })
}

/// S3InitiateRestoreObject: days 0 (Intelligent-Tiering archives) or
/// 1–36,500, and a tier (STANDARD when unspecified).
pub(super) fn initiate_restore_object(
    value: &pb::InitiateRestoreObjectOperation,
) -> Result<Operation> {
    const FIELD: &str = "operation.initiate_restore_object";
    if value.expiration_in_days > MAX_RESTORE_DAYS {
        return Err(ApiError::invalid(
            format!("{FIELD}.expiration_in_days"),
            format!(
                "at most {MAX_RESTORE_DAYS}, got {}",
                value.expiration_in_days
            ),
        ));
    }
    let tier = match pb::GlacierJobTier::try_from(value.glacier_job_tier) {
        Ok(pb::GlacierJobTier::Unspecified | pb::GlacierJobTier::Standard) => {
            GlacierJobTier::Standard
        }
        Ok(pb::GlacierJobTier::Bulk) => GlacierJobTier::Bulk,
        Err(_) => {
            return Err(ApiError::invalid(
                format!("{FIELD}.glacier_job_tier"),
                format!("unknown value {}", value.glacier_job_tier),
            ));
        }
    };
    Ok(Operation::InitiateRestoreObject(RestoreSpec {
        expiration_in_days: (value.expiration_in_days > 0).then_some(value.expiration_in_days),
        tier,
    }))
}

fn non_empty(value: &str) -> Option<String> {
    (!value.is_empty()).then(|| value.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(key: &str, value: &str) -> pb::ObjectTag {
        pb::ObjectTag {
            key: key.into(),
            value: value.into(),
        }
    }

    fn field_of(error: ApiError) -> String {
        let status: tonic::Status = error.into();
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        status.message().to_owned()
    }

    #[test]
    fn tag_sets_follow_s3s_limits() {
        let ok = pb::PutObjectTaggingOperation {
            tags: vec![tag(&"k".repeat(128), &"v".repeat(256)), tag("b", "")],
        };
        assert!(put_object_tagging(&ok).is_ok());
        let cases = [
            (vec![tag("", "v")], "tags[0].key"),
            (vec![tag(&"k".repeat(129), "v")], "tags[0].key"),
            (vec![tag("k", &"v".repeat(257))], "tags[0].value"),
            (vec![tag("k", "a"), tag("k", "b")], "tags[1].key"),
            (vec![tag("k\u{0}", "v")], "tags[0].key"),
            ((0..11).map(|i| tag(&i.to_string(), "")).collect(), "tags"),
        ];
        for (tags, field) in cases {
            let message =
                field_of(put_object_tagging(&pb::PutObjectTaggingOperation { tags }).unwrap_err());
            assert!(message.contains(field), "{message}");
        }
    }

    #[test]
    fn retention_needs_a_mode_and_a_future_whole_second() {
        let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let at = |seconds, nanos| Some(prost_types::Timestamp { seconds, nanos });
        let retention = |mode: pb::RetentionMode, retain_until| pb::PutObjectRetentionOperation {
            mode: mode as i32,
            retain_until,
            bypass_governance_retention: false,
        };
        assert!(
            put_object_retention(
                &retention(pb::RetentionMode::Governance, at(1_800_000_001, 0)),
                now
            )
            .is_ok()
        );
        for (value, expected) in [
            (
                retention(pb::RetentionMode::Unspecified, at(1_800_000_001, 0)),
                "mode",
            ),
            (
                retention(pb::RetentionMode::Compliance, None),
                "retain_until: is required",
            ),
            (
                retention(pb::RetentionMode::Compliance, at(1_800_000_000, 0)),
                "in the future",
            ),
            (
                retention(pb::RetentionMode::Compliance, at(1_800_000_001, 5)),
                "whole seconds",
            ),
            (
                retention(pb::RetentionMode::Compliance, at(i64::MAX, 0)),
                "year 10000",
            ),
        ] {
            let message = field_of(put_object_retention(&value, now).unwrap_err());
            assert!(message.contains(expected), "{message}");
        }
    }

    #[test]
    fn acl_policies_are_bounded_and_name_one_grantee_each() {
        use pb::acl_grantee::Grantee as G;
        let grant = |grantee: Option<G>, permission: pb::AclPermission| pb::AclGrant {
            grantee: Some(pb::AclGrantee {
                grantee,
                display_name: String::new(),
            }),
            permission: permission as i32,
        };
        let policy = |grants| pb::PutObjectAclOperation {
            acl: Some(pb::put_object_acl_operation::Acl::AccessControlPolicy(
                pb::AccessControlPolicy {
                    owner_id: "owner".into(),
                    owner_display_name: String::new(),
                    grants,
                },
            )),
        };
        let read = grant(
            Some(G::CanonicalUserId("abc".into())),
            pb::AclPermission::Read,
        );
        assert!(put_object_acl(&policy(vec![read.clone()])).is_ok());
        for (value, expected) in [
            (pb::PutObjectAclOperation { acl: None }, "one of canned_acl"),
            (
                pb::PutObjectAclOperation {
                    acl: Some(pb::put_object_acl_operation::Acl::CannedAcl(0)),
                },
                "CANNED_ACL_",
            ),
            (
                policy(vec![grant(None, pb::AclPermission::Read)]),
                "grants[0].grantee",
            ),
            (
                policy(vec![grant(
                    Some(G::GroupUri(String::new())),
                    pb::AclPermission::Read,
                )]),
                "grants[0].grantee.group_uri",
            ),
            (
                policy(vec![grant(
                    Some(G::EmailAddress("a@b".into())),
                    pb::AclPermission::Unspecified,
                )]),
                "grants[0].permission",
            ),
            (policy(vec![read; 101]), "at most 100 grants"),
        ] {
            let message = field_of(put_object_acl(&value).unwrap_err());
            assert!(message.contains(expected), "{message}");
        }
    }

    proptest::proptest! {
        /// Whatever the request holds, validation names a field or gives
        /// an operation the contract writes back as it was asked.
        #[test]
        fn object_state_operations_are_refused_by_field_or_written_back_unchanged(
            tags in proptest::collection::vec((".{0,130}", ".{0,260}"), 0..12),
            status in -1i32..4,
            mode in -1i32..4,
            seconds in proptest::prop_oneof![proptest::strategy::Just(1_900_000_000i64), proptest::num::i64::ANY],
            nanos in proptest::prop_oneof![proptest::strategy::Just(0i32), 0i32..1_000_000_000],
            bypass in proptest::bool::ANY,
            canned in -1i32..9,
            grants in proptest::collection::vec((0u8..4, ".{0,20}", -1i32..7), 0..4),
            days in proptest::prop_oneof![0u32..40_000, proptest::num::u32::ANY],
            tier in -1i32..4,
            which in 0u8..6,
        ) {
            use pb::operation::Operation as O;
            use pb::acl_grantee::Grantee as G;
            let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
            let asked = match which {
                0 => O::PutObjectTagging(pb::PutObjectTaggingOperation {
                    tags: tags.iter().map(|(key, value)| tag(key, value)).collect(),
                }),
                1 => O::PutObjectLegalHold(pb::PutObjectLegalHoldOperation { status }),
                2 => O::PutObjectRetention(pb::PutObjectRetentionOperation {
                    mode,
                    retain_until: Some(prost_types::Timestamp { seconds, nanos }),
                    bypass_governance_retention: bypass,
                }),
                3 => O::PutObjectAcl(pb::PutObjectAclOperation {
                    acl: Some(pb::put_object_acl_operation::Acl::CannedAcl(canned)),
                }),
                4 => O::PutObjectAcl(pb::PutObjectAclOperation {
                    acl: Some(pb::put_object_acl_operation::Acl::AccessControlPolicy(
                        pb::AccessControlPolicy {
                            owner_id: "owner".into(),
                            owner_display_name: String::new(),
                            grants: grants
                                .iter()
                                .map(|(kind, id, permission)| pb::AclGrant {
                                    grantee: Some(pb::AclGrantee {
                                        grantee: match kind {
                                            0 => Some(G::CanonicalUserId(id.clone())),
                                            1 => Some(G::EmailAddress(id.clone())),
                                            2 => Some(G::GroupUri(id.clone())),
                                            _ => None,
                                        },
                                        display_name: String::new(),
                                    }),
                                    permission: *permission,
                                })
                                .collect(),
                        },
                    )),
                }),
                _ => O::InitiateRestoreObject(pb::InitiateRestoreObjectOperation {
                    expiration_in_days: days,
                    glacier_job_tier: tier,
                }),
            };
            let validated = match &asked {
                O::PutObjectTagging(op) => put_object_tagging(op),
                O::PutObjectLegalHold(op) => put_object_legal_hold(op),
                O::PutObjectRetention(op) => put_object_retention(op, now),
                O::PutObjectAcl(op) => put_object_acl(op),
                O::InitiateRestoreObject(op) => initiate_restore_object(op),
                _ => unreachable!(),
            };
            match validated {
                Ok(operation) => {
                    let written = crate::contract::operation_to_proto(&operation).operation.unwrap();
                    let expected = match asked {
                        // An unspecified tier is written back as the STANDARD it means.
                        O::InitiateRestoreObject(mut op) if op.glacier_job_tier == 0 => {
                            op.glacier_job_tier = pb::GlacierJobTier::Standard as i32;
                            O::InitiateRestoreObject(op)
                        }
                        other => other,
                    };
                    proptest::prop_assert_eq!(written, expected);
                }
                Err(error) => {
                    let message = field_of(error);
                    proptest::prop_assert!(message.starts_with("operation."), "{}", message);
                }
            }
        }
    }

    #[test]
    fn restores_keep_at_most_a_century_and_default_to_the_standard_tier() {
        let restore = |days, tier: i32| pb::InitiateRestoreObjectOperation {
            expiration_in_days: days,
            glacier_job_tier: tier,
        };
        assert_eq!(
            initiate_restore_object(&restore(7, 0)).unwrap(),
            Operation::InitiateRestoreObject(RestoreSpec {
                expiration_in_days: Some(7),
                tier: GlacierJobTier::Standard
            })
        );
        assert_eq!(
            initiate_restore_object(&restore(0, pb::GlacierJobTier::Bulk as i32)).unwrap(),
            Operation::InitiateRestoreObject(RestoreSpec {
                expiration_in_days: None,
                tier: GlacierJobTier::Bulk
            })
        );
        assert!(
            field_of(initiate_restore_object(&restore(36_501, 0)).unwrap_err())
                .contains("expiration_in_days")
        );
        assert!(
            field_of(initiate_restore_object(&restore(1, 9)).unwrap_err())
                .contains("glacier_job_tier")
        );
    }
}
