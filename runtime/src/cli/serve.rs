//! `glimpse serve`: the serial console.

use std::path::Path;
use std::sync::atomic::AtomicBool;

use glimpse_runtime::Glimpse;
use glimpse_runtime::console::{SerialWire, ServeOptions, StdioWire, Wire, serve};
use glimpse_runtime::source::FrameSource;

pub fn run(
    g: &Glimpse,
    source: Box<dyn FrameSource>,
    serial: &Path,
    baud: u32,
    json: bool,
    views: usize,
    stop: &AtomicBool,
) -> Result<(), String> {
    let mut wire: Box<dyn Wire> = if serial == Path::new("-") {
        Box::new(StdioWire::new())
    } else {
        Box::new(SerialWire::open(serial, baud).map_err(|e| e.to_string())?)
    };
    let stats = serve(g, source, wire.as_mut(), ServeOptions { json, views }, stop)?;
    glimpse_runtime::note!(
        "glimpse: served {} answers ({} errors, {} rejected lines)",
        stats.answered,
        stats.errors,
        stats.rejected_lines
    );
    Ok(())
}
