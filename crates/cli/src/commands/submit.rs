//! `assay submit`: one program to the server; its id, or (waiting or following) its result.

use crate::args::{LimitArgs, label_arg};
use crate::events::{StreamMode, follow};
use crate::http::{Api, REQUEST_TIMEOUT};
use crate::output::{whole, write_rest, write_streams};
use crate::program::{SubmitOptions, build_submission};
use crate::render::{exit_code_for, out_write, print_json, print_result};
use anyhow::{Result, anyhow};
use assay_api::IDEMPOTENCY_KEY_HEADER;
use assay_api::evaluation::{EvaluationView, SubmitParams, SubmitRequest};
use reqwest::Method;
use std::path::PathBuf;
use std::time::Duration;

/// How long one long-poll (`?wait=`) asks the server to hold the request.
const LONG_POLL_SECS: u64 = 30;

#[derive(clap::Args, Debug)]
pub struct SubmitArgs {
    /// A Python file, or a directory whose files all become the program (entrypoint main.py).
    path: PathBuf,
    /// Wait until the evaluation ends, then print its output and result like `assay run`.
    #[arg(long, conflicts_with = "follow")]
    wait: bool,
    /// Stream the output live until the evaluation ends, then print the result.
    #[arg(long, short = 'f')]
    follow: bool,
    /// Label the evaluation (repeatable).
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = label_arg)]
    labels: Vec<(String, String)>,
    /// File whose content is the program's stdin.
    #[arg(long, value_name = "FILE")]
    stdin: Option<PathBuf>,
    /// Priority, -100..=100 (higher runs first).
    #[arg(long, allow_negative_numbers = true)]
    priority: Option<i32>,
    /// For a directory: the file to run [default: main.py].
    #[arg(long, value_name = "PATH")]
    entrypoint: Option<String>,
    /// Submitting again with the same key returns the first evaluation instead of a new one.
    #[arg(long, value_name = "KEY")]
    idempotency_key: Option<String>,
    /// Print the evaluation as JSON (with --wait or --follow: the final one, and no program
    /// output).
    #[arg(long)]
    json: bool,
    // Last: a help heading carries on to the flags declared after it.
    #[command(flatten, next_help_heading = "Limits")]
    limits: LimitArgs,
}

pub async fn run(a: SubmitArgs, api: &Api) -> Result<u8> {
    let opts = SubmitOptions {
        labels: a.labels,
        stdin: a.stdin,
        limits: a.limits.overrides()?,
        priority: a.priority,
        entrypoint: a.entrypoint,
    };
    let req = build_submission(&a.path, &opts)?;
    let e = post(api, &req, a.idempotency_key.as_deref(), a.wait).await?;
    if !a.wait && !a.follow {
        if a.json {
            print_json(&e)?;
        } else {
            out_write(format!("{}\n", e.id).as_bytes())?;
        }
        return Ok(0);
    }
    let e = if a.wait {
        wait_finished(api, e).await?
    } else {
        let outcome = follow(api, &e.id, StreamMode::UntilResult, !a.json).await?;
        let e = outcome
            .result
            .ok_or_else(|| anyhow!("the event stream ended without a result"))?;
        if !a.json {
            // The live events carry the start of a long stream; the rest comes whole.
            write_rest(api, &e, outcome.shown).await?;
        }
        e
    };
    if a.json {
        print_json(&whole(api, e.clone()).await?)?;
    } else if a.wait {
        // The output whole, byte for byte, then the summary.
        write_streams(api, &e.id, [0, 0]).await?;
        print_result(&e, false)?;
    } else {
        print_result(&e, false)?;
    }
    Ok(exit_code_for(e.status))
}

/// `POST /v1/evaluations`, with `?wait=` when the caller waits anyway.
async fn post(
    api: &Api,
    req: &SubmitRequest,
    idempotency_key: Option<&str>,
    wait: bool,
) -> Result<EvaluationView> {
    let (params, timeout) = if wait {
        let params = SubmitParams {
            wait: Some(LONG_POLL_SECS),
        };
        (
            params,
            Duration::from_secs(LONG_POLL_SECS) + REQUEST_TIMEOUT,
        )
    } else {
        (SubmitParams::default(), REQUEST_TIMEOUT)
    };
    let mut rb = api
        .req(Method::POST, &["v1", "evaluations"])
        .query(&params)
        .json(req)
        .timeout(timeout);
    if let Some(k) = idempotency_key {
        rb = rb.header(IDEMPOTENCY_KEY_HEADER, k);
    }
    Ok(api.call(rb).await?)
}

/// Polls until the evaluation is terminal, more slowly as it goes on (up to every 2 s).
async fn wait_finished(api: &Api, mut current: EvaluationView) -> Result<EvaluationView> {
    let mut pause = Duration::from_millis(200);
    while !current.status.is_terminal() {
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(2));
        current = api.evaluation(&current.id).await?;
    }
    Ok(current)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, Parser};

    #[derive(Parser)]
    struct TestCli {
        #[command(flatten)]
        submit: SubmitArgs,
    }

    fn parse(args: &[&str]) -> Result<SubmitArgs, clap::Error> {
        TestCli::try_parse_from(std::iter::once("submit").chain(args.iter().copied()))
            .map(|c| c.submit)
    }

    #[test]
    fn flags_parse() {
        TestCli::command().debug_assert();
        let a = parse(&[
            "x.py",
            "--wait",
            "--label",
            "a=b",
            "--label=c=d=e",
            "--priority",
            "-5",
            "--timeout",
            "3s",
        ])
        .unwrap();
        assert!(a.wait && !a.follow);
        assert_eq!(
            a.labels,
            vec![("a".into(), "b".into()), ("c".into(), "d=e".into())]
        );
        assert_eq!(a.priority, Some(-5));
        assert_eq!(a.limits.overrides().unwrap().wall_time_ms, Some(3000));
        assert!(parse(&["x.py", "--wait", "--follow"]).is_err());
        assert!(parse(&["x.py", "--label", "nokey"]).is_err());
        let err = parse(&["x.py", "--timeout", "3"])
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("--timeout"), "{err}");
    }
}
