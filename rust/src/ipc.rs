//! gRPC worker processes reach the one engine over a Unix socket that Rust
//! owns on both ends.
//!
//! One grpc.aio process tops out at a few thousand RPCs per second on one
//! core, far below what the engine can do. So `ketch` runs several gRPC
//! worker processes that share the client port (SO_REUSEPORT) and hand each
//! request's bytes to the engine process through this module. A worker sees
//! the same interface as the in-process engine: submit bytes with a token,
//! wait on an eventfd, drain answers.
//!
//! Wire format on the socket, all little-endian:
//! ```text
//! request  (worker → engine): len u32 | method u32 | token u64 | request bytes
//! answer   (engine → worker): len u32 | token u64 | status u8 | name_len u8 | name | payload
//!   len counts everything after itself. status 0: payload is the response,
//!   name empty; status 1: name is the EtcdError name, payload its message.
//! ```
//! The engine side gives each connection a route number and puts it in the
//! top bits of the connection's tokens ([`crate::completion::ROUTE_SHIFT`]),
//! so answers find their way back without the engine's threads knowing about
//! workers at all.

use std::io::{self, BufReader, BufWriter, Read, Write};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixListener, UnixStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use crossbeam_channel::Receiver;
use parking_lot::Mutex;

use crate::completion::{Completion, CompletionQueue, ROUTE_SHIFT};
use crate::engine::Engine;
use crate::error::EtcdError;

/// Requests larger than this are refused before reading them (a broken peer,
/// not a client: gRPC has already enforced --max-request-bytes).
const MAX_FRAME: usize = 64 * 1024 * 1024;

fn abstract_addr(name: &str) -> io::Result<SocketAddr> {
    SocketAddr::from_abstract_name(name.as_bytes())
}

/// The engine process's side: accepts workers and serves their requests.
pub struct IpcServer {
    stop: Arc<AtomicBool>,
    accept: Mutex<Option<JoinHandle<()>>>,
    /// A handle on every worker connection, to hang up on them at stop.
    connections: Arc<Mutex<Vec<UnixStream>>>,
    name: String,
}

impl IpcServer {
    /// Listens on the abstract Unix socket `name` (no file; gone with the process).
    pub fn start(engine: Arc<Engine>, name: &str) -> io::Result<IpcServer> {
        let listener = UnixListener::bind_addr(&abstract_addr(name)?)?;
        listener.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let connections = Arc::new(Mutex::new(Vec::new()));
        let accept = {
            let stop = stop.clone();
            let connections = connections.clone();
            std::thread::Builder::new()
                .name("ketch-ipc-accept".into())
                .spawn(move || accept_loop(&engine, &listener, &stop, &connections))?
        };
        Ok(IpcServer { stop, accept: Mutex::new(Some(accept)), connections, name: name.to_owned() })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Stops accepting and hangs up on every worker: each sees the end of
    /// its socket, as it would if the engine process died, and exits.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.accept.lock().take() {
            let _ = t.join();
        }
        for conn in self.connections.lock().drain(..) {
            let _ = conn.shutdown(std::net::Shutdown::Both);
        }
    }
}

impl Drop for IpcServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn accept_loop(
    engine: &Arc<Engine>,
    listener: &UnixListener,
    stop: &AtomicBool,
    connections: &Mutex<Vec<UnixStream>>,
) {
    let mut next_route: u16 = 1;
    while !stop.load(Ordering::Acquire) {
        match listener.accept() {
            Ok((stream, _)) => {
                let route = next_route;
                // Route 0 is the engine process's own caller; skip it on wrap.
                next_route = next_route.checked_add(1).unwrap_or(1);
                if let Ok(handle) = stream.try_clone() {
                    connections.lock().push(handle);
                }
                if let Err(e) = serve_connection(engine.clone(), stream, route) {
                    eprintln!("ketch: ipc: cannot serve a worker connection: {e}");
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => {
                eprintln!("ketch: ipc: accept failed: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

fn serve_connection(engine: Arc<Engine>, stream: UnixStream, route: u16) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    let (tx, rx) = crossbeam_channel::unbounded();
    engine.completions().add_route(route, tx);
    let writer_stream = stream.try_clone()?;
    std::thread::Builder::new()
        .name(format!("ketch-ipc-w{route}"))
        .spawn(move || write_answers(writer_stream, &rx))?;
    std::thread::Builder::new().name(format!("ketch-ipc-r{route}")).spawn(move || {
        let routed = u64::from(route) << ROUTE_SHIFT;
        let mut reader = BufReader::with_capacity(256 * 1024, &stream);
        while let Ok(Some((method, token, request))) = read_request(&mut reader) {
            engine.submit(method, request, routed | token);
        }
        // The worker hung up (or sent garbage): drop its watch streams, and
        // forget its route, which drops the writer's channel and ends the
        // writer thread.
        engine.shared().watch.close_route(route);
        engine.completions().remove_route(route);
        let _ = stream.shutdown(std::net::Shutdown::Both);
    })?;
    Ok(())
}

/// One length-prefixed frame, or None at a clean end of the stream.
fn read_frame(reader: &mut impl Read, min_len: usize, what: &str) -> io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 4];
    match reader.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_le_bytes(len) as usize;
    if !(min_len..=MAX_FRAME).contains(&len) {
        return Err(io::Error::new(io::ErrorKind::InvalidData, format!("bad {what} frame length {len}")));
    }
    let mut frame = vec![0u8; len];
    reader.read_exact(&mut frame)?;
    Ok(Some(frame))
}

fn read_request(reader: &mut impl Read) -> io::Result<Option<(u32, u64, Bytes)>> {
    let Some(frame) = read_frame(reader, 12, "request")? else {
        return Ok(None);
    };
    let method = u32::from_le_bytes(frame[0..4].try_into().expect("4 bytes"));
    let token = u64::from_le_bytes(frame[4..12].try_into().expect("8 bytes"));
    let mut request = Bytes::from(frame);
    Ok(Some((method, token, request.split_off(12))))
}

/// Writes every answer waiting in the channel with one flush, so a burst of
/// answers costs the worker one wake-up.
fn write_answers(stream: UnixStream, rx: &Receiver<Completion>) {
    let mut out = BufWriter::with_capacity(256 * 1024, stream);
    while let Ok(first) = rx.recv() {
        let mut ok = encode_answer(&mut out, &first).is_ok();
        while ok {
            match rx.try_recv() {
                Ok(next) => ok = encode_answer(&mut out, &next).is_ok(),
                Err(_) => break,
            }
        }
        if !ok || out.flush().is_err() {
            return;
        }
    }
}

fn encode_answer(out: &mut impl Write, c: &Completion) -> io::Result<()> {
    let (status, name, payload): (u8, &str, std::borrow::Cow<'_, [u8]>) = match &c.result {
        Ok(bytes) => (0, "", bytes.as_slice().into()),
        Err(e) => (1, e.name(), e.to_string().into_bytes().into()),
    };
    let len = 8 + 1 + 1 + name.len() + payload.len();
    out.write_all(&(len as u32).to_le_bytes())?;
    out.write_all(&c.token.to_le_bytes())?;
    out.write_all(&[status, name.len() as u8])?;
    out.write_all(name.as_bytes())?;
    out.write_all(&payload)
}

/// A worker process's side: the engine's interface, over the socket.
pub struct IpcClient {
    stream: Mutex<BufWriter<UnixStream>>,
    completions: Arc<CompletionQueue>,
    reader: Mutex<Option<JoinHandle<()>>>,
    lost: Arc<AtomicBool>,
}

impl IpcClient {
    /// Connects to the engine process. When the engine goes away (it was
    /// stopped or killed) the worker has nothing left to serve: the reader
    /// calls `on_lost`, which in a worker process exits it.
    pub fn connect(name: &str, on_lost: Box<dyn FnOnce() + Send>) -> io::Result<IpcClient> {
        let stream = UnixStream::connect_addr(&abstract_addr(name)?)?;
        let completions = Arc::new(CompletionQueue::new()?);
        let lost = Arc::new(AtomicBool::new(false));
        let reader = {
            let stream = stream.try_clone()?;
            let completions = completions.clone();
            let lost = lost.clone();
            std::thread::Builder::new().name("ketch-ipc-client".into()).spawn(move || {
                let mut reader = BufReader::with_capacity(256 * 1024, stream);
                while let Ok(Some(c)) = read_answer(&mut reader) {
                    completions.push(c.token, c.result);
                }
                // `close` marks the client lost before it shuts the socket:
                // only an end the worker did not ask for is a lost engine.
                if !lost.swap(true, Ordering::AcqRel) {
                    on_lost();
                }
            })?
        };
        Ok(IpcClient {
            stream: Mutex::new(BufWriter::with_capacity(64 * 1024, stream)),
            completions,
            reader: Mutex::new(Some(reader)),
            lost,
        })
    }

    pub fn completions(&self) -> &CompletionQueue {
        &self.completions
    }

    /// Sends one request. Answers "server stopped" at once if the engine is gone.
    pub fn submit(&self, method: u32, request: &[u8], token: u64) {
        if self.lost.load(Ordering::Acquire) || self.write_request(method, request, token).is_err() {
            self.completions.push(token, Err(EtcdError::Stopped));
        }
    }

    fn write_request(&self, method: u32, request: &[u8], token: u64) -> io::Result<()> {
        let mut out = self.stream.lock();
        out.write_all(&((12 + request.len()) as u32).to_le_bytes())?;
        out.write_all(&method.to_le_bytes())?;
        out.write_all(&token.to_le_bytes())?;
        out.write_all(request)?;
        out.flush()
    }

    pub fn close(&self) {
        self.lost.store(true, Ordering::Release);
        let _ = self.stream.lock().get_ref().shutdown(std::net::Shutdown::Both);
        if let Some(t) = self.reader.lock().take() {
            let _ = t.join();
        }
    }
}

fn read_answer(reader: &mut impl Read) -> io::Result<Option<Completion>> {
    let Some(mut frame) = read_frame(reader, 10, "answer")? else {
        return Ok(None);
    };
    let token = u64::from_le_bytes(frame[0..8].try_into().expect("8 bytes"));
    let (status, name_len) = (frame[8], frame[9] as usize);
    let payload = frame.split_off(10 + name_len);
    let result = if status == 0 {
        Ok(payload)
    } else {
        let name = String::from_utf8_lossy(&frame[10..10 + name_len]);
        Err(EtcdError::from_wire(&name, &String::from_utf8_lossy(&payload)))
    };
    Ok(Some(Completion { token, result }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{EngineConfig, Method};
    use crate::pb::etcdserverpb::{PutRequest, PutResponse, RangeRequest, RangeResponse};
    use prost::Message;
    use std::time::Instant;

    fn wait_for(q: &CompletionQueue, n: usize) -> Vec<Completion> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut got = Vec::new();
        while got.len() < n {
            got.extend(q.take());
            assert!(Instant::now() < deadline, "only {} of {n} answers", got.len());
            std::thread::sleep(Duration::from_millis(1));
        }
        got
    }

    #[test]
    fn workers_reach_the_engine_and_answers_find_their_worker() {
        let dir = tempfile::tempdir().unwrap();
        let engine = Arc::new(Engine::start(EngineConfig::new(dir.path(), 7, 9)).unwrap());
        let name = format!("ketch-test-{}-{}", std::process::id(), line!());
        let server = IpcServer::start(engine.clone(), &name).unwrap();
        let workers: Vec<_> =
            (0..3).map(|_| IpcClient::connect(&name, Box::new(|| {})).unwrap()).collect();
        // The same tokens in every worker: routing keeps them apart.
        for (w, client) in workers.iter().enumerate() {
            for token in 1..=50u64 {
                let put = PutRequest { key: format!("w{w}/{token}").into(), value: "v".into(), ..Default::default() };
                client.submit(Method::KvPut as u32, &put.encode_to_vec(), token);
            }
        }
        for client in &workers {
            let got = wait_for(client.completions(), 50);
            let mut tokens: Vec<u64> = got.iter().map(|c| c.token).collect();
            tokens.sort_unstable();
            assert_eq!(tokens, (1..=50).collect::<Vec<_>>());
            for c in got {
                PutResponse::decode(c.result.expect("put answered").as_slice()).unwrap();
            }
        }
        // Errors cross the socket as etcd errors.
        workers[0].submit(Method::KvPut as u32, &PutRequest::default().encode_to_vec(), 99);
        let got = wait_for(workers[0].completions(), 1);
        assert_eq!(got[0].result, Err(EtcdError::EmptyKey));
        // A local caller in the engine process is unaffected.
        let range = RangeRequest { key: "w".into(), range_end: "x".into(), count_only: true, ..Default::default() };
        engine.submit(Method::KvRange as u32, range.encode_to_vec().into(), 5);
        let got = wait_for(engine.completions(), 1);
        assert_eq!(got[0].token, 5);
        assert_eq!(RangeResponse::decode(got[0].result.as_ref().unwrap().as_slice()).unwrap().count, 150);
        server.stop();
        for w in &workers {
            w.close();
        }
        engine.close();
    }

    #[test]
    fn a_worker_that_hangs_up_leaves_no_watch_streams_behind() {
        let dir = tempfile::tempdir().unwrap();
        let engine = Arc::new(Engine::start(EngineConfig::new(dir.path(), 7, 9)).unwrap());
        let name = format!("ketch-test-{}-{}", std::process::id(), line!());
        let server = IpcServer::start(engine.clone(), &name).unwrap();
        let (lost_tx, lost_rx) = crossbeam_channel::bounded(1);
        let client = IpcClient::connect(&name, Box::new(move || lost_tx.send(()).unwrap())).unwrap();
        for token in 1..=3 {
            client.submit(Method::WatchOpen as u32, &[], token);
        }
        // An ordinary request behind the opens: once it is answered, the
        // opens (handled in order on the same connection) have happened.
        client.submit(Method::KvRange as u32, &RangeRequest { key: "a".into(), ..Default::default() }.encode_to_vec(), 9);
        wait_for(client.completions(), 1);
        assert_eq!(engine.shared().watch.stream_count(), 3);
        client.close();
        // Hanging up itself is not losing the engine.
        assert!(lost_rx.recv_timeout(Duration::from_millis(200)).is_err());
        let deadline = Instant::now() + Duration::from_secs(5);
        while engine.shared().watch.stream_count() != 0 {
            assert!(Instant::now() < deadline, "streams of a gone worker were kept");
            std::thread::sleep(Duration::from_millis(5));
        }
        server.stop();
        engine.close();
    }

    #[test]
    fn a_worker_learns_when_the_engine_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let engine = Arc::new(Engine::start(EngineConfig::new(dir.path(), 7, 9)).unwrap());
        let name = format!("ketch-test-{}-{}", std::process::id(), line!());
        let server = IpcServer::start(engine.clone(), &name).unwrap();
        let (tx, rx) = crossbeam_channel::bounded(1);
        let client = IpcClient::connect(&name, Box::new(move || tx.send(()).unwrap())).unwrap();
        // Once the server has accepted (an answer came back), stopping it
        // hangs up on the worker, as the engine process exiting would.
        client.submit(Method::KvRange as u32, &RangeRequest { key: "a".into(), ..Default::default() }.encode_to_vec(), 1);
        wait_for(client.completions(), 1);
        server.stop();
        rx.recv_timeout(Duration::from_secs(5)).expect("on_lost was called");
        client.submit(Method::KvRange as u32, &[], 2);
        assert_eq!(wait_for(client.completions(), 1)[0].result, Err(EtcdError::Stopped));
    }
}
