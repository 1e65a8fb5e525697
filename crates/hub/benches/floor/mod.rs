//! The floor stub of the fan-out bench (`fanout --floor-server one|coalesce`): the
//! least a fan-out server can do for the bench's client, so that the hub's figures
//! can be read against what this machine allows (docs/benchmarks.md "Hub fan-out").
//!
//! It speaks just enough of the hub's protocol: `GET /api/ws` is upgraded (accept
//! key, no checks), the first frame is taken as `auth` and answered with an
//! `auth.ok` ack; `POST /api/internal/events` frames its body once as a v1 envelope
//! with the next `seq` and answers 200 at once; `GET /health` gives
//! `replay.headSeq`. No JWT, no signature, no limits, no pings, no reading after
//! `auth`, no backpressure: a socket is written with blocking writes.
//!
//! The fan-out itself is a bare loop on two threads, each owning half the
//! sockets: `one` writes each event to each socket with its own `write` (one
//! system call per delivery); `coalesce` writes all the events that queued up
//! while the thread was busy, up to 64 frames per `writev`.

use std::io::{IoSlice, Write as _};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};

use bytes::{BufMut, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Writer threads (the box has two cores).
const THREADS: usize = 2;
/// Most frames per `writev` in the coalescing mode.
const BATCH: usize = 64;

/// One writer thread's sockets and the events it has not written yet.
#[derive(Default)]
struct Shard {
    state: Mutex<ShardState>,
    ready: Condvar,
}

#[derive(Default)]
struct ShardState {
    joined: Vec<std::net::TcpStream>,
    events: Vec<Bytes>,
}

/// The stub's shared state: its writer shards and the last `seq`.
struct Floor {
    shards: Vec<Arc<Shard>>,
    next: AtomicUsize,
    seq: AtomicU64,
    publish: Mutex<()>,
}

/// The child process: serves until its stdin closes.
pub fn main(mode: &str) {
    let coalesce = match mode {
        "one" => false,
        "coalesce" => true,
        other => panic!("floor mode {other:?}: one or coalesce"),
    };
    let floor = Arc::new(Floor {
        shards: (0..THREADS).map(|_| Arc::new(Shard::default())).collect(),
        next: AtomicUsize::new(0),
        seq: AtomicU64::new(0),
        publish: Mutex::new(()),
    });
    for shard in &floor.shards {
        let shard = shard.clone();
        std::thread::spawn(move || write_loop(&shard, coalesce));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(THREADS)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        println!("ADDR {}", listener.local_addr().expect("addr"));
        std::io::stdout().flush().ok();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                stream.set_nodelay(true).ok();
                tokio::spawn(serve(stream, floor.clone()));
            }
        });
        let _ = tokio::task::spawn_blocking(|| {
            let mut sink = String::new();
            while std::io::stdin().read_line(&mut sink).is_ok_and(|n| n > 0) {}
        })
        .await;
    });
    std::process::exit(0);
}

/// A text frame of `text`, built once.
fn text_frame(text: &[u8]) -> Bytes {
    let mut frame = BytesMut::with_capacity(text.len() + 4);
    frame.put_u8(0x81);
    if text.len() < 126 {
        frame.put_u8(text.len() as u8);
    } else {
        frame.put_u8(126);
        frame.put_u16(text.len() as u16);
    }
    frame.put_slice(text);
    frame.freeze()
}

/// One connection: HTTP requests until it becomes a WebSocket.
async fn serve(mut stream: TcpStream, floor: Arc<Floor>) {
    let mut buf = Vec::with_capacity(1024);
    loop {
        let Some(head_end) = read_until(&mut stream, &mut buf, |b| {
            b.windows(4).position(|w| w == b"\r\n\r\n").map(|at| at + 4)
        })
        .await
        else {
            return;
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        buf.drain(..head_end);
        if head.starts_with("GET /api/ws") {
            websocket(stream, &head, buf, &floor).await;
            return;
        }
        if head.starts_with("GET /health") {
            let body = format!(
                r#"{{"replay":{{"headSeq":{}}}}}"#,
                floor.seq.load(Ordering::Relaxed)
            );
            let answer = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            );
            if stream.write_all(answer.as_bytes()).await.is_err() {
                return;
            }
            continue;
        }
        let length: usize = head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length:")
                    .map(|v| v.trim().parse().unwrap_or(0))
            })
            .unwrap_or(0);
        if read_until(&mut stream, &mut buf, |b| {
            (b.len() >= length).then_some(length)
        })
        .await
        .is_none()
        {
            return;
        }
        let body: Vec<u8> = buf.drain(..length).collect();
        floor.publish(&body);
        if stream
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
            .await
            .is_err()
        {
            return;
        }
    }
}

/// Reads into `buf` until `done` finds what it needs; `None` when the peer left.
async fn read_until(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    done: impl Fn(&[u8]) -> Option<usize>,
) -> Option<usize> {
    loop {
        if let Some(at) = done(buf) {
            return Some(at);
        }
        let mut chunk = [0_u8; 4096];
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// The upgrade, the `auth` frame and the ack; then the socket joins a shard.
async fn websocket(mut stream: TcpStream, head: &str, mut buf: Vec<u8>, floor: &Floor) {
    let key = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("sec-websocket-key")
                .then(|| value.trim().to_owned())
        })
        .unwrap_or_default();
    let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
    let answer = format!(
        "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\n\
         sec-websocket-accept: {accept}\r\n\r\n"
    );
    if stream.write_all(answer.as_bytes()).await.is_err() {
        return;
    }
    // The auth frame: a masked client frame (length 7 or 16 bits).
    let frame_len = |b: &[u8]| -> Option<usize> {
        let len = match *b.get(1)? & 0x7f {
            126 => usize::from(u16::from_be_bytes([*b.get(2)?, *b.get(3)?])) + 8,
            n => usize::from(n) + 6,
        };
        (b.len() >= len).then_some(len)
    };
    if read_until(&mut stream, &mut buf, frame_len).await.is_none() {
        return;
    }
    let ack = text_frame(br#"{"v":1,"type":"ack","event":"auth.ok"}"#);
    if stream.write_all(&ack).await.is_err() {
        return;
    }
    let Ok(stream) = stream.into_std() else {
        return;
    };
    stream.set_nonblocking(false).ok();
    let shard = &floor.shards[floor.next.fetch_add(1, Ordering::Relaxed) % THREADS];
    shard
        .state
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .joined
        .push(stream);
}

impl Floor {
    /// Frames `body` once as the next event and hands it to every shard.
    fn publish(&self, body: &[u8]) {
        let _order = self.publish.lock().unwrap_or_else(PoisonError::into_inner);
        let seq = self.seq.fetch_add(1, Ordering::Relaxed) + 1;
        let ts = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let mut text = Vec::with_capacity(body.len() + 64);
        text.extend_from_slice(br#"{"v":1,"type":"event","event":"#);
        text.extend_from_slice(body);
        write!(text, r#","ts":{ts},"seq":{seq}}}"#).ok();
        let frame = text_frame(&text);
        for shard in &self.shards {
            let mut state = shard.state.lock().unwrap_or_else(PoisonError::into_inner);
            state.events.push(frame.clone());
            if state.events.len() == 1 {
                shard.ready.notify_one();
            }
        }
    }
}

/// A writer thread: takes the events that queued up and writes them to its
/// sockets, one write per delivery or up to [`BATCH`] frames per `writev`.
fn write_loop(shard: &Shard, coalesce: bool) {
    let mut sockets: Vec<std::net::TcpStream> = Vec::new();
    let mut events = Vec::new();
    loop {
        {
            let mut state = shard.state.lock().unwrap_or_else(PoisonError::into_inner);
            while state.events.is_empty() {
                state = shard
                    .ready
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            std::mem::swap(&mut events, &mut state.events);
            sockets.append(&mut state.joined);
        }
        sockets.retain_mut(|socket| {
            if coalesce {
                events
                    .chunks(BATCH)
                    .all(|chunk| write_vectored_all(socket, chunk))
            } else {
                events.iter().all(|frame| socket.write_all(frame).is_ok())
            }
        });
        events.clear();
    }
}

/// Writes `frames` with as few `writev` calls as the kernel allows.
fn write_vectored_all(socket: &mut std::net::TcpStream, frames: &[Bytes]) -> bool {
    let mut skip = 0;
    let total: usize = frames.iter().map(Bytes::len).sum();
    while skip < total {
        let mut slices = Vec::with_capacity(frames.len());
        let mut offset = skip;
        for frame in frames {
            if offset >= frame.len() {
                offset -= frame.len();
                continue;
            }
            slices.push(IoSlice::new(&frame[offset..]));
            offset = 0;
        }
        match socket.write_vectored(&slices) {
            Ok(0) | Err(_) => return false,
            Ok(n) => skip += n,
        }
    }
    true
}
