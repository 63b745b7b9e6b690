//! The secrets this process knows (what the deploy file's references and backend settings
//! hold secret), and the redaction of everything the command prints with them: its output,
//! its errors and its log. The executor redacts events and outcomes itself, and the state
//! store keeps references, so what `status`, `history` and `report` read holds none.

use std::io::Write;
use std::sync::LazyLock;

use bluegreen_core::secrets::Secrets;

/// Filled when a deploy file is read ([`crate::specfile::load`]); shared with the log writer
/// installed before that.
pub(crate) static SECRETS: LazyLock<Secrets> = LazyLock::new(Secrets::new);

/// `text` with every known secret shown as `***`.
pub(crate) fn redact(text: &str) -> String {
    SECRETS.redact(text).into_owned()
}

/// The log's writer: stderr, each formatted line redacted before it is written.
#[derive(Clone, Copy)]
pub(crate) struct Stderr;

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Stderr {
    type Writer = Stderr;

    fn make_writer(&'a self) -> Self::Writer {
        Stderr
    }
}

impl Write for Stderr {
    /// The log formats each line into one buffer and writes it whole: the buffer is redacted
    /// whole, so a secret is never cut in two across writes.
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        std::io::stderr().lock().write_all(SECRETS.redact(&text).as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}
