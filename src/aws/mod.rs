//! AWS's own interfaces, for the tools people already drive S3 Batch
//! Operations with: S3 Control's job shapes ([`s3control`]) in REST-XML
//! ([`xml`]) or in the AWS CLI's JSON ([`node`]), Signature Version 4
//! ([`sigv4`]), and the EventBridge event of a job's status change
//! ([`eventbridge`]), which status webhooks POST. Everything here converts; the rules stay behind the
//! contract's messages it converts to.

pub mod eventbridge;
pub mod node;
pub mod s3control;
pub mod sigv4;
pub mod xml;
