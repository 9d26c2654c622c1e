//! The contract's messages made from domain values: what the gRPC API, the
//! watch tail and the CLI send or show. Below all of them, above the domain
//! and the store; the generated code itself is [`crate::proto`]. Requests
//! going the other way are validated by [`crate::api::validate`].

mod code;
mod frame;
mod history;
mod job;
mod object_state;

pub(crate) use code::code_name;
pub use frame::{Frame, FrameCodec, FrameEncoder, RequestDecoder};
pub(crate) use history::HistoryFolder;
#[cfg(test)]
pub(crate) use job::operation_to_proto;
pub(crate) use job::{
    job_to_list_proto, job_to_proto, status_from_proto, status_name, status_to_proto,
    tags_to_proto, task_result_to_proto, timestamp,
};
