//! The local terminal: raw mode while recording interactively, restored on every way out, and notices that read
//! well whether or not the terminal is raw.

use std::io::{IsTerminal, Write};
use std::sync::Once;
use std::sync::atomic::{AtomicBool, Ordering};

/// Whether this process put the terminal in raw mode (so notices need `\r\n`, and exits need a restore).
static RAW: AtomicBool = AtomicBool::new(false);

/// Prints `cmdop: <message>` on stderr, on a line of its own even when the terminal is raw.
pub fn notice(message: impl std::fmt::Display) {
    let end = if RAW.load(Ordering::SeqCst) { "\r\n" } else { "\n" };
    // One write: stderr is unbuffered, so `write!` would issue one per piece, and the command's mirrored output
    // (on stdout, the same terminal) could land between them.
    let line = format!("cmdop: {message}{end}");
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(line.as_bytes());
    let _ = err.flush();
}

/// Puts the terminal back as it was, if this process made it raw. Safe to call more than once, from anywhere.
pub fn restore() {
    if RAW.swap(false, Ordering::SeqCst) {
        let _ = crossterm::terminal::disable_raw_mode();
    }
}

/// Raw mode for as long as this lives.
pub struct RawMode(());

impl RawMode {
    /// Makes the terminal raw so that every key (Ctrl-C included) reaches the command as bytes. `None` when stdin
    /// is not a terminal: then input is passed through as it comes.
    pub fn enable() -> anyhow::Result<Option<RawMode>> {
        if !std::io::stdin().is_terminal() {
            return Ok(None);
        }
        install_panic_hook();
        crossterm::terminal::enable_raw_mode()
            .map_err(|e| anyhow::anyhow!("cannot put the terminal in raw mode ({e}); use --headless"))?;
        RAW.store(true, Ordering::SeqCst);
        Ok(Some(RawMode(())))
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        restore();
    }
}

/// The local terminal's size as (cols, rows), if there is one.
pub fn size() -> Option<(u16, u16)> {
    match crossterm::terminal::size() {
        Ok((cols, rows)) if cols > 0 && rows > 0 => Some((cols, rows)),
        _ => None,
    }
}

/// A panic must not leave the user's terminal raw: restore it before the message is printed.
fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore();
            previous(info);
        }));
    });
}
