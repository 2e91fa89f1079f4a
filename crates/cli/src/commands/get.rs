//! `assay get`: one evaluation, readable or as JSON.

use crate::http::Api;
use crate::render::{out_write, print_json, render_evaluation};
use anyhow::Result;

#[derive(clap::Args, Debug)]
pub struct GetArgs {
    id: String,
    /// Print the JSON (the API's evaluation, with each output stream whole).
    #[arg(long)]
    json: bool,
}

pub async fn run(a: GetArgs, api: &Api) -> Result<u8> {
    let e = api.evaluation(&a.id).await?;
    if a.json {
        print_json(&crate::output::whole(api, e).await?)?;
    } else {
        out_write(render_evaluation(&e).as_bytes())?;
    }
    Ok(0)
}
