//! Notes: a small JSON service on SQLite, as a real application is built on ember-fcgi.
//! One closure handler (`handler_fn`) shares the database across requests, routes with
//! the `http` bridge, runs every query on the `blocking` thread pool (so it is the same
//! code on mio and smol and never stalls the loop), and lets errors flow with `?`.
//!
//! | request | answer |
//! |---|---|
//! | `GET /` | an HTML page of the latest notes |
//! | `GET /notes` | every note as NDJSON, streamed a page of 100 at a time (flushed after each) |
//! | `POST /notes` with `{"title": "..", "body": ".."}` | `201 Created`, the note as JSON, `Location: /notes/ID` |
//! | `GET /notes/ID` | the note as JSON, or 404 |
//! | `DELETE /notes/ID` | 204, or 404 |
//!
//! Bad input gets `400` (not JSON, missing or empty title, title over 200 or body over
//! 10,000 characters, an id that is not a number, a request the `http` crate rejects),
//! `413` (a body over 16 KiB, refused before it is read when `Content-Length` says so),
//! `405` with `Allow` (another method), `404` (another path). A database error is a 500,
//! its text in the web server's error log.
//!
//! ```text
//! cargo run --release --example notes -- --db /tmp/notes.db --listen 127.0.0.1:9000 [--transport smol]
//! curl -d '{"title":"hi","body":"there"}' http://localhost:8080/notes
//! ```

#[path = "../common/mod.rs"]
mod common;
mod db;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::SystemTime;

use db::{Db, Note};
use ember_fcgi::http::{RequestExt, ResponseExt};
use ember_fcgi::prelude::*;
use ember_fcgi::server::Limits;
use http::{Method, StatusCode, header};
use serde_json::{Value, json};

/// Largest request body read.
const MAX_BODY: usize = 16 * 1024;
/// Longest title and body, in characters.
const MAX_TITLE: usize = 200;
const MAX_TEXT: usize = 10_000;
/// Notes per page of a listing (one trip to the database each).
const PAGE: u32 = 100;

/// What one request asks for.
enum Route {
    Home,
    Notes,
    Note(i64),
}

/// A response to send (errors the client made).
type Reply = http::Response<Vec<u8>>;

fn reply(status: StatusCode, content_type: &str, body: impl Into<Vec<u8>>) -> Reply {
    let mut response = http::Response::new(body.into());
    *response.status_mut() = status;
    if let Ok(value) = header::HeaderValue::from_str(content_type) {
        response.headers_mut().insert(header::CONTENT_TYPE, value);
    }
    response
}

fn json_reply(status: StatusCode, value: &Value) -> Reply {
    let mut text = value.to_string();
    text.push('\n');
    reply(status, content_type::JSON, text)
}

fn problem(status: StatusCode, message: &str) -> Reply {
    json_reply(status, &json!({ "error": message }))
}

fn not_allowed(allow: &'static str) -> Reply {
    let mut response = problem(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
    response.headers_mut().insert(header::ALLOW, header::HeaderValue::from_static(allow));
    response
}

fn note_json(note: &Note) -> Value {
    json!({ "id": note.id, "title": note.title, "body": note.body, "created": note.created })
}

/// A request refused with a status and a reason (sent as `{"error": reason}`).
struct Refusal(StatusCode, &'static str);

impl From<Refusal> for Reply {
    fn from(Refusal(status, reason): Refusal) -> Self {
        problem(status, reason)
    }
}

fn route(path: &str) -> Result<Route, Refusal> {
    match path.trim_end_matches('/') {
        "" => Ok(Route::Home),
        "/notes" => Ok(Route::Notes),
        other => match other.strip_prefix("/notes/") {
            Some(id) => match id.parse::<i64>() {
                Ok(id) if id > 0 => Ok(Route::Note(id)),
                _ => Err(Refusal(StatusCode::BAD_REQUEST, "the note id must be a positive number")),
            },
            None => Err(Refusal(StatusCode::NOT_FOUND, "no such page")),
        },
    }
}

/// The title and body of a new note, or why they are refused.
fn parse_note(body: &[u8]) -> Result<(String, String), Refusal> {
    let bad = |reason| Refusal(StatusCode::BAD_REQUEST, reason);
    let value: Value = serde_json::from_slice(body).map_err(|_| bad("the body must be a JSON object"))?;
    let title = value.get("title").and_then(Value::as_str).map(str::trim).unwrap_or_default();
    let text = match value.get("body") {
        None | Some(Value::Null) => "",
        Some(Value::String(text)) => text,
        Some(_) => return Err(bad("body must be a string")),
    };
    if title.is_empty() {
        return Err(bad("title is required"));
    }
    if title.chars().count() > MAX_TITLE {
        return Err(bad("title is longer than 200 characters"));
    }
    if text.chars().count() > MAX_TEXT {
        return Err(bad("body is longer than 10000 characters"));
    }
    Ok((title.to_owned(), text.to_owned()))
}

/// Escapes text for HTML.
fn html_escape(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            _ => out.push(c),
        }
    }
}

/// The application: the database, shared by every request.
struct Notes {
    db: Arc<Db>,
}

impl Notes {
    async fn serve(&self, req: &mut Request<'_>, res: &mut Response<'_>) -> Result<(), HandlerError> {
        let answer = match req.http_parts() {
            Ok(parts) => self.answer(&parts, req, res).await?,
            Err(e) => Some(problem(StatusCode::BAD_REQUEST, &e.to_string())),
        };
        if let Some(response) = answer {
            res.send_http(response).await?;
        }
        Ok(())
    }

    /// The reply to send, or `None` when the handler already streamed it.
    async fn answer(
        &self,
        parts: &http::request::Parts,
        req: &mut Request<'_>,
        res: &mut Response<'_>,
    ) -> Result<Option<Reply>, HandlerError> {
        let route = match route(parts.uri.path()) {
            Ok(route) => route,
            Err(refusal) => return Ok(Some(refusal.into())),
        };
        Ok(Some(match (route, &parts.method) {
            (Route::Home, &Method::GET) => self.home().await?,
            (Route::Home, _) => not_allowed("GET"),
            (Route::Notes, &Method::GET) => {
                self.list(res).await?;
                return Ok(None);
            }
            (Route::Notes, &Method::POST) => self.create(req).await?,
            (Route::Notes, _) => not_allowed("GET, POST"),
            (Route::Note(id), &Method::GET) => match self.db.call(move |c| db::get(c, id)).await? {
                Some(note) => json_reply(StatusCode::OK, &note_json(&note)),
                None => problem(StatusCode::NOT_FOUND, "no such note"),
            },
            (Route::Note(id), &Method::DELETE) => {
                if self.db.call(move |c| db::delete(c, id)).await? {
                    reply(StatusCode::NO_CONTENT, content_type::TEXT, Vec::new())
                } else {
                    problem(StatusCode::NOT_FOUND, "no such note")
                }
            }
            (Route::Note(_), _) => not_allowed("GET, DELETE"),
        }))
    }

    async fn create(&self, req: &mut Request<'_>) -> Result<Reply, HandlerError> {
        let too_large = || problem(StatusCode::PAYLOAD_TOO_LARGE, "the body is larger than 16 KiB");
        if req.params().content_length().is_some_and(|n| n > MAX_BODY as u64) {
            return Ok(too_large()); // the unread body is skipped, not read
        }
        let body = match req.read_to_vec(MAX_BODY).await {
            Ok(body) => body,
            Err(StreamError::BodyTooLarge) => return Ok(too_large()),
            Err(e) => return Err(e.into()),
        };
        let (title, text) = match parse_note(&body) {
            Ok(note) => note,
            Err(refusal) => return Ok(refusal.into()),
        };
        let created = common::unix_millis(SystemTime::now());
        let note = self.db.call(move |c| db::insert(c, title, text, created)).await?;
        let mut response = json_reply(StatusCode::CREATED, &note_json(&note));
        let location = header::HeaderValue::from_str(&format!("/notes/{}", note.id))?;
        response.headers_mut().insert(header::LOCATION, location);
        Ok(response)
    }

    /// Streams every note as NDJSON, one page per trip to the database.
    async fn list(&self, res: &mut Response<'_>) -> Result<(), HandlerError> {
        // The first page before the head, so a database error is still a 500.
        let mut page = self.db.call(|c| db::page(c, 0, PAGE)).await?;
        let mut out = res.send_head(200, &[("Content-Type", content_type::NDJSON)]).await?;
        let mut lines = String::new();
        loop {
            lines.clear();
            for note in &page {
                lines.push_str(&note_json(note).to_string());
                lines.push('\n');
            }
            out.write_all(lines.as_bytes()).await?;
            out.flush().await?;
            let Some(last) = page.last().map(|n| n.id) else { return Ok(()) };
            if page.len() < PAGE as usize {
                return Ok(());
            }
            page = self.db.call(move |c| db::page(c, last, PAGE)).await?;
        }
    }

    async fn home(&self) -> Result<Reply, HandlerError> {
        let notes = self.db.call(|c| db::page(c, 0, PAGE)).await?;
        let mut html = String::from("<!doctype html>\n<title>Notes</title>\n<h1>Notes</h1>\n<ul>\n");
        for note in &notes {
            html.push_str(&format!("<li><a href=\"/notes/{}\">", note.id));
            html_escape(&mut html, &note.title);
            html.push_str("</a></li>\n");
        }
        html.push_str("</ul>\n");
        Ok(reply(StatusCode::OK, content_type::HTML, html))
    }
}

fn main() -> ExitCode {
    let opts = [common::Opt {
        name: "db",
        value: "FILE",
        required: true,
        help: "the SQLite database file (created if missing)",
    }];
    let args = common::parse_args("notes", &opts);
    let path = PathBuf::from(args.get("db").unwrap_or_default());
    let notes = match Db::open(&path) {
        Ok(db) => Arc::new(Notes { db }),
        Err(e) => {
            eprintln!("notes: cannot open {}: {e}", path.display());
            return ExitCode::from(2);
        }
    };
    let handler =
        handler_fn(async move |req: &mut Request<'_>, res: &mut Response<'_>| notes.serve(req, res).await);
    common::serve(&args, handler, Limits::default())
}
