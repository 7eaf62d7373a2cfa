//! HTTP/2 frames by hand, for what a well-behaved client library refuses to send
//! (connection-specific fields, header blocks over the peer's limit, streams over its
//! limit, DATA that contradicts `content-length`). Header blocks are HPACK literals
//! without indexing or Huffman coding; answers are read only as far as the tests need
//! (a stream's reset, its `:status`, the connection's end).

use super::*;
use std::collections::HashMap;

/// A frame.
#[derive(Debug)]
pub struct Frame {
    /// Type (0 DATA, 1 HEADERS, 3 RST_STREAM, 4 SETTINGS, 7 GOAWAY...).
    pub kind: u8,
    /// Flags.
    pub flags: u8,
    /// Stream id.
    pub stream: u32,
    /// Payload.
    pub payload: Vec<u8>,
}

/// How a stream ended, as far as the client saw.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The server reset the stream with this error code.
    Reset(u32),
    /// The server answered with this status (0 when not readable here).
    Status(u16),
    /// The connection ended (GOAWAY or closed) first.
    Closed,
}

/// A client connection speaking raw HTTP/2 over TLS.
pub struct RawH2 {
    s: TlsConn,
    /// The server's first SETTINGS, by identifier.
    pub settings: HashMap<u16, u32>,
}

impl RawH2 {
    /// Connects with ALPN h2, sends the preface and empty SETTINGS, and reads the
    /// server's SETTINGS.
    pub fn open(addr: &str, ca: &[u8]) -> RawH2 {
        let s = connect(addr, client_config(ca, &[b"h2"], None)).unwrap();
        assert_eq!(s.conn.alpn_protocol(), Some(&b"h2"[..]));
        let mut c = RawH2 {
            s,
            settings: HashMap::new(),
        };
        c.write(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
        c.frame(4, 0, 0, &[]);
        while let Some(f) = c.next(Duration::from_secs(5)) {
            if f.kind == 4 && f.flags & 1 == 0 {
                for p in f.payload.chunks(6) {
                    let id = u16::from_be_bytes([p[0], p[1]]);
                    let v = u32::from_be_bytes([p[2], p[3], p[4], p[5]]);
                    c.settings.insert(id, v);
                }
                c.frame(4, 1, 0, &[]);
                break;
            }
        }
        c
    }

    fn write(&mut self, b: &[u8]) {
        // A server that already closed may refuse the write; what it answered is read next.
        let _ = self.s.write_all(b).and_then(|_| self.s.flush());
    }

    /// Sends one frame.
    pub fn frame(&mut self, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
        let n = payload.len();
        let mut f = vec![(n >> 16) as u8, (n >> 8) as u8, n as u8, kind, flags];
        f.extend_from_slice(&stream.to_be_bytes());
        f.extend_from_slice(payload);
        self.write(&f);
    }

    /// Sends a request header: `POST` or `GET` `path` on `stream`, then `fields`, split
    /// into HEADERS and CONTINUATION frames of 16 KiB.
    pub fn headers(
        &mut self,
        stream: u32,
        method: &str,
        path: &str,
        fields: &[(&str, &str)],
        end_stream: bool,
    ) {
        let mut block = Vec::new();
        for (n, v) in [
            (":method", method),
            (":scheme", "https"),
            (":path", path),
            (":authority", "127.0.0.1"),
        ]
        .into_iter()
        .chain(fields.iter().copied())
        {
            block.push(0);
            hpack_string(&mut block, n.as_bytes());
            hpack_string(&mut block, v.as_bytes());
        }
        let chunks: Vec<&[u8]> = block.chunks(16_384).collect();
        for (i, chunk) in chunks.iter().enumerate() {
            let last = i + 1 == chunks.len();
            let (kind, mut flags) = if i == 0 { (1, 0) } else { (9, 0) };
            if last {
                flags |= 0x4;
            }
            if i == 0 && end_stream {
                flags |= 0x1;
            }
            self.frame(kind, flags, stream, chunk);
        }
    }

    /// Sends DATA.
    pub fn data(&mut self, stream: u32, bytes: &[u8], end_stream: bool) {
        self.frame(0, u8::from(end_stream), stream, bytes);
    }

    /// The next frame, or `None` when the connection ended or nothing came in `wait`.
    pub fn next(&mut self, wait: Duration) -> Option<Frame> {
        self.s.sock.set_read_timeout(Some(wait)).unwrap();
        let mut head = [0u8; 9];
        self.s.read_exact(&mut head).ok()?;
        let n = (usize::from(head[0]) << 16) | (usize::from(head[1]) << 8) | usize::from(head[2]);
        let mut payload = vec![0u8; n];
        self.s.read_exact(&mut payload).ok()?;
        let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
        Some(Frame {
            kind: head[3],
            flags: head[4],
            stream,
            payload,
        })
    }

    /// Reads until `stream` is reset or answered, or the connection ends.
    pub fn outcome(&mut self, stream: u32) -> Outcome {
        while let Some(f) = self.next(Duration::from_secs(20)) {
            match f.kind {
                3 if f.stream == stream => {
                    return Outcome::Reset(u32::from_be_bytes(f.payload[..4].try_into().unwrap()))
                }
                1 if f.stream == stream => return Outcome::Status(status_of(&f.payload)),
                7 => return Outcome::Closed,
                6 if f.flags & 1 == 0 => self.frame(6, 1, 0, &f.payload),
                _ => {}
            }
        }
        Outcome::Closed
    }

    /// Whether the server closes the connection (GOAWAY or end of stream) within `wait`.
    pub fn closed_within(&mut self, wait: Duration) -> bool {
        let until = std::time::Instant::now() + wait;
        loop {
            let left = until.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return false;
            }
            match self.next(left) {
                None => return std::time::Instant::now() < until,
                Some(f) if f.kind == 7 => return true,
                Some(_) => {}
            }
        }
    }
}

/// An HPACK string literal without Huffman coding.
fn hpack_string(out: &mut Vec<u8>, s: &[u8]) {
    hpack_int(out, s.len(), 7, 0);
    out.extend_from_slice(s);
}

/// An HPACK integer with an `n`-bit prefix.
fn hpack_int(out: &mut Vec<u8>, mut v: usize, n: u8, first: u8) {
    let max = (1usize << n) - 1;
    if v < max {
        out.push(first | v as u8);
        return;
    }
    out.push(first | max as u8);
    v -= max;
    while v >= 128 {
        out.push((v % 128) as u8 | 0x80);
        v /= 128;
    }
    out.push(v as u8);
}

/// `:status` from the first field of a response header block: an indexed static entry,
/// or a literal with the static `:status` name and a plain or Huffman-coded value.
fn status_of(block: &[u8]) -> u16 {
    let Some(&b) = block.first() else { return 0 };
    match b {
        0x88 => 200,
        0x89 => 204,
        0x8a => 206,
        0x8b => 304,
        0x8c => 400,
        0x8d => 404,
        0x8e => 500,
        0x48 | 0x08 | 0x18 if block.len() >= 2 => {
            let len = usize::from(block[1] & 0x7f);
            let value = &block[2..(2 + len).min(block.len())];
            let text = if block[1] & 0x80 != 0 {
                huffman_digits(value)
            } else {
                String::from_utf8_lossy(value).into_owned()
            };
            text.parse().unwrap_or(0)
        }
        _ => 0,
    }
}

/// Decodes Huffman-coded decimal digits (RFC 7541 Appendix B: '0'-'2' five bits,
/// '3'-'9' six bits).
fn huffman_digits(bytes: &[u8]) -> String {
    let bits: Vec<u8> = bytes
        .iter()
        .flat_map(|b| (0..8).rev().map(move |i| (b >> i) & 1))
        .collect();
    let mut out = String::new();
    let mut i = 0;
    let read = |i: usize, n: usize| bits[i..i + n].iter().fold(0u8, |a, b| (a << 1) | b);
    while i + 5 <= bits.len() {
        let five = read(i, 5);
        if five <= 2 {
            out.push((b'0' + five) as char);
            i += 5;
        } else if i + 6 <= bits.len() && (0b011001..=0b011111).contains(&read(i, 6)) {
            out.push((b'3' + read(i, 6) - 0b011001) as char);
            i += 6;
        } else {
            break;
        }
    }
    out
}
