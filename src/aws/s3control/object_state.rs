//! S3 Control's object-state operation members (tags, Object Lock, ACLs,
//! restores): read from CreateJob into the contract, and written back in
//! DescribeJob. The contract's validation bounds the values.

use super::{Result, bad, only, required, text, time_leaf};
use crate::aws::node::Node;
use crate::aws::xml::Writer;
use crate::domain::text::quoted;
use crate::proto as pb;
use pb::operation::Operation as O;

/// The members read here, by S3 Control's names.
pub(super) const MEMBERS: [&str; 6] = [
    "S3PutObjectTagging",
    "S3DeleteObjectTagging",
    "S3PutObjectLegalHold",
    "S3PutObjectRetention",
    "S3PutObjectAcl",
    "S3InitiateRestoreObject",
];

/// The member `name` (one of [`MEMBERS`]) of a CreateJob `Operation`, at
/// `path`; `None` for another member.
pub(super) fn parse(name: &str, inner: Node<'_>, path: &str) -> Option<Result<O>> {
    Some(match name {
        "S3PutObjectTagging" => tagging(inner, path),
        "S3DeleteObjectTagging" => only(inner, path, &[], "")
            .map(|()| O::DeleteObjectTagging(pb::DeleteObjectTaggingOperation {})),
        "S3PutObjectLegalHold" => legal_hold(inner, path),
        "S3PutObjectRetention" => retention(inner, path),
        "S3PutObjectAcl" => acl(inner, path),
        "S3InitiateRestoreObject" => restore(inner, path),
        _ => return None,
    })
}

fn tagging(inner: Node<'_>, path: &str) -> Result<O> {
    only(inner, path, &["TagSet"], "")?;
    let tags = inner
        .get("TagSet")
        .map(|set| {
            set.items()
                .into_iter()
                .map(|tag| {
                    let path = format!("{path}TagSet[].");
                    only(tag, &path, &["Key", "Value"], "")?;
                    Ok(pb::ObjectTag {
                        key: required(tag, &path, "Key")?,
                        value: text(tag, "Value").unwrap_or_default(),
                    })
                })
                .collect::<Result<Vec<_>>>()
        })
        .transpose()?
        .unwrap_or_default();
    Ok(O::PutObjectTagging(pb::PutObjectTaggingOperation { tags }))
}

/// `value` of `field` as the contract enum named `prefix` + value, among
/// `allowed` (S3 Control's names).
fn choice(path: &str, field: &str, value: &str, allowed: &[(&str, i32)]) -> Result<i32> {
    allowed
        .iter()
        .find(|(name, _)| *name == value)
        .map(|(_, number)| *number)
        .ok_or_else(|| {
            let names: Vec<&str> = allowed.iter().map(|(name, _)| *name).collect();
            bad(format!(
                "{path}{field} must be one of {}, got {}",
                names.join(", "),
                quoted(value)
            ))
        })
}

fn legal_hold(inner: Node<'_>, path: &str) -> Result<O> {
    only(inner, path, &["LegalHold"], "")?;
    let hold = inner
        .get("LegalHold")
        .ok_or_else(|| bad(format!("{path}LegalHold is required")))?;
    let path = format!("{path}LegalHold.");
    only(hold, &path, &["Status"], "")?;
    let status = choice(
        &path,
        "Status",
        &required(hold, &path, "Status")?,
        &[
            ("ON", pb::LegalHoldStatus::On as i32),
            ("OFF", pb::LegalHoldStatus::Off as i32),
        ],
    )?;
    Ok(O::PutObjectLegalHold(pb::PutObjectLegalHoldOperation {
        status,
    }))
}

fn retention(inner: Node<'_>, path: &str) -> Result<O> {
    only(inner, path, &["BypassGovernanceRetention", "Retention"], "")?;
    let bypass = super::boolean(inner, path, "BypassGovernanceRetention")?.unwrap_or(false);
    let node = inner
        .get("Retention")
        .ok_or_else(|| bad(format!("{path}Retention is required")))?;
    let path = format!("{path}Retention.");
    only(
        node,
        &path,
        &["RetainUntilDate", "Mode"],
        " (event-based holds are not run)",
    )?;
    let mode = choice(
        &path,
        "Mode",
        &required(node, &path, "Mode")?,
        &[
            ("GOVERNANCE", pb::RetentionMode::Governance as i32),
            ("COMPLIANCE", pb::RetentionMode::Compliance as i32),
        ],
    )?;
    let retain_until = super::time(node, &path, "RetainUntilDate")?
        .ok_or_else(|| bad(format!("{path}RetainUntilDate is required")))?;
    Ok(O::PutObjectRetention(pb::PutObjectRetentionOperation {
        mode,
        retain_until: Some(retain_until),
        bypass_governance_retention: bypass,
    }))
}

const CANNED: [(&str, pb::CannedAcl); 7] = [
    ("private", pb::CannedAcl::Private),
    ("public-read", pb::CannedAcl::PublicRead),
    ("public-read-write", pb::CannedAcl::PublicReadWrite),
    ("aws-exec-read", pb::CannedAcl::AwsExecRead),
    ("authenticated-read", pb::CannedAcl::AuthenticatedRead),
    ("bucket-owner-read", pb::CannedAcl::BucketOwnerRead),
    (
        "bucket-owner-full-control",
        pb::CannedAcl::BucketOwnerFullControl,
    ),
];

const PERMISSIONS: [(&str, pb::AclPermission); 5] = [
    ("FULL_CONTROL", pb::AclPermission::FullControl),
    ("READ", pb::AclPermission::Read),
    ("WRITE", pb::AclPermission::Write),
    ("READ_ACP", pb::AclPermission::ReadAcp),
    ("WRITE_ACP", pb::AclPermission::WriteAcp),
];

fn acl(inner: Node<'_>, path: &str) -> Result<O> {
    use pb::put_object_acl_operation::Acl;
    only(inner, path, &["AccessControlPolicy"], "")?;
    let policy = inner
        .get("AccessControlPolicy")
        .ok_or_else(|| bad(format!("{path}AccessControlPolicy is required")))?;
    let path = format!("{path}AccessControlPolicy.");
    only(
        policy,
        &path,
        &["AccessControlList", "CannedAccessControlList"],
        "",
    )?;
    let canned = text(policy, "CannedAccessControlList");
    let list = policy.get("AccessControlList");
    let acl = match (canned, list) {
        (Some(canned), None) => {
            let allowed: Vec<(&str, i32)> = CANNED.iter().map(|(n, v)| (*n, *v as i32)).collect();
            Acl::CannedAcl(choice(&path, "CannedAccessControlList", &canned, &allowed)?)
        }
        (None, Some(list)) => Acl::AccessControlPolicy(access_control_list(list, &path)?),
        _ => {
            return Err(bad(format!(
                "{path} needs exactly one of AccessControlList and CannedAccessControlList"
            )));
        }
    };
    Ok(O::PutObjectAcl(pb::PutObjectAclOperation {
        acl: Some(acl),
    }))
}

fn access_control_list(list: Node<'_>, path: &str) -> Result<pb::AccessControlPolicy> {
    use pb::acl_grantee::Grantee as G;
    let path = format!("{path}AccessControlList.");
    only(list, &path, &["Owner", "Grants"], "")?;
    let owner = list
        .get("Owner")
        .ok_or_else(|| bad(format!("{path}Owner is required")))?;
    only(owner, &format!("{path}Owner."), &["ID", "DisplayName"], "")?;
    let permissions: Vec<(&str, i32)> = PERMISSIONS.iter().map(|(n, v)| (*n, *v as i32)).collect();
    let grants = list
        .get("Grants")
        .map(|grants| grants.items())
        .unwrap_or_default()
        .into_iter()
        .map(|grant| {
            let path = format!("{path}Grants[].");
            only(grant, &path, &["Grantee", "Permission"], "")?;
            let grantee = grant
                .get("Grantee")
                .ok_or_else(|| bad(format!("{path}Grantee is required")))?;
            let grantee_path = format!("{path}Grantee.");
            only(
                grantee,
                &grantee_path,
                &["TypeIdentifier", "Identifier", "DisplayName"],
                "",
            )?;
            let identifier = required(grantee, &grantee_path, "Identifier")?;
            let kind = required(grantee, &grantee_path, "TypeIdentifier")?;
            let grantee_id = match kind.as_str() {
                "id" => G::CanonicalUserId(identifier),
                "emailAddress" => G::EmailAddress(identifier),
                "uri" => G::GroupUri(identifier),
                other => {
                    return Err(bad(format!(
                        "{grantee_path}TypeIdentifier must be id, emailAddress or uri, got {}",
                        quoted(other)
                    )));
                }
            };
            Ok(pb::AclGrant {
                grantee: Some(pb::AclGrantee {
                    grantee: Some(grantee_id),
                    display_name: text(grantee, "DisplayName").unwrap_or_default(),
                }),
                permission: choice(
                    &path,
                    "Permission",
                    &required(grant, &path, "Permission")?,
                    &permissions,
                )?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(pb::AccessControlPolicy {
        owner_id: required(owner, &format!("{path}Owner."), "ID")?,
        owner_display_name: text(owner, "DisplayName").unwrap_or_default(),
        grants,
    })
}

fn restore(inner: Node<'_>, path: &str) -> Result<O> {
    only(inner, path, &["ExpirationInDays", "GlacierJobTier"], "")?;
    let days: Option<i64> = super::number(inner, path, "ExpirationInDays")?;
    let days = match days {
        None => 0,
        Some(days) => u32::try_from(days).map_err(|_| {
            bad(format!(
                "{path}ExpirationInDays must be 0 or more, got {days}"
            ))
        })?,
    };
    let tier = match text(inner, "GlacierJobTier") {
        None => pb::GlacierJobTier::Unspecified as i32,
        Some(tier) => choice(
            path,
            "GlacierJobTier",
            &tier,
            &[
                ("BULK", pb::GlacierJobTier::Bulk as i32),
                ("STANDARD", pb::GlacierJobTier::Standard as i32),
            ],
        )?,
    };
    Ok(O::InitiateRestoreObject(
        pb::InitiateRestoreObjectOperation {
            expiration_in_days: days,
            glacier_job_tier: tier,
        },
    ))
}

/// Writes `operation` as its S3 Control member inside `Operation`; nothing
/// when it is not one of these.
pub(super) fn write(out: &mut Writer, operation: &O) {
    if matches!(
        operation,
        O::ComputeObjectChecksum(_) | O::DeleteObject(_) | O::Invoke(_) | O::PutObjectCopy(_)
    ) {
        return;
    }
    out.start("Operation");
    match operation {
        O::PutObjectTagging(tagging) => {
            out.start("S3PutObjectTagging").start("TagSet");
            for tag in &tagging.tags {
                out.start("member")
                    .leaf("Key", &tag.key)
                    .leaf("Value", &tag.value)
                    .end("member");
            }
            out.end("TagSet").end("S3PutObjectTagging");
        }
        O::DeleteObjectTagging(_) => {
            out.start("S3DeleteObjectTagging")
                .end("S3DeleteObjectTagging");
        }
        O::PutObjectLegalHold(hold) => {
            let status = if hold.status == pb::LegalHoldStatus::On as i32 {
                "ON"
            } else {
                "OFF"
            };
            out.start("S3PutObjectLegalHold")
                .start("LegalHold")
                .leaf("Status", status)
                .end("LegalHold")
                .end("S3PutObjectLegalHold");
        }
        O::PutObjectRetention(retention) => {
            let mode = if retention.mode == pb::RetentionMode::Compliance as i32 {
                "COMPLIANCE"
            } else {
                "GOVERNANCE"
            };
            out.start("S3PutObjectRetention").leaf(
                "BypassGovernanceRetention",
                &retention.bypass_governance_retention.to_string(),
            );
            out.start("Retention");
            time_leaf(out, "RetainUntilDate", retention.retain_until.as_ref());
            out.leaf("Mode", mode)
                .end("Retention")
                .end("S3PutObjectRetention");
        }
        O::PutObjectAcl(acl) => {
            out.start("S3PutObjectAcl").start("AccessControlPolicy");
            match &acl.acl {
                Some(pb::put_object_acl_operation::Acl::CannedAcl(canned)) => {
                    let name = CANNED
                        .iter()
                        .find(|(_, value)| *value as i32 == *canned)
                        .map_or("private", |(name, _)| name);
                    out.leaf("CannedAccessControlList", name);
                }
                Some(pb::put_object_acl_operation::Acl::AccessControlPolicy(policy)) => {
                    write_access_control_list(out, policy);
                }
                None => {}
            }
            out.end("AccessControlPolicy").end("S3PutObjectAcl");
        }
        O::InitiateRestoreObject(restore) => {
            let tier = if restore.glacier_job_tier == pb::GlacierJobTier::Bulk as i32 {
                "BULK"
            } else {
                "STANDARD"
            };
            out.start("S3InitiateRestoreObject")
                .leaf("ExpirationInDays", &restore.expiration_in_days.to_string())
                .leaf("GlacierJobTier", tier)
                .end("S3InitiateRestoreObject");
        }
        O::ComputeObjectChecksum(_) | O::DeleteObject(_) | O::Invoke(_) | O::PutObjectCopy(_) => {}
    }
    out.end("Operation");
}

fn write_access_control_list(out: &mut Writer, policy: &pb::AccessControlPolicy) {
    use pb::acl_grantee::Grantee as G;
    out.start("AccessControlList")
        .start("Owner")
        .leaf("ID", &policy.owner_id)
        .leaf_if("DisplayName", &policy.owner_display_name)
        .end("Owner")
        .start("Grants");
    for grant in &policy.grants {
        let Some(grantee) = &grant.grantee else {
            continue;
        };
        let (kind, identifier) = match &grantee.grantee {
            Some(G::CanonicalUserId(id)) => ("id", id),
            Some(G::EmailAddress(email)) => ("emailAddress", email),
            Some(G::GroupUri(uri)) => ("uri", uri),
            None => continue,
        };
        let permission = PERMISSIONS
            .iter()
            .find(|(_, value)| *value as i32 == grant.permission)
            .map_or("READ", |(name, _)| name);
        out.start("member")
            .start("Grantee")
            .leaf("TypeIdentifier", kind)
            .leaf("Identifier", identifier)
            .leaf_if("DisplayName", &grantee.display_name)
            .end("Grantee")
            .leaf("Permission", permission)
            .end("member");
    }
    out.end("Grants").end("AccessControlList");
}
