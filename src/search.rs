//! `nevermore search`: a terminal client of the search API.

use crate::cli::{ColorChoice, SearchArgs};
use anyhow::{Context as _, bail};
use serde_json::Value;
use std::io::{IsTerminal as _, Write as _};

const BOLD_RED: &str = "\x1b[1;31m";
const DIM: &str = "\x1b[2m";
const CYAN: &str = "\x1b[36m";
const RESET: &str = "\x1b[0m";

pub async fn run(args: SearchArgs) -> anyhow::Result<()> {
    let color = match args.color {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => {
            std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none()
        }
    };
    let client = reqwest::Client::builder()
        .build()
        .context("cannot build the HTTP client")?;
    let base = args.server.trim_end_matches('/').to_string();
    if args.follow {
        return follow(&client, &base, &args, color).await;
    }
    let mut params: Vec<(&str, String)> = vec![
        ("q", args.query.clone()),
        ("start", format!("now-{}", args.since)),
        ("limit", args.limit.to_string()),
        (
            "order",
            if args.reverse {
                "asc".into()
            } else {
                "desc".into()
            },
        ),
    ];
    if let Some(until) = &args.until {
        params.push(("end", until.clone()));
    }
    let body = get_json(
        &client,
        &format!("{base}/api/v1/logs/search"),
        &params,
        &args.token,
    )
    .await?;
    let hits = body
        .get("hits")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let highlights = body
        .get("highlights")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut out = std::io::stdout().lock();
    for (i, hit) in hits.iter().enumerate() {
        let spans = highlights.get(i).cloned().unwrap_or(Value::Null);
        print_record(&mut out, hit, &spans, args.json, color)?;
    }
    if !args.json {
        let total = body.get("total").and_then(Value::as_u64).unwrap_or(0);
        let more = if body.get("next").is_some_and(|n| !n.is_null()) {
            " (more: raise --limit)"
        } else {
            ""
        };
        eprintln!(
            "{} of {total} records in the last {}{more}",
            hits.len(),
            args.since
        );
    }
    Ok(())
}

async fn get_json(
    client: &reqwest::Client,
    url: &str,
    params: &[(&str, String)],
    token: &Option<String>,
) -> anyhow::Result<Value> {
    let mut req = client.get(url).query(params);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req
        .send()
        .await
        .with_context(|| format!("cannot reach {url}"))?;
    let status = resp.status();
    let body: Value = resp
        .json()
        .await
        .context("the server's answer is not JSON")?;
    if !status.is_success() {
        bail!("{}", error_text(&body, status));
    }
    Ok(body)
}

fn error_text(body: &Value, status: reqwest::StatusCode) -> String {
    let e = body.get("error");
    let msg = e
        .and_then(|e| e.get("message"))
        .and_then(Value::as_str)
        .unwrap_or("request failed");
    let code = e
        .and_then(|e| e.get("code"))
        .and_then(Value::as_str)
        .unwrap_or("");
    format!("{status} {code}: {msg}")
}

/// Prints records as they arrive from `/api/v1/logs/tail` (Server-Sent Events).
async fn follow(
    client: &reqwest::Client,
    base: &str,
    args: &SearchArgs,
    color: bool,
) -> anyhow::Result<()> {
    let url = format!("{base}/api/v1/logs/tail");
    let mut req = client.get(&url).query(&[("q", args.query.as_str())]);
    if let Some(t) = &args.token {
        req = req.bearer_auth(t);
    }
    let mut resp = req
        .send()
        .await
        .with_context(|| format!("cannot reach {url}"))?;
    if !resp.status().is_success() {
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        bail!("{}", error_text(&body, status));
    }
    let mut pending: Vec<u8> = Vec::new();
    let mut event = String::new();
    let mut data = String::new();
    while let Some(chunk) = resp.chunk().await.context("the live tail broke off")? {
        pending.extend_from_slice(&chunk);
        while let Some(nl) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=nl).collect();
            let line = String::from_utf8_lossy(&line);
            let line = line.trim_end_matches(['\n', '\r']);
            if line.is_empty() {
                if event == "record"
                    && let Ok(rec) = serde_json::from_str::<Value>(&data)
                {
                    let mut out = std::io::stdout().lock();
                    print_record(&mut out, &rec, &Value::Null, args.json, color)?;
                    out.flush()?;
                } else if event == "error" {
                    eprintln!("nevermore search: {data}");
                }
                event.clear();
                data.clear();
            } else if let Some(v) = line.strip_prefix("event:") {
                event = v.trim().to_string();
            } else if let Some(v) = line.strip_prefix("data:") {
                data.push_str(v.strip_prefix(' ').unwrap_or(v));
            }
        }
    }
    Ok(())
}

fn print_record(
    out: &mut impl std::io::Write,
    rec: &Value,
    spans: &Value,
    json: bool,
    color: bool,
) -> std::io::Result<()> {
    if json {
        return writeln!(out, "{rec}");
    }
    let s = |p: &str| rec.pointer(p).and_then(Value::as_str).unwrap_or("");
    let ts = s("/@timestamp");
    // Milliseconds are enough on a terminal.
    let ts = ts
        .get(..23)
        .map_or_else(|| ts.to_string(), |t| format!("{t}Z"));
    let source = if rec.get("kubernetes").is_some() {
        format!(
            "{}/{}/{}",
            s("/kubernetes/namespace"),
            s("/kubernetes/pod/name"),
            s("/kubernetes/container/name")
        )
    } else {
        s("/log/file/path").to_string()
    };
    let level = s("/log/level");
    let msg = s("/message");
    let mut text = String::new();
    let mut at = 0;
    if color {
        for span in spans.as_array().into_iter().flatten() {
            let (Some(a), Some(b)) = (
                span.get(0).and_then(Value::as_u64),
                span.get(1).and_then(Value::as_u64),
            ) else {
                continue;
            };
            let (a, b) = (a as usize, b as usize);
            if a < at || b > msg.len() || !msg.is_char_boundary(a) || !msg.is_char_boundary(b) {
                continue;
            }
            text.push_str(&msg[at..a]);
            text.push_str(BOLD_RED);
            text.push_str(&msg[a..b]);
            text.push_str(RESET);
            at = b;
        }
    }
    text.push_str(&msg[at..]);
    if color {
        let lc = match level {
            "error" | "fatal" => "\x1b[31m",
            "warn" => "\x1b[33m",
            "debug" | "trace" => DIM,
            _ => "\x1b[32m",
        };
        writeln!(
            out,
            "{DIM}{ts}{RESET} {CYAN}{source}{RESET} {lc}{level:5}{RESET} {text}"
        )
    } else {
        writeln!(out, "{ts} {source} {level:5} {text}")
    }
}
