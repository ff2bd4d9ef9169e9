//! The status page in its three formats: plain text, JSON and the OpenMetrics text format
//! (which Prometheus scrapes). Each renders the table of [`StatsSnapshot::fields`], so a new
//! figure appears in all three without touching this file.

use std::fmt::Write as _;

use crate::stats::{Field, Kind, StatsSnapshot};

/// Prefix of every OpenMetrics metric name.
pub const METRIC_PREFIX: &str = "ember_fcgi_";

/// A status page format, chosen by the query string (see [`Format::from_query`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `name: value` lines; the default.
    Text,
    /// One JSON object (`?json`).
    Json,
    /// The OpenMetrics 1.0 text format (`?openmetrics`), Prometheus' native scrape format.
    OpenMetrics,
}

impl Format {
    /// `json` or `openmetrics` among the `&`-separated keys of the query string (as PHP-FPM's
    /// status page takes `?json`); anything else is [`Format::Text`].
    pub fn from_query(query: &str) -> Self {
        let keys = query.split('&').map(|pair| pair.split_once('=').map_or(pair, |(k, _)| k));
        let mut format = Self::Text;
        for key in keys {
            match key {
                "json" => format = Self::Json,
                "openmetrics" | "prometheus" => format = Self::OpenMetrics,
                _ => {}
            }
        }
        format
    }

    /// The `Content-Type` of a page in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Text => "text/plain; charset=utf-8",
            Self::Json => "application/json",
            Self::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }

    /// The page for these loops (one `Stats` per serving loop registered): totals first, then
    /// each loop's own figures when there is more than one.
    pub fn render(self, loops: &[StatsSnapshot]) -> String {
        let tables: Vec<Vec<Field>> = loops.iter().map(StatsSnapshot::fields).collect();
        let total = totals(&tables);
        match self {
            Self::Text => text(&total, &tables),
            Self::Json => json(&total, &tables),
            Self::OpenMetrics => openmetrics(&total, &tables),
        }
    }
}

/// The figures of all loops together: counters and gauges summed, uptime the longest.
fn totals(tables: &[Vec<Field>]) -> Vec<Field> {
    let Some(first) = tables.first() else {
        return StatsSnapshot::default().fields();
    };
    let mut total = first.clone();
    for table in &tables[1..] {
        for (sum, field) in total.iter_mut().zip(table) {
            sum.value = if sum.name == "uptime_seconds" {
                sum.value.max(field.value)
            } else {
                sum.value + field.value
            };
        }
    }
    total
}

/// A figure's value: integers without a fraction, seconds with millisecond precision.
fn number(field: &Field) -> String {
    if field.value.fract() == 0.0 { format!("{}", field.value as u64) } else { format!("{:.3}", field.value) }
}

fn text(total: &[Field], loops: &[Vec<Field>]) -> String {
    let mut out = String::new();
    let width = total.iter().map(|f| f.name.len()).max().unwrap_or(0) + 1;
    let table = |out: &mut String, fields: &[Field]| {
        for field in fields {
            let _ = writeln!(out, "{:<width$} {}", format!("{}:", field.name), number(field));
        }
    };
    table(&mut out, total);
    if loops.len() > 1 {
        for (n, fields) in loops.iter().enumerate() {
            let _ = writeln!(out, "\nloop {n}:");
            table(&mut out, fields);
        }
    }
    out
}

fn json_object(out: &mut String, fields: &[Field]) {
    out.push('{');
    for (i, field) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        // Names are fixed snake_case identifiers: no escaping needed.
        let _ = write!(out, "\"{}\":{}", field.name, number(field));
    }
    out.push('}');
}

fn json(total: &[Field], loops: &[Vec<Field>]) -> String {
    let mut out = String::new();
    json_object(&mut out, total);
    out.pop(); // reopen the object to add the loops
    out.push_str(",\"loops\":[");
    for (n, fields) in loops.iter().enumerate() {
        if n > 0 {
            out.push(',');
        }
        json_object(&mut out, fields);
    }
    out.push_str("]}\n");
    out
}

/// One family per figure; with several loops, one sample per loop labelled `loop="N"` (no
/// unlabelled total, so that `sum()` does not count twice).
fn openmetrics(total: &[Field], loops: &[Vec<Field>]) -> String {
    let mut out = String::new();
    for (i, field) in total.iter().enumerate() {
        let name = format!("{METRIC_PREFIX}{}", field.name);
        let (kind, suffix) = match field.kind {
            Kind::Counter => ("counter", "_total"),
            Kind::Gauge => ("gauge", ""),
        };
        let _ = writeln!(out, "# TYPE {name} {kind}");
        let _ = writeln!(out, "# HELP {name} {}", escape_help(field.help));
        if loops.len() > 1 {
            for (n, fields) in loops.iter().enumerate() {
                let _ = writeln!(out, "{name}{suffix}{{loop=\"{n}\"}} {}", number(&fields[i]));
            }
        } else {
            let _ = writeln!(out, "{name}{suffix} {}", number(field));
        }
    }
    out.push_str("# EOF\n");
    out
}

fn escape_help(help: &str) -> String {
    help.replace('\\', "\\\\").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn sample() -> StatsSnapshot {
        StatsSnapshot {
            open_connections: 2,
            accepted: 7,
            requests: 40,
            bytes_in: 1000,
            uptime: Duration::from_millis(1500),
            ..StatsSnapshot::default()
        }
    }

    #[test]
    fn picks_the_format_from_the_query() {
        assert_eq!(Format::from_query(""), Format::Text);
        assert_eq!(Format::from_query("json"), Format::Json);
        assert_eq!(Format::from_query("full&json"), Format::Json);
        assert_eq!(Format::from_query("openmetrics"), Format::OpenMetrics);
        assert_eq!(Format::from_query("openmetrics="), Format::OpenMetrics);
        assert_eq!(Format::from_query("jsonx"), Format::Text);
    }

    #[test]
    fn text_lists_every_field() {
        let page = Format::Text.render(&[sample()]);
        assert!(page.starts_with("uptime_seconds:"), "{page}");
        assert!(page.contains("\nrequests:"), "{page}");
        assert_eq!(page.lines().count(), sample().fields().len());
        let line = page.lines().find(|l| l.starts_with("connections_accepted:")).unwrap();
        assert!(line.ends_with(" 7"), "{line}");
        assert!(page.contains(" 1.500\n"), "{page}");
    }

    #[test]
    fn json_has_totals_and_loops() {
        let page = Format::Json.render(&[sample(), sample()]);
        assert!(page.starts_with("{\"uptime_seconds\":1.500,\"connections_open\":4,"), "{page}");
        assert!(page.contains("\"requests\":80,"), "{page}");
        assert!(page.contains(",\"loops\":[{\"uptime_seconds\":1.500,\"connections_open\":2,"), "{page}");
        assert!(page.ends_with("}]}\n"), "{page}");
    }

    #[test]
    fn openmetrics_families() {
        let page = Format::OpenMetrics.render(&[sample()]);
        assert!(page.contains(
            "# TYPE ember_fcgi_requests counter\n# HELP ember_fcgi_requests Requests handed to the handler.\nember_fcgi_requests_total 40\n"
        ), "{page}");
        assert!(page.contains("# TYPE ember_fcgi_connections_open gauge\n"), "{page}");
        assert!(page.contains("\nember_fcgi_connections_open 2\n"), "{page}");
        assert!(page.ends_with("\n# EOF\n"));
        let two = Format::OpenMetrics.render(&[sample(), sample()]);
        assert!(two.contains(
            "\nember_fcgi_requests_total{loop=\"0\"} 40\nember_fcgi_requests_total{loop=\"1\"} 40\n"
        ));
    }
}
