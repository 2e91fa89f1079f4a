//! `assay cancel`: a queued evaluation at once, a running one by killing its sandbox.

use crate::http::{Api, REQUEST_TIMEOUT};
use crate::render::{out_write, print_json};
use anyhow::Result;
use assay_api::evaluation::EvaluationView;
use reqwest::Method;

#[derive(clap::Args, Debug)]
pub struct CancelArgs {
    id: String,
    /// Print the evaluation as JSON.
    #[arg(long)]
    json: bool,
}

pub async fn run(a: CancelArgs, api: &Api) -> Result<u8> {
    let e: EvaluationView = api
        .call(
            api.req(Method::POST, &["v1", "evaluations", &a.id, "cancel"])
                .timeout(REQUEST_TIMEOUT),
        )
        .await?;
    if a.json {
        print_json(&e)?;
    } else if e.status.is_terminal() {
        out_write(format!("{}: {}\n", e.id, e.status).as_bytes())?;
    } else {
        out_write(format!("{}: cancel requested ({} now)\n", e.id, e.status).as_bytes())?;
    }
    Ok(0)
}
