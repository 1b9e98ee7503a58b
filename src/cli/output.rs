//! What `plan` and `apply` print: an aligned table, one line per resource (JSON is the report
//! serialised as it is).

use std::fmt::Write as _;

use super::apply::{Mode, Report};

/// The report as a table.
pub fn table(report: &Report, mode: Mode) -> String {
    let headers = [
        "RESOURCE",
        "BUCKET",
        "CURRENT",
        "DESIRED",
        "ACTION",
        "RESULT",
        "REQUEST ID",
    ];
    let cells: Vec<[String; 7]> = report
        .rows
        .iter()
        .map(|r| {
            let resource = if r.resource == "-" {
                r.source.clone()
            } else {
                r.resource.clone()
            };
            // A row that failed before reaching OSS names the document it came from.
            let result = if r.action == "error" && r.current == "-" && r.resource != "-" {
                format!("{}: {}", r.source, r.result)
            } else {
                r.result.clone()
            };
            [
                resource,
                r.bucket.clone(),
                r.current.clone(),
                r.desired.clone(),
                r.action.clone(),
                one_line(&result),
                r.request_id.clone(),
            ]
        })
        .collect();
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in &cells {
        for (i, cell) in row.iter().enumerate().take(6) {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let line = |out: &mut String, cells: &[String]| {
        let mut text = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i < 6 {
                let _ = write!(text, "{cell:<width$}  ", width = widths[i]);
            } else {
                let _ = write!(text, "{cell}  ");
            }
        }
        let _ = writeln!(out, "{}", text.trim_end());
    };
    line(&mut out, &headers.map(String::from));
    for row in &cells {
        line(&mut out, row);
    }
    let verb = match mode {
        Mode::Plan => "to change",
        Mode::Apply => "changed",
    };
    let _ = writeln!(
        out,
        "\n{} resource(s): {} {verb}, {} error(s)",
        report.rows.len(),
        report.changes,
        report.errors
    );
    out
}

/// Folds a multi-line text into one line, so every row stays one line.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::apply::Row;

    #[test]
    fn the_table_aligns_and_sums_up() {
        let report = Report {
            rows: vec![Row {
                source: "a.yaml (document 1)".into(),
                resource: "platform/audit-logs".into(),
                bucket: "audit-logs-prod".into(),
                current: "None".into(),
                desired: "AES256".into(),
                action: "put".into(),
                result: "would put".into(),
                request_id: "RID".into(),
            }],
            changes: 1,
            errors: 0,
        };
        let text = table(&report, Mode::Plan);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("RESOURCE"));
        assert_eq!(lines[0].find("BUCKET"), lines[1].find("audit-logs-prod"));
        assert!(text.ends_with("1 resource(s): 1 to change, 0 error(s)\n"));
    }
}
