//! WatchJobs messages encoded once. The process's tail encodes each new
//! event's message a single time; every stream that sends it shares those
//! bytes, so a thousand streams cost one encoding, not a thousand copies of
//! the event and a thousand encodings. Clients see ordinary
//! `WatchJobsResponse` messages: only the server's codec differs.

use bytes::{BufMut, Bytes};
use prost::Message;
use tonic::Status;
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

use crate::proto as pb;

/// One encoded `WatchJobsResponse`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame(Bytes);

impl Frame {
    /// `message`, encoded.
    pub fn encode(message: &pb::WatchJobsResponse) -> Frame {
        Frame(message.encode_to_vec().into())
    }

    /// The encoded message.
    pub fn bytes(&self) -> &Bytes {
        &self.0
    }
}

/// The WatchJobs codec: requests are decoded by prost, responses are
/// [`Frame`]s already encoded. The generated server makes it with
/// `Default`.
#[derive(Debug, Default, Clone, Copy)]
pub struct FrameCodec(());

impl Codec for FrameCodec {
    type Encode = Frame;
    type Decode = pb::WatchJobsRequest;
    type Encoder = FrameEncoder;
    type Decoder = RequestDecoder;

    fn encoder(&mut self) -> FrameEncoder {
        FrameEncoder
    }

    fn decoder(&mut self) -> RequestDecoder {
        RequestDecoder(
            tonic_prost::ProstCodec::<pb::WatchJobsResponse, _>::raw_decoder(
                BufferSettings::default(),
            ),
        )
    }
}

/// Writes a [`Frame`]'s bytes as they are.
#[derive(Debug, Default, Clone, Copy)]
pub struct FrameEncoder;

impl Encoder for FrameEncoder {
    type Item = Frame;
    type Error = Status;

    fn encode(&mut self, frame: Frame, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&frame.0);
        Ok(())
    }

    /// A small buffer: a live stream sends a message or two at a time, and
    /// once they are written the buffer is reused, so a thousand streams
    /// write into a thousand warm buffers of a few hundred bytes instead of
    /// walking through 8 KiB of cold memory each.
    fn buffer_settings(&self) -> BufferSettings {
        BufferSettings::new(STREAM_BUFFER, YIELD_THRESHOLD)
    }
}

/// The encoding buffer of one WatchJobs stream, in bytes; it grows for a
/// page of catch-up.
const STREAM_BUFFER: usize = 512;

/// How much a stream encodes before handing it to the connection (tonic's
/// default).
const YIELD_THRESHOLD: usize = 32 * 1024;

/// Decodes a WatchJobs request with prost.
#[derive(Debug)]
pub struct RequestDecoder(tonic_prost::ProstDecoder<pb::WatchJobsRequest>);

impl Decoder for RequestDecoder {
    type Item = pb::WatchJobsRequest;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Self::Item>, Status> {
        self.0.decode(src)
    }

    fn buffer_settings(&self) -> BufferSettings {
        self.0.buffer_settings()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A frame decodes to the message it was made from.
    #[test]
    fn a_frame_is_its_message_encoded() {
        let message = pb::WatchJobsResponse {
            position: 42,
            message: Some(pb::watch_jobs_response::Message::Heartbeat(
                pb::Heartbeat {},
            )),
        };
        let frame = Frame::encode(&message);
        assert_eq!(
            pb::WatchJobsResponse::decode(frame.bytes().clone()).unwrap(),
            message
        );
    }
}
