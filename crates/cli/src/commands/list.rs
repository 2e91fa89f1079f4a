//! `assay list`: evaluations, newest first, as a table or JSON; filters and cursor pages.

use crate::args::{label_arg, status_arg, time_or_ago_arg};
use crate::http::Api;
use crate::render::{err_write, out_write, print_json, render_table};
use anyhow::Result;
use assay_api::MAX_PAGE;
use assay_api::evaluation::{EvaluationPage, ListParams};
use assay_domain::EvaluationStatus;

#[derive(clap::Args, Debug)]
pub struct ListArgs {
    /// Only evaluations with this status.
    #[arg(long, value_parser = status_arg)]
    status: Option<EvaluationStatus>,
    /// Only evaluations with this label.
    #[arg(long, value_name = "KEY=VALUE", value_parser = label_arg)]
    label: Option<(String, String)>,
    /// Only evaluations created after this time (RFC 3339, or a duration ago such as 1h).
    #[arg(long, value_name = "TIME", value_parser = time_or_ago_arg)]
    created_after: Option<String>,
    /// Only evaluations created before this time (RFC 3339, or a duration ago such as 1h).
    #[arg(long, value_name = "TIME", value_parser = time_or_ago_arg)]
    created_before: Option<String>,
    /// Page size (1..=1000) [default: the server's].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_PAGE)))]
    limit: Option<u32>,
    /// Start at this cursor (from a previous page).
    #[arg(long)]
    cursor: Option<String>,
    /// Follow the cursors to the last page.
    #[arg(long)]
    all: bool,
    /// Print the JSON (`{"items": [...], "next_cursor": ...}`).
    #[arg(long)]
    json: bool,
}

pub async fn run(a: ListArgs, api: &Api) -> Result<u8> {
    let mut params = ListParams {
        status: a.status.map(|s| s.as_str().to_string()),
        label: a.label.map(|(k, v)| format!("{k}={v}")),
        created_after: a.created_after,
        created_before: a.created_before,
        cursor: a.cursor,
        limit: a.limit,
    };
    let mut items = Vec::new();
    let next_cursor = loop {
        let page = api.list_page(&params).await?;
        items.extend(page.items);
        match page.next_cursor.filter(|c| !c.is_empty()) {
            Some(c) if a.all => params.cursor = Some(c),
            other => break other,
        }
    };
    if a.json {
        print_json(&EvaluationPage { items, next_cursor })?;
        return Ok(0);
    }
    if items.is_empty() {
        err_write(b"no evaluations\n")?;
    } else {
        out_write(render_table(&items).as_bytes())?;
    }
    if let Some(c) = next_cursor {
        err_write(format!("more: --cursor {c}, or --all\n").as_bytes())?;
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, Parser};

    #[derive(Parser)]
    struct TestCli {
        #[command(flatten)]
        list: ListArgs,
    }

    #[test]
    fn flags_parse() {
        TestCli::command().debug_assert();
        let a =
            TestCli::try_parse_from(["list", "--status", "timed_out", "--label", "k=v", "--all"])
                .unwrap()
                .list;
        assert_eq!(a.status, Some(EvaluationStatus::TimedOut));
        assert_eq!(a.label, Some(("k".into(), "v".into())));
        assert!(a.all);
        assert!(TestCli::try_parse_from(["list", "--status", "bogus"]).is_err());
        assert!(TestCli::try_parse_from(["list", "--limit", "1001"]).is_err());
    }
}
