//! The byte pipe the console talks over: a serial port (8N1) or stdin/stdout.

use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, sync_channel};
use std::time::Duration;

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
/// channel, so reads can time out like a port's.
pub struct StdioWire {
    chunks: Receiver<Vec<u8>>,
    pending: Vec<u8>,
    eof: bool,
}

impl StdioWire {
    pub fn new() -> StdioWire {
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
        let mut out = io::stdout().lock();
        out.write_all(bytes)?;
        out.flush()
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
