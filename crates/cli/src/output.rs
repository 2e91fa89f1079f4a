//! Whole output streams (`GET /v1/evaluations/{id}/output/{stream}`). An evaluation carries
//! only the first 64 KiB of a longer stream (`stdout_partial`); `assay logs` writes the whole
//! streams byte for byte, `--json` prints evaluations with them, and a followed evaluation
//! whose live stream showed only the preview gets the rest once it ends.

use crate::http::{Api, ApiFailure};
use crate::render::{err_write, out_write};
use anyhow::Result;
use assay_api::evaluation::EvaluationView;
use assay_domain::OutputStream;
use futures::StreamExt;
use reqwest::Method;
use reqwest::header::RANGE;

fn name(stream: OutputStream) -> &'static str {
    match stream {
        OutputStream::Stdout => "stdout",
        OutputStream::Stderr => "stderr",
    }
}

/// Streams one output stream from byte `from` on to `sink`, chunk by chunk (never whole in
/// memory). Nothing past `from` is not an error.
async fn read(
    api: &Api,
    id: &str,
    stream: OutputStream,
    from: u64,
    mut sink: impl FnMut(&[u8]) -> Result<()>,
) -> Result<()> {
    let mut rb = api.req(
        Method::GET,
        &["v1", "evaluations", id, "output", name(stream)],
    );
    if from > 0 {
        rb = rb.header(RANGE, format!("bytes={from}-"));
    }
    let resp = match api.send(rb).await {
        Ok(resp) => resp,
        Err(ApiFailure::Status { status: 416, .. }) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    let mut body = resp.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| ApiFailure::from_reqwest(api.base(), &e))?;
        sink(&chunk)?;
    }
    Ok(())
}

/// Writes a finished evaluation's whole stdout to stdout and stderr to stderr, byte for byte,
/// from `from[0]` and `from[1]` on (bytes already shown).
pub async fn write_streams(api: &Api, id: &str, from: [u64; 2]) -> Result<()> {
    read(api, id, OutputStream::Stdout, from[0], |b| {
        Ok(out_write(b)?)
    })
    .await?;
    read(api, id, OutputStream::Stderr, from[1], |b| {
        Ok(err_write(b)?)
    })
    .await
}

/// The rest of each stream the live events showed only the start of (`shown`: bytes of each
/// stream printed from them), written as [`write_streams`] does.
pub async fn write_rest(api: &Api, e: &EvaluationView, shown: [u64; 2]) -> Result<()> {
    let Some(r) = &e.result else { return Ok(()) };
    if r.stdout_partial {
        read(api, &e.id, OutputStream::Stdout, shown[0], |b| {
            Ok(out_write(b)?)
        })
        .await?;
    }
    if r.stderr_partial {
        read(api, &e.id, OutputStream::Stderr, shown[1], |b| {
            Ok(err_write(b)?)
        })
        .await?;
    }
    Ok(())
}

/// `e` with its whole streams in place of their previews (invalid UTF-8 replaced with U+FFFD,
/// as JSON must be text; `assay logs` gives the bytes).
pub async fn whole(api: &Api, mut e: EvaluationView) -> Result<EvaluationView> {
    let Some(r) = e.result.as_mut() else {
        return Ok(e);
    };
    for (stream, partial, text) in [
        (OutputStream::Stdout, &mut r.stdout_partial, &mut r.stdout),
        (OutputStream::Stderr, &mut r.stderr_partial, &mut r.stderr),
    ] {
        if !*partial {
            continue;
        }
        let mut bytes = Vec::new();
        read(api, &e.id, stream, 0, |b| {
            bytes.extend_from_slice(b);
            Ok(())
        })
        .await?;
        *text = String::from_utf8_lossy(&bytes).into_owned();
        *partial = false;
    }
    Ok(e)
}
