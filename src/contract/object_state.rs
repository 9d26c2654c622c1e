//! The object-state operations (tags, Object Lock, ACLs, restores) as the
//! contract's messages.

use super::job::timestamp;
use crate::domain::{
    AclPermission, AclSpec, CannedAcl, GlacierJobTier, Grantee, LegalHold, ObjectTag, RestoreSpec,
    RetentionMode, RetentionSpec,
};
use crate::proto as pb;

pub(super) fn legal_hold(status: LegalHold) -> pb::PutObjectLegalHoldOperation {
    pb::PutObjectLegalHoldOperation {
        status: (match status {
            LegalHold::On => pb::LegalHoldStatus::On,
            LegalHold::Off => pb::LegalHoldStatus::Off,
        }) as i32,
    }
}

pub(super) fn tagging(tags: &[ObjectTag]) -> pb::PutObjectTaggingOperation {
    pb::PutObjectTaggingOperation {
        tags: tags
            .iter()
            .map(|tag| pb::ObjectTag {
                key: tag.key.clone(),
                value: tag.value.clone(),
            })
            .collect(),
    }
}

pub(super) fn retention(spec: &RetentionSpec) -> pb::PutObjectRetentionOperation {
    pb::PutObjectRetentionOperation {
        mode: (match spec.mode {
            RetentionMode::Governance => pb::RetentionMode::Governance,
            RetentionMode::Compliance => pb::RetentionMode::Compliance,
        }) as i32,
        retain_until: Some(timestamp(spec.retain_until)),
        bypass_governance_retention: spec.bypass_governance,
    }
}

pub(super) fn acl(spec: &AclSpec) -> pb::PutObjectAclOperation {
    use pb::put_object_acl_operation::Acl;
    let acl = match spec {
        AclSpec::Canned(canned) => Acl::CannedAcl(
            (match canned {
                CannedAcl::Private => pb::CannedAcl::Private,
                CannedAcl::PublicRead => pb::CannedAcl::PublicRead,
                CannedAcl::PublicReadWrite => pb::CannedAcl::PublicReadWrite,
                CannedAcl::AwsExecRead => pb::CannedAcl::AwsExecRead,
                CannedAcl::AuthenticatedRead => pb::CannedAcl::AuthenticatedRead,
                CannedAcl::BucketOwnerRead => pb::CannedAcl::BucketOwnerRead,
                CannedAcl::BucketOwnerFullControl => pb::CannedAcl::BucketOwnerFullControl,
            }) as i32,
        ),
        AclSpec::Policy {
            owner_id,
            owner_display_name,
            grants,
        } => Acl::AccessControlPolicy(pb::AccessControlPolicy {
            owner_id: owner_id.clone(),
            owner_display_name: owner_display_name.clone().unwrap_or_default(),
            grants: grants
                .iter()
                .map(|grant| {
                    use pb::acl_grantee::Grantee as G;
                    pb::AclGrant {
                        grantee: Some(pb::AclGrantee {
                            grantee: Some(match &grant.grantee {
                                Grantee::CanonicalUser(id) => G::CanonicalUserId(id.clone()),
                                Grantee::Email(email) => G::EmailAddress(email.clone()),
                                Grantee::Group(uri) => G::GroupUri(uri.clone()),
                            }),
                            display_name: grant.display_name.clone().unwrap_or_default(),
                        }),
                        permission: (match grant.permission {
                            AclPermission::FullControl => pb::AclPermission::FullControl,
                            AclPermission::Read => pb::AclPermission::Read,
                            AclPermission::Write => pb::AclPermission::Write,
                            AclPermission::ReadAcp => pb::AclPermission::ReadAcp,
                            AclPermission::WriteAcp => pb::AclPermission::WriteAcp,
                        }) as i32,
                    }
                })
                .collect(),
        }),
    };
    pb::PutObjectAclOperation { acl: Some(acl) }
}

pub(super) fn restore(spec: &RestoreSpec) -> pb::InitiateRestoreObjectOperation {
    pb::InitiateRestoreObjectOperation {
        expiration_in_days: spec.expiration_in_days.unwrap_or(0),
        glacier_job_tier: (match spec.tier {
            GlacierJobTier::Bulk => pb::GlacierJobTier::Bulk,
            GlacierJobTier::Standard => pb::GlacierJobTier::Standard,
        }) as i32,
    }
}
