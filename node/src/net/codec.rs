//! Length-prefixed frames on long-lived libp2p streams.
//!
//! A frame is a big-endian `u32` length followed by that many bytes. The
//! length is checked against the cap before a single body byte is read or
//! allocated, so a peer cannot make a node buffer more than the cap. One
//! stream per peer and direction carries frames back to back, in order; a
//! frame is one node-to-node message (replies travel as messages of their
//! own).

use std::io;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::StreamProtocol;

/// The protocol name (a new name: frames no longer end their stream, so a
/// node of the request-response release must not mistake one for the other).
pub(crate) const PROTOCOL: StreamProtocol = StreamProtocol::new("/palisade/frames/1");

/// Read one frame of at most `cap` bytes.
pub(crate) async fn read_frame<T: AsyncRead + Unpin>(
    io: &mut T,
    cap: usize,
) -> io::Result<Vec<u8>> {
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

/// Write one frame and flush it (the stream stays open for the next).
pub(crate) async fn write_frame<T: AsyncWrite + Unpin>(io: &mut T, body: &[u8]) -> io::Result<()> {
    let len = u32::try_from(body.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "frame too large"))?;
    io.write_all(&len.to_be_bytes()).await?;
    io.write_all(body).await?;
    io.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::io::Cursor;

    #[test]
    fn frames_round_trip_back_to_back_and_oversized_frames_are_refused_before_reading() {
        futures::executor::block_on(async {
            let mut buf = Cursor::new(Vec::new());
            write_frame(&mut buf, b"hello").await.unwrap();
            write_frame(&mut buf, b"").await.unwrap();
            write_frame(&mut buf, b"again").await.unwrap();
            let mut rd = Cursor::new(buf.into_inner());
            assert_eq!(read_frame(&mut rd, 16).await.unwrap(), b"hello");
            assert_eq!(read_frame(&mut rd, 16).await.unwrap(), b"");
            assert_eq!(read_frame(&mut rd, 16).await.unwrap(), b"again");
            // The end of the stream is an error, not an empty frame.
            assert!(read_frame(&mut rd, 16).await.is_err());

            // A length prefix above the cap fails even though no body follows.
            let mut rd = Cursor::new(1000u32.to_be_bytes().to_vec());
            let err = read_frame(&mut rd, 16).await.unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidData);

            // A truncated body is an error, not a short message.
            let mut bytes = 8u32.to_be_bytes().to_vec();
            bytes.extend_from_slice(b"abc");
            let mut rd = Cursor::new(bytes);
            assert!(read_frame(&mut rd, 16).await.is_err());
        });
    }
}
