//! Inspect: answers every request with an HTML page that shows the request itself: the
//! method, path and query, the form fields of the query and of an urlencoded body, the body
//! (its size and first 4 KiB), and every CGI param the web server sent, in arrival order.
//! The page has a GET form and a POST form, so a browser can send it requests of both kinds.
//! `bash scripts/demo.sh` runs it behind nginx.
//!
//! ```text
//! cargo run --release --example inspect -- --listen 127.0.0.1:9000 [--transport smol]
//! ```

mod common;

use std::fmt::Write as _;
use std::process::ExitCode;

use ember_fcgi::form;
use ember_fcgi::prelude::*;
use ember_fcgi::server::Limits;

/// How much of the body the page shows; the rest is counted, not kept.
const SHOWN_BODY: usize = 4096;

struct Inspect;

/// Appends `text` to `out` with `&`, `<`, `>`, `"` and `'` escaped for HTML.
fn escape(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
}

/// Bytes as text for the page (invalid UTF-8 shows as U+FFFD), escaped.
fn escape_bytes(out: &mut String, bytes: &[u8]) {
    escape(out, &String::from_utf8_lossy(bytes));
}

/// One table row: a header cell and an escaped value.
fn row(out: &mut String, name: &str, value: &[u8]) {
    out.push_str("<tr><th>");
    escape(out, name);
    out.push_str("</th><td><code>");
    escape_bytes(out, value);
    out.push_str("</code></td></tr>\n");
}

/// The fields of an `application/x-www-form-urlencoded` string, decoded, one row each
/// (`name = value`) under the row they came from.
fn field_rows(out: &mut String, encoded: &[u8]) {
    for (name, value) in form::parse(encoded) {
        out.push_str("<tr><th></th><td><code>");
        escape(out, &name);
        out.push_str("</code> = <code>");
        escape(out, &value);
        out.push_str("</code></td></tr>\n");
    }
}

/// The body: its total length and its first `SHOWN_BODY` bytes.
async fn read_body(req: &mut Request<'_>) -> Result<(u64, Vec<u8>), StreamError> {
    let mut shown = Vec::new();
    let mut total = 0u64;
    let mut buf = [0u8; 4096];
    loop {
        let n = req.read(&mut buf).await?;
        if n == 0 {
            return Ok((total, shown));
        }
        total += n as u64;
        let room = SHOWN_BODY.saturating_sub(shown.len()).min(n);
        shown.extend_from_slice(&buf[..room]);
    }
}

const STYLE: &str = "body{font-family:sans-serif;max-width:60em;margin:2em auto;padding:0 1em}\
    th,td{text-align:left;vertical-align:top;padding:.15em .8em .15em 0}\
    code,pre{white-space:pre-wrap;word-break:break-all}\
    form{margin:.6em 0}input,textarea{margin-right:.4em}";

impl Handler for Inspect {
    async fn handle(&self, req: &mut Request<'_>, res: &mut Response<'_>) -> Result<(), HandlerError> {
        let (body_length, body) = read_body(req).await?;
        let params = req.params();
        let method = params.request_method().unwrap_or("?");
        let uri = params.request_uri().unwrap_or("/");
        let path = uri.split('?').next().unwrap_or("/");
        let query = params.query_string();
        let content_type = params.content_type().unwrap_or("");

        let mut page = String::with_capacity(8192);
        page += "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>";
        escape(&mut page, &format!("{method} {uri}"));
        let _ = write!(page, "</title><style>{STYLE}</style></head>\n<body>\n<h1><code>");
        escape(&mut page, &format!("{method} {uri}"));
        page += "</code></h1>\n<p>This page was written by the <code>inspect</code> example of \
                 ember-fcgi, from what the web server passed on over FastCGI.</p>\n<table>\n";
        row(&mut page, "method", method.as_bytes());
        row(&mut page, "path", path.as_bytes());
        row(&mut page, "query", query.as_bytes());
        field_rows(&mut page, query.as_bytes());
        let size = format!("{body_length} bytes");
        row(&mut page, "body", size.as_bytes());
        if body_length > 0 {
            row(&mut page, "content type", content_type.as_bytes());
            if content_type.starts_with("application/x-www-form-urlencoded") {
                field_rows(&mut page, &body);
            }
        }
        page += "</table>\n";
        if body_length > 0 {
            let shown = if body.len() as u64 == body_length { "the body" } else { "its first 4 KiB" };
            let _ = write!(page, "<h2>{shown}</h2>\n<pre>");
            escape_bytes(&mut page, &body);
            page += "</pre>\n";
        }
        page += "<h2>Send another</h2>\n\
                 <form method=\"get\" action=\"\"><input name=\"q\" placeholder=\"a query field\">\
                 <button>GET</button></form>\n\
                 <form method=\"post\" action=\"\"><input name=\"name\" placeholder=\"name\">\
                 <input name=\"message\" placeholder=\"message\"><button>POST</button></form>\n\
                 <h2>Every CGI param, in the order received</h2>\n<table>\n";
        for (name, value) in params.iter() {
            row(&mut page, &String::from_utf8_lossy(name), value);
        }
        page += "</table>\n</body></html>\n";
        Ok(res.send_response(200, content_type::HTML, page.as_bytes()).await?)
    }
}

fn main() -> ExitCode {
    let args = common::parse_args("inspect", &[]);
    common::serve(&args, Inspect, Limits::default())
}
