//! The SPDY/3.1 end of `pods/portforward` (`portforward.k8s.io`), which kubectl's port-forward
//! speaks after a `POST` with `Upgrade: SPDY/3.1`: for every local connection it opens an
//! error stream and a data stream, both naming the pod port and a request id in their
//! headers; the data stream then carries the bytes both ways and the error stream any
//! failure. No maintained Rust crate speaks SPDY, so the few frames a port-forward uses are
//! read and written here; header blocks go through zlib with the SPDY/3 dictionary (flate2).
//! Flow control is not enforced, as kubectl's and the kubelet's SPDY library do not either.

use std::collections::HashMap;
use std::net::SocketAddr;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::mpsc;

/// The protocol kubectl asks for in `X-Stream-Protocol-Version`.
pub const PORT_FORWARD_PROTOCOL: &str = "portforward.k8s.io";

const SYN_STREAM: u16 = 1;
const SYN_REPLY: u16 = 2;
const RST_STREAM: u16 = 3;
const PING: u16 = 6;
const GOAWAY: u16 = 7;
const FLAG_FIN: u8 = 0x01;
/// The largest data frame sent (SPDY allows 16 MiB; small frames keep latency low).
const CHUNK: usize = 32 * 1024;

/// The SPDY/3 header-compression dictionary (draft 3, section 2.6.10.1): these names, each
/// with a 32-bit big-endian length before it, then [`DICTIONARY_TAIL`] as is.
const DICTIONARY_WORDS: &[&str] = &[
    "options",
    "head",
    "post",
    "put",
    "delete",
    "trace",
    "accept",
    "accept-charset",
    "accept-encoding",
    "accept-language",
    "accept-ranges",
    "age",
    "allow",
    "authorization",
    "cache-control",
    "connection",
    "content-base",
    "content-encoding",
    "content-language",
    "content-length",
    "content-location",
    "content-md5",
    "content-range",
    "content-type",
    "date",
    "etag",
    "expect",
    "expires",
    "from",
    "host",
    "if-match",
    "if-modified-since",
    "if-none-match",
    "if-range",
    "if-unmodified-since",
    "last-modified",
    "location",
    "max-forwards",
    "pragma",
    "proxy-authenticate",
    "proxy-authorization",
    "range",
    "referer",
    "retry-after",
    "server",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "user-agent",
    "vary",
    "via",
    "warning",
    "www-authenticate",
    "method",
    "get",
    "status",
    "200 OK",
    "version",
    "HTTP/1.1",
    "url",
    "public",
    "set-cookie",
    "keep-alive",
    "origin",
];

const DICTIONARY_TAIL: &str = concat!(
    "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505",
    "203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request",
    "401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented",
    "503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, ",
    "Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,image/jpg,image/gif,",
    "application/xml,application/xhtml+xml,text/plain,text/javascript,publicprivatemax-age=",
    "gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.",
);

fn dictionary() -> Vec<u8> {
    let mut bytes = Vec::with_capacity(1423);
    for word in DICTIONARY_WORDS {
        bytes.extend_from_slice(&(word.len() as u32).to_be_bytes());
        bytes.extend_from_slice(word.as_bytes());
    }
    bytes.extend_from_slice(DICTIONARY_TAIL.as_bytes());
    bytes
}

/// The two zlib streams of one connection: header blocks in, header blocks out.
struct HeaderCodec {
    dictionary: Vec<u8>,
    inflate: Decompress,
    deflate: Compress,
}

impl HeaderCodec {
    fn new() -> Result<HeaderCodec, String> {
        let dictionary = dictionary();
        let mut deflate = Compress::new(Compression::default(), true);
        deflate
            .set_dictionary(&dictionary)
            .map_err(|error| format!("set the SPDY dictionary: {error}"))?;
        Ok(HeaderCodec {
            dictionary,
            inflate: Decompress::new(true),
            deflate,
        })
    }

    /// The headers of one block (names lowercased by the sender, values as sent).
    fn read(&mut self, block: &[u8]) -> Result<HashMap<String, String>, String> {
        let mut plain = Vec::with_capacity(block.len() * 4 + 64);
        let mut offset = 0;
        loop {
            let consumed = self.inflate.total_in();
            let result =
                self.inflate
                    .decompress_vec(&block[offset..], &mut plain, FlushDecompress::Sync);
            offset += (self.inflate.total_in() - consumed) as usize;
            match result {
                Ok(_) if offset >= block.len() && plain.len() < plain.capacity() => break,
                Ok(_) => plain.reserve(4096),
                Err(error) if error.needs_dictionary().is_some() => {
                    self.inflate
                        .set_dictionary(&self.dictionary)
                        .map_err(|error| format!("use the SPDY dictionary: {error}"))?;
                }
                Err(error) => return Err(format!("inflate a header block: {error}")),
            }
        }
        let mut cursor = plain.as_slice();
        let mut take = |count: usize| -> Result<&[u8], String> {
            if cursor.len() < count {
                return Err("a header block is cut short".to_owned());
            }
            let (head, rest) = cursor.split_at(count);
            cursor = rest;
            Ok(head)
        };
        let number = |bytes: &[u8]| u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
        let pairs = number(take(4)?);
        let mut headers = HashMap::new();
        for _ in 0..pairs {
            let length = number(take(4)?) as usize;
            let name = String::from_utf8_lossy(take(length)?).to_ascii_lowercase();
            let length = number(take(4)?) as usize;
            let value = String::from_utf8_lossy(take(length)?).into_owned();
            headers.insert(name, value);
        }
        Ok(headers)
    }

    /// An empty header block (the SYN_REPLY of a port-forward stream carries no headers).
    fn empty_block(&mut self) -> Result<Vec<u8>, String> {
        let input = 0u32.to_be_bytes();
        let mut out = Vec::with_capacity(64);
        let mut offset = 0;
        loop {
            let consumed = self.deflate.total_in();
            self.deflate
                .compress_vec(&input[offset..], &mut out, FlushCompress::Sync)
                .map_err(|error| format!("deflate a header block: {error}"))?;
            offset += (self.deflate.total_in() - consumed) as usize;
            if offset >= input.len() && out.len() < out.capacity() {
                return Ok(out);
            }
            out.reserve(64);
        }
    }
}

fn control_frame(kind: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(8 + payload.len());
    frame.extend_from_slice(&(0x8000u16 | 3).to_be_bytes());
    frame.extend_from_slice(&kind.to_be_bytes());
    frame.push(flags);
    frame.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
    frame.extend_from_slice(payload);
    frame
}

fn data_frame(stream: u32, flags: u8, data: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(8 + data.len());
    frame.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    frame.push(flags);
    frame.extend_from_slice(&(data.len() as u32).to_be_bytes()[1..]);
    frame.extend_from_slice(data);
    frame
}

/// The two streams kubectl opens for one local connection.
#[derive(Default)]
struct Pair {
    error: Option<u32>,
    data: Option<(u32, u16)>,
}

/// Serves one upgraded SPDY connection for `pod`, whose ports lead where `backend` says,
/// until the client goes away.
pub async fn serve<S, B>(io: S, pod: String, backend: B)
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    B: Fn(u16) -> Option<SocketAddr>,
{
    let (mut reader, mut writer) = tokio::io::split(io);
    let (frames, mut outgoing) = mpsc::channel::<Vec<u8>>(64);
    let sending = tokio::spawn(async move {
        while let Some(frame) = outgoing.recv().await {
            if writer.write_all(&frame).await.is_err() {
                return;
            }
        }
        let _ = writer.shutdown().await;
    });
    if let Err(reason) = read_frames(&mut reader, &frames, &pod, &backend).await {
        tracing::debug!("spdy port-forward to {pod}: {reason}");
    }
    drop(frames);
    let _ = sending.await;
}

async fn read_frames<R, B>(
    reader: &mut R,
    frames: &mpsc::Sender<Vec<u8>>,
    pod: &str,
    backend: &B,
) -> Result<(), String>
where
    R: AsyncRead + Unpin,
    B: Fn(u16) -> Option<SocketAddr>,
{
    let mut codec = HeaderCodec::new()?;
    let mut pairs: HashMap<String, Pair> = HashMap::new();
    let mut writers: HashMap<u32, OwnedWriteHalf> = HashMap::new();
    let mut tasks = Vec::new();
    let send = |frame: Vec<u8>| async move {
        frames
            .send(frame)
            .await
            .map_err(|_| "the connection is closed".to_owned())
    };
    loop {
        let mut head = [0u8; 8];
        match reader.read_exact(&mut head).await {
            Ok(_) => {}
            Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(error) => return Err(error.to_string()),
        }
        let flags = head[4];
        let length = u32::from_be_bytes([0, head[5], head[6], head[7]]) as usize;
        let mut payload = vec![0u8; length];
        reader
            .read_exact(&mut payload)
            .await
            .map_err(|error| error.to_string())?;
        if head[0] & 0x80 == 0 {
            let stream = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
            if let Some(writer) = writers.get_mut(&stream) {
                if !payload.is_empty() && writer.write_all(&payload).await.is_err() {
                    writers.remove(&stream);
                } else if flags & FLAG_FIN != 0 {
                    let _ = writer.shutdown().await;
                    writers.remove(&stream);
                }
            }
            continue;
        }
        let kind = u16::from_be_bytes([head[2], head[3]]);
        match kind {
            SYN_STREAM if payload.len() >= 10 => {
                let stream = u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]])
                    & 0x7fff_ffff;
                let headers = codec.read(&payload[10..])?;
                let mut reply = stream.to_be_bytes().to_vec();
                reply.extend(codec.empty_block()?);
                send(control_frame(SYN_REPLY, 0, &reply)).await?;
                let request = headers.get("requestid").cloned().unwrap_or_default();
                let port = headers
                    .get("port")
                    .and_then(|port| port.parse::<u16>().ok())
                    .unwrap_or(0);
                let pair = pairs.entry(request.clone()).or_default();
                match headers.get("streamtype").map(String::as_str) {
                    Some("error") => pair.error = Some(stream),
                    Some("data") => pair.data = Some((stream, port)),
                    _ => {}
                }
                if let Pair {
                    error: Some(error_stream),
                    data: Some((data_stream, port)),
                } = *pair
                {
                    pairs.remove(&request);
                    let connected = match backend(port) {
                        Some(address) => TcpStream::connect(address)
                            .await
                            .map_err(|error| error.to_string()),
                        None => Err("connection refused".to_owned()),
                    };
                    match connected {
                        Ok(connection) => {
                            let _ = connection.set_nodelay(true);
                            let (read_half, write_half) = connection.into_split();
                            writers.insert(data_stream, write_half);
                            tasks.push(tokio::spawn(pump(
                                read_half,
                                frames.clone(),
                                data_stream,
                                error_stream,
                            )));
                        }
                        Err(reason) => {
                            let message = format!(
                                "error forwarding port {port} to pod {pod}: dial tcp \
                                 127.0.0.1:{port}: {reason}"
                            );
                            send(data_frame(error_stream, 0, message.as_bytes())).await?;
                            send(data_frame(error_stream, FLAG_FIN, &[])).await?;
                            send(data_frame(data_stream, FLAG_FIN, &[])).await?;
                        }
                    }
                }
            }
            PING => send(control_frame(PING, 0, &payload)).await?,
            RST_STREAM if payload.len() >= 4 => {
                let stream = u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]])
                    & 0x7fff_ffff;
                writers.remove(&stream);
            }
            GOAWAY => break,
            // SETTINGS, WINDOW_UPDATE, HEADERS: nothing a port-forward needs.
            _ => {}
        }
    }
    for task in tasks {
        task.abort();
    }
    Ok(())
}

/// Copies what the pod's port sends onto the data stream; at its end, closes the data and
/// error streams (no error).
async fn pump(
    mut read_half: tokio::net::tcp::OwnedReadHalf,
    frames: mpsc::Sender<Vec<u8>>,
    data_stream: u32,
    error_stream: u32,
) {
    let mut buffer = vec![0u8; CHUNK];
    loop {
        match read_half.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(count) => {
                if frames
                    .send(data_frame(data_stream, 0, &buffer[..count]))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }
    }
    let _ = frames.send(data_frame(data_stream, FLAG_FIN, &[])).await;
    let _ = frames.send(data_frame(error_stream, FLAG_FIN, &[])).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dictionary_is_the_one_of_spdy_3() {
        // Its Adler-32 is what a SPDY/3 zlib stream names as its DICTID.
        let dictionary = dictionary();
        assert_eq!(dictionary.len(), 1423);
        let mut deflate = Compress::new(Compression::default(), true);
        assert_eq!(
            deflate.set_dictionary(&dictionary).expect("dictionary"),
            0xe3c6_a7c2
        );
    }

    #[test]
    fn header_blocks_round_trip_through_the_shared_zlib_streams() {
        // A client's codec is a server's with the directions swapped; blocks share one
        // stream per direction, so the second block depends on the first.
        let mut client = HeaderCodec::new().expect("codec");
        let mut server = HeaderCodec::new().expect("codec");
        for port in ["650", "30650"] {
            let mut plain = 3u32.to_be_bytes().to_vec();
            for (name, value) in [("streamtype", "data"), ("port", port), ("requestid", "0")] {
                for text in [name, value] {
                    plain.extend_from_slice(&(text.len() as u32).to_be_bytes());
                    plain.extend_from_slice(text.as_bytes());
                }
            }
            let mut block = Vec::with_capacity(256);
            client
                .deflate
                .compress_vec(&plain, &mut block, FlushCompress::Sync)
                .expect("deflate");
            let headers = server.read(&block).expect("inflate");
            assert_eq!(headers.get("port").map(String::as_str), Some(port));
            assert_eq!(headers.get("streamtype").map(String::as_str), Some("data"));
        }
        let reply = server.empty_block().expect("block");
        assert!(client.read(&reply).expect("inflate").is_empty());
    }
}
