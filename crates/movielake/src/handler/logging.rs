//! Where `serve` writes its log lines, for the Functions host.
//!
//! The host reads a custom handler's two streams differently (azure-functions-host,
//! `WorkerProcess.ParseErrorMessageAndLog`): a stdout line is logged as Information, a stderr
//! line as a Warning when it contains "warn" (any case) and as an Error otherwise. Writing
//! everything to stderr made every line an Error in Application Insights. So: warnings and
//! errors go to stderr (a warning line carries the level `WARN`), everything else to stdout.

use tracing::Level;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::fmt::writer::MakeWriterExt;

/// Warnings and errors to stderr, info, debug and trace to stdout.
pub fn host_streams() -> impl for<'a> MakeWriter<'a> + Send + Sync + 'static {
    split(std::io::stdout, std::io::stderr)
}

/// Warnings and errors to `failures`, everything else to `information`.
fn split<I, F>(information: I, failures: F) -> impl for<'a> MakeWriter<'a> + Send + Sync + 'static
where
    I: for<'a> MakeWriter<'a> + Send + Sync + 'static,
    F: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    failures.with_max_level(Level::WARN).or_else(information)
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .map_err(|_| std::io::Error::other("poisoned"))?
                .extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Buffer {
        type Writer = Buffer;
        fn make_writer(&'a self) -> Buffer {
            self.clone()
        }
    }

    impl Buffer {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().expect("buffer").clone()).expect("utf-8")
        }
    }

    #[test]
    fn information_goes_to_stdout_warnings_and_errors_to_stderr() {
        let (stdout, stderr) = (Buffer::default(), Buffer::default());
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(Level::TRACE)
            .with_ansi(false)
            .with_writer(split(stdout.clone(), stderr.clone()))
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::trace!("t-line");
            tracing::debug!("d-line");
            tracing::info!("i-line");
            tracing::warn!("w-line");
            tracing::error!("e-line");
        });
        let (out, err) = (stdout.text(), stderr.text());
        for line in ["t-line", "d-line", "i-line"] {
            assert!(
                out.contains(line) && !err.contains(line),
                "{line}: stdout {out:?} stderr {err:?}"
            );
        }
        for line in ["w-line", "e-line"] {
            assert!(
                err.contains(line) && !out.contains(line),
                "{line}: stdout {out:?} stderr {err:?}"
            );
        }
        // The host tells a warning from an error by the word "warn" in the stderr line.
        let warn_line = err.lines().find(|l| l.contains("w-line")).expect("warning line");
        assert!(warn_line.to_lowercase().contains("warn"), "{warn_line}");
        let error_line = err.lines().find(|l| l.contains("e-line")).expect("error line");
        assert!(!error_line.to_lowercase().contains("warn"), "{error_line}");
    }
}
