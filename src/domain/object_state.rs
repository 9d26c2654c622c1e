//! The operations that change what S3 keeps about an object besides its
//! bytes: tags, Object Lock, ACLs and archive restores. Only an S3 store
//! keeps these; the directory store refuses jobs that need them.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A tag on an object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectTag {
    /// 1–128 characters.
    pub key: String,
    /// At most 256 characters.
    pub value: String,
}

/// An Object Lock legal hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LegalHold {
    /// The object may not be deleted or overwritten.
    On,
    /// No legal hold.
    Off,
}

impl LegalHold {
    /// S3's name.
    pub fn s3_name(self) -> &'static str {
        match self {
            LegalHold::On => "ON",
            LegalHold::Off => "OFF",
        }
    }
}

/// An Object Lock retention mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RetentionMode {
    /// May be shortened or removed with the bypass permission.
    Governance,
    /// May not be shortened or removed until it ends.
    Compliance,
}

impl RetentionMode {
    /// S3's name.
    pub fn s3_name(self) -> &'static str {
        match self {
            RetentionMode::Governance => "GOVERNANCE",
            RetentionMode::Compliance => "COMPLIANCE",
        }
    }
}

/// Set each object's retention.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetentionSpec {
    /// The mode.
    pub mode: RetentionMode,
    /// Until when (whole seconds).
    pub retain_until: DateTime<Utc>,
    /// Whether a GOVERNANCE retention may be shortened or removed.
    pub bypass_governance: bool,
}

/// A canned ACL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CannedAcl {
    /// `private`: the owner only.
    Private,
    /// `public-read`: anyone may read.
    PublicRead,
    /// `public-read-write`: anyone may read and write.
    PublicReadWrite,
    /// `aws-exec-read`: EC2 may read AMI bundles.
    AwsExecRead,
    /// `authenticated-read`: any AWS account may read.
    AuthenticatedRead,
    /// `bucket-owner-read`: the bucket's owner may read.
    BucketOwnerRead,
    /// `bucket-owner-full-control`: the bucket's owner has full control.
    BucketOwnerFullControl,
}

impl CannedAcl {
    /// Every canned ACL.
    pub const ALL: [CannedAcl; 7] = [
        CannedAcl::Private,
        CannedAcl::PublicRead,
        CannedAcl::PublicReadWrite,
        CannedAcl::AwsExecRead,
        CannedAcl::AuthenticatedRead,
        CannedAcl::BucketOwnerRead,
        CannedAcl::BucketOwnerFullControl,
    ];

    /// S3's name (the `x-amz-acl` value).
    pub fn s3_name(self) -> &'static str {
        match self {
            CannedAcl::Private => "private",
            CannedAcl::PublicRead => "public-read",
            CannedAcl::PublicReadWrite => "public-read-write",
            CannedAcl::AwsExecRead => "aws-exec-read",
            CannedAcl::AuthenticatedRead => "authenticated-read",
            CannedAcl::BucketOwnerRead => "bucket-owner-read",
            CannedAcl::BucketOwnerFullControl => "bucket-owner-full-control",
        }
    }
}

/// What a grant allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AclPermission {
    /// Every permission below.
    FullControl,
    /// Read the object.
    Read,
    /// Write (for buckets).
    Write,
    /// Read the ACL.
    ReadAcp,
    /// Write the ACL.
    WriteAcp,
}

impl AclPermission {
    /// Every permission.
    pub const ALL: [AclPermission; 5] = [
        AclPermission::FullControl,
        AclPermission::Read,
        AclPermission::Write,
        AclPermission::ReadAcp,
        AclPermission::WriteAcp,
    ];

    /// S3's name.
    pub fn s3_name(self) -> &'static str {
        match self {
            AclPermission::FullControl => "FULL_CONTROL",
            AclPermission::Read => "READ",
            AclPermission::Write => "WRITE",
            AclPermission::ReadAcp => "READ_ACP",
            AclPermission::WriteAcp => "WRITE_ACP",
        }
    }
}

/// Who a grant is for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Grantee {
    /// A canonical user id.
    CanonicalUser(String),
    /// An email address.
    Email(String),
    /// A predefined group's URI.
    Group(String),
}

/// One grant of an access control policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclGrant {
    /// Who.
    pub grantee: Grantee,
    /// Shown with the grantee, when given.
    pub display_name: Option<String>,
    /// What.
    pub permission: AclPermission,
}

/// An object's ACL as a job sets it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AclSpec {
    /// A canned ACL.
    Canned(CannedAcl),
    /// An explicit policy.
    Policy {
        /// The canonical user id of the objects' owner.
        owner_id: String,
        /// The owner's display name, when given.
        owner_display_name: Option<String>,
        /// The grants.
        grants: Vec<AclGrant>,
    },
}

/// The retrieval tier of a restore.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum GlacierJobTier {
    /// The cheapest, within 48 hours.
    Bulk,
    /// Within hours.
    Standard,
}

impl GlacierJobTier {
    /// S3's name.
    pub fn s3_name(self) -> &'static str {
        match self {
            GlacierJobTier::Bulk => "BULK",
            GlacierJobTier::Standard => "STANDARD",
        }
    }
}

/// Start a restore of each archived object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreSpec {
    /// Days the restored copy stays; none for Intelligent-Tiering archives.
    pub expiration_in_days: Option<u32>,
    /// The retrieval tier.
    pub tier: GlacierJobTier,
}
