//! Logs on stderr through `tracing`: quiet by default, colour only on a
//! terminal, and one event always one line.
//!
//! Log lines quote what clients sent (an email, a malformed message). The
//! libraries escape what they quote, and this sink makes it hold for every
//! line whatever a library forgot: a newline or carriage return inside an
//! event is written as `\n` / `\r`, so text from outside can never start a
//! line of its own that looks like the gateway's.

use std::io::{IsTerminal, Write};

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

/// Installs the subscriber: `warn` unless `-v` (info) or `-vv` (debug); `RUST_LOG` overrides.
pub fn init(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let colour = std::io::stderr().is_terminal();
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_writer(OneLine { colour })
        .init();
}

/// Makes a [`LineWriter`] on stderr for each event.
#[derive(Clone, Copy)]
struct OneLine {
    colour: bool,
}

impl<'a> MakeWriter<'a> for OneLine {
    type Writer = LineWriter<std::io::StderrLock<'static>>;

    fn make_writer(&'a self) -> Self::Writer {
        LineWriter {
            out: std::io::stderr().lock(),
            colour: self.colour,
        }
    }
}

/// Writes one formatted event (the formatter writes each in one call) with
/// its control characters escaped, but for the final newline (and, on a
/// terminal, the escape sequences that colour it).
struct LineWriter<W> {
    out: W,
    colour: bool,
}

impl<W: Write> Write for LineWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let body = buf.strip_suffix(b"\n").unwrap_or(buf);
        let mut start = 0;
        for (i, &b) in body.iter().enumerate() {
            let escaped: &[u8] = match b {
                b'\n' => b"\\n",
                b'\r' => b"\\r",
                0x1b if self.colour => continue,
                b'\t' => continue,
                0..=0x1f | 0x7f => b"?",
                _ => continue,
            };
            self.out.write_all(&body[start..i])?;
            self.out.write_all(escaped)?;
            start = i + 1;
        }
        self.out.write_all(&body[start..])?;
        if body.len() < buf.len() {
            self.out.write_all(b"\n")?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(text: &str, colour: bool) -> String {
        let mut w = LineWriter {
            out: Vec::new(),
            colour,
        };
        w.write_all(text.as_bytes()).unwrap();
        String::from_utf8(w.out).unwrap()
    }

    #[test]
    fn an_event_is_one_line_whatever_it_quotes() {
        let forged = "WARN refused: unknown field `x\nINFO gateway: admin@x.test logged in`\n";
        assert_eq!(
            written(forged, false),
            "WARN refused: unknown field `x\\nINFO gateway: admin@x.test logged in`\n"
        );
        assert_eq!(written("a\r\u{1b}[31mb\tc\n", false), "a\\r?[31mb\tc\n");
        assert_eq!(
            written("\u{1b}[33m WARN\u{1b}[0m x\n", true),
            "\u{1b}[33m WARN\u{1b}[0m x\n"
        );
    }
}
