//! One output stream of a run: what is kept (up to the output limit), what is sent as events,
//! and whether more came. Shared by the engine and the fake, so that both cap output alike.

use crate::sandbox::RunEvent;
use assay_domain::OutputStream;
use tokio::sync::mpsc::UnboundedSender;

pub(crate) struct Capture {
    stream: OutputStream,
    limit: usize,
    /// Bytes of `kept` at most (the rest is only sent as events).
    retain: usize,
    /// Bytes accepted under the limit so far.
    seen: usize,
    pub(crate) kept: Vec<u8>,
    pub(crate) truncated: bool,
    pub(crate) eof: bool,
}

impl Capture {
    pub(crate) fn new(stream: OutputStream, limit: u64, retain: Option<u64>) -> Capture {
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        Capture {
            stream,
            limit,
            retain: retain.map_or(limit, |r| usize::try_from(r).unwrap_or(usize::MAX)),
            seen: 0,
            kept: Vec::new(),
            truncated: false,
            eof: false,
        }
    }

    /// Takes one read's result from the stream's pipe (`Ok(0)` or an error is its end).
    /// Returns true the first time the limit is exceeded.
    pub(crate) fn take(
        &mut self,
        r: std::io::Result<usize>,
        buf: &[u8],
        events: &Option<UnboundedSender<RunEvent>>,
    ) -> bool {
        match r {
            Ok(0) | Err(_) => {
                self.eof = true;
                false
            }
            Ok(n) => self.push(&buf[..n], events),
        }
    }

    /// Takes one chunk the program wrote: keeps and sends what fits under the limit. Returns
    /// true the first time the limit is exceeded.
    pub(crate) fn push(&mut self, data: &[u8], events: &Option<UnboundedSender<RunEvent>>) -> bool {
        let room = self.limit - self.seen;
        let keep = data.len().min(room);
        if keep > 0 {
            self.seen += keep;
            let retain = keep.min(self.retain.saturating_sub(self.kept.len()));
            self.kept.extend_from_slice(&data[..retain]);
            if let Some(tx) = events {
                let _ = tx.send(RunEvent::Output {
                    stream: self.stream,
                    data: data[..keep].to_vec(),
                });
            }
        }
        if keep < data.len() && !self.truncated {
            self.truncated = true;
            return true;
        }
        false
    }

    /// Bytes sent so far (under the limit).
    pub(crate) fn sent(&self) -> usize {
        self.seen
    }

    /// What was kept, as the result reports it.
    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.kept).into_owned()
    }
}
