//! The byte pipe the console talks over: a serial port (8N1) or stdin/stdout.

use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serialport::{DataBits, FlowControl, Parity, SerialPort, StopBits};

/// How long a read waits for input, and a write for the line to drain.
pub const IO_TIMEOUT: Duration = Duration::from_millis(100);

pub trait Wire {
    /// Reads what is there; `ErrorKind::TimedOut` when nothing came in [`IO_TIMEOUT`].
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize>;
    /// Writes all of `bytes`, or fails with `TimedOut` when nobody drains the line.
    fn write(&mut self, bytes: &[u8]) -> io::Result<()>;
    /// Reopens after the port failed.
    fn reopen(&mut self) -> io::Result<()>;
    /// Delivers what was written before the session ends; fails if it could not be.
    fn finish(&mut self) -> io::Result<()> {
        Ok(())
    }
    /// Whether end of input means the session is over (a pipe) rather than line noise.
    fn ends_at_eof(&self) -> bool;
    /// Whether typed characters should be echoed (a terminal in cooked mode echoes itself).
    fn wants_echo(&self) -> bool;
    fn describe(&self) -> String;
}

/// A serial port at `baud`, 8 data bits, no parity, 1 stop bit, no flow control.
pub struct SerialWire {
    path: PathBuf,
    baud: u32,
    port: Box<dyn SerialPort>,
}

fn open_port(path: &std::path::Path, baud: u32) -> io::Result<Box<dyn SerialPort>> {
    serialport::new(path.to_string_lossy(), baud)
        .data_bits(DataBits::Eight)
        .parity(Parity::None)
        .stop_bits(StopBits::One)
        .flow_control(FlowControl::None)
        .timeout(IO_TIMEOUT)
        .open()
        .map_err(|e| io::Error::other(format!("cannot open serial port {}: {e}", path.display())))
}

impl SerialWire {
    pub fn open(path: impl Into<PathBuf>, baud: u32) -> io::Result<SerialWire> {
        let path = path.into();
        let port = open_port(&path, baud)?;
        Ok(SerialWire { path, baud, port })
    }
}

impl Wire for SerialWire {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.port.read(buf)
    }

    fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.port.write_all(bytes)?;
        self.port.flush()
    }

    fn reopen(&mut self) -> io::Result<()> {
        self.port = open_port(&self.path, self.baud)?;
        Ok(())
    }

    fn ends_at_eof(&self) -> bool {
        false
    }

    fn wants_echo(&self) -> bool {
        true
    }

    fn describe(&self) -> String {
        format!("serial {} at {} 8N1", self.path.display(), self.baud)
    }
}

/// stdin and stdout (`--serial -`): a reader thread hands over chunks through a bounded
/// channel, so reads can time out like a port's; a writer thread takes output through
/// another, so a write to a stdout nobody reads times out instead of blocking forever.
pub struct StdioWire {
    chunks: Receiver<Vec<u8>>,
    pending: Vec<u8>,
    eof: bool,
    output: Option<SyncSender<Vec<u8>>>,
    writer: Option<std::thread::JoinHandle<()>>,
    /// Why stdout failed, once it did (its reader went away, the disk is full).
    failed: Arc<Mutex<Option<io::ErrorKind>>>,
}

/// Writes what comes through `rx` to `out` until it fails; the failure is kept in `failed`.
fn write_all_from(
    rx: Receiver<Vec<u8>>,
    mut out: impl Write,
    failed: Arc<Mutex<Option<io::ErrorKind>>>,
) {
    for bytes in rx {
        if let Err(e) = out.write_all(&bytes).and_then(|()| out.flush()) {
            *failed.lock().unwrap_or_else(|e| e.into_inner()) = Some(e.kind());
            return;
        }
    }
}

impl StdioWire {
    pub fn new() -> StdioWire {
        StdioWire::with_output(io::stdout())
    }

    /// stdin, with output to `out` instead of stdout.
    pub fn with_output(out: impl Write + Send + 'static) -> StdioWire {
        let (output, rx) = sync_channel::<Vec<u8>>(16);
        let failed = Arc::new(Mutex::new(None));
        let writer_failed = failed.clone();
        let writer = std::thread::spawn(move || write_all_from(rx, out, writer_failed));
        let (tx, rx): (SyncSender<Vec<u8>>, _) = sync_channel(8);
        std::thread::spawn(move || {
            let mut stdin = io::stdin().lock();
            let mut buf = [0u8; 1024];
            loop {
                match stdin.read(&mut buf) {
                    Ok(0) | Err(_) => {
                        let _ = tx.send(Vec::new());
                        return;
                    }
                    Ok(n) => {
                        if tx.send(buf[..n].to_vec()).is_err() {
                            return;
                        }
                    }
                }
            }
        });
        StdioWire {
            chunks: rx,
            pending: Vec::new(),
            eof: false,
            output: Some(output),
            writer: Some(writer),
            failed,
        }
    }
}

/// Hands `bytes` to a writer thread through `tx`, waiting at most [`IO_TIMEOUT`] for room:
/// `TimedOut` when the writer is stuck (nobody reads), the writer's own error once it
/// has failed.
fn send_with_timeout(
    tx: &SyncSender<Vec<u8>>,
    bytes: &[u8],
    failed: &Mutex<Option<io::ErrorKind>>,
) -> io::Result<()> {
    let deadline = Instant::now() + IO_TIMEOUT;
    let mut bytes = bytes.to_vec();
    loop {
        match tx.try_send(bytes) {
            Ok(()) => return Ok(()),
            Err(TrySendError::Disconnected(_)) => {
                let kind = failed
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .unwrap_or(io::ErrorKind::BrokenPipe);
                return Err(io::Error::new(kind, "the output was closed"));
            }
            Err(TrySendError::Full(back)) => {
                if Instant::now() >= deadline {
                    return Err(io::ErrorKind::TimedOut.into());
                }
                bytes = back;
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }
}

impl Default for StdioWire {
    fn default() -> Self {
        Self::new()
    }
}

impl Wire for StdioWire {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pending.is_empty() {
            if self.eof {
                return Ok(0);
            }
            match self.chunks.recv_timeout(IO_TIMEOUT) {
                Ok(c) if c.is_empty() => {
                    self.eof = true;
                    return Ok(0);
                }
                Ok(c) => self.pending = c,
                Err(RecvTimeoutError::Timeout) => return Err(io::ErrorKind::TimedOut.into()),
                Err(RecvTimeoutError::Disconnected) => return Ok(0),
            }
        }
        let n = buf.len().min(self.pending.len());
        buf[..n].copy_from_slice(&self.pending[..n]);
        self.pending.drain(..n);
        Ok(n)
    }

    fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        match &self.output {
            Some(tx) => send_with_timeout(tx, bytes, &self.failed),
            None => Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the session has finished",
            )),
        }
    }

    /// Closes the output and waits (a few seconds at most) until the writer has written
    /// everything queued.
    fn finish(&mut self) -> io::Result<()> {
        self.output = None;
        if let Some(writer) = self.writer.take() {
            let deadline = Instant::now() + Duration::from_secs(5);
            while !writer.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            if !writer.is_finished() {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the last output was not read within 5 s",
                ));
            }
        }
        match *self.failed.lock().unwrap_or_else(|e| e.into_inner()) {
            Some(kind) => Err(io::Error::new(kind, "the output was closed")),
            None => Ok(()),
        }
    }

    fn reopen(&mut self) -> io::Result<()> {
        Err(io::Error::other("stdin cannot be reopened"))
    }

    fn ends_at_eof(&self) -> bool {
        true
    }

    fn wants_echo(&self) -> bool {
        false
    }

    fn describe(&self) -> String {
        "stdin/stdout".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer that never returns, like stdout into a pipe nobody reads.
    struct Stuck;
    impl Write for Stuck {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            std::thread::sleep(Duration::from_secs(3600));
            Ok(0)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// A writer whose reader has gone.
    struct Closed;
    impl Write for Closed {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::ErrorKind::BrokenPipe.into())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn writes_nobody_drains_time_out_instead_of_blocking() {
        let (tx, rx) = sync_channel::<Vec<u8>>(2);
        let failed = Arc::new(Mutex::new(None));
        let f = failed.clone();
        std::thread::spawn(move || write_all_from(rx, Stuck, f));
        let results: Vec<_> = (0..6)
            .map(|_| send_with_timeout(&tx, b"line\n", &failed).map_err(|e| e.kind()))
            .collect();
        // the writer holds one, the channel two; the rest time out
        assert!(results[..3].iter().all(|r| r.is_ok()), "{results:?}");
        assert_eq!(results[5], Err(io::ErrorKind::TimedOut));
    }

    #[test]
    fn a_closed_output_is_reported_as_such() {
        let (tx, rx) = sync_channel::<Vec<u8>>(2);
        let failed = Arc::new(Mutex::new(None));
        let f = failed.clone();
        let writer = std::thread::spawn(move || write_all_from(rx, Closed, f));
        let _ = send_with_timeout(&tx, b"first\n", &failed);
        writer.join().unwrap();
        let e = send_with_timeout(&tx, b"second\n", &failed).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::BrokenPipe);
    }
}
