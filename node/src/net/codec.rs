//! Length-prefixed frames on libp2p request-response streams.
//!
//! A frame is a big-endian `u32` length followed by that many bytes. The
//! length is checked against the cap before a single body byte is read or
//! allocated, so a peer cannot make a node buffer more than the cap.
//! Requests carry one node-to-node message; responses are empty
//! acknowledgements (replies travel as messages of their own).

use std::io;

use async_trait::async_trait;
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::StreamProtocol;

/// The protocol name.
pub(crate) const PROTOCOL: StreamProtocol = StreamProtocol::new("/palisade/msg/1");

/// Reads and writes capped frames.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FrameCodec {
    /// Largest accepted frame body.
    pub(crate) cap: usize,
}

async fn read_frame<T: AsyncRead + Unpin + Send>(io: &mut T, cap: usize) -> io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    io.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len) as usize;
    if len > cap {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame of {len} bytes exceeds the {cap}-byte cap"),
        ));
    }
    let mut body = vec![0u8; len];
    io.read_exact(&mut body).await?;
    Ok(body)
}

async fn write_frame<T: AsyncWrite + Unpin + Send>(io: &mut T, body: &[u8]) -> io::Result<()> {
    let len = u32::try_from(body.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "frame too large"))?;
    io.write_all(&len.to_be_bytes()).await?;
    io.write_all(body).await?;
    io.close().await
}

#[async_trait]
impl libp2p::request_response::Codec for FrameCodec {
    type Protocol = StreamProtocol;
    type Request = Vec<u8>;
    type Response = Vec<u8>;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Vec<u8>>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_frame(io, self.cap).await
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Vec<u8>>
    where
        T: AsyncRead + Unpin + Send,
    {
        // Acknowledgements are empty; refuse anything bigger than a small bound.
        read_frame(io, 64).await
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: Vec<u8>,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_frame(io, &req).await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        res: Vec<u8>,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_frame(io, &res).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::io::Cursor;
    use libp2p::request_response::Codec;

    #[test]
    fn frames_round_trip_and_oversized_frames_are_refused_before_reading() {
        futures::executor::block_on(async {
            let mut codec = FrameCodec { cap: 16 };
            let mut buf = Cursor::new(Vec::new());
            codec
                .write_request(&PROTOCOL, &mut buf, b"hello".to_vec())
                .await
                .unwrap();
            let mut rd = Cursor::new(buf.into_inner());
            assert_eq!(
                codec.read_request(&PROTOCOL, &mut rd).await.unwrap(),
                b"hello"
            );

            // A length prefix above the cap fails even though no body follows.
            let mut rd = Cursor::new(1000u32.to_be_bytes().to_vec());
            let err = codec.read_request(&PROTOCOL, &mut rd).await.unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidData);

            // A truncated body is an error, not a short message.
            let mut bytes = 8u32.to_be_bytes().to_vec();
            bytes.extend_from_slice(b"abc");
            let mut rd = Cursor::new(bytes);
            assert!(codec.read_request(&PROTOCOL, &mut rd).await.is_err());
        });
    }
}
