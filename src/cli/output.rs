//! What `plan` and `apply` print: an aligned table, one line per resource, written row by row
//! as results come in (JSON is the report serialised as it is).

use super::apply::{Manifests, Mode, Report, Row};

const HEADERS: [&str; 8] = [
    "RESOURCE",
    "BUCKET",
    "CURRENT",
    "DESIRED",
    "ACTION",
    "KMS KEY",
    "REQUEST ID",
    "RESULT",
];

/// Writes the table a row at a time. Column widths are fixed before the first row, from what the
/// manifests say (names, buckets, wanted rules); RESULT comes last, so a long message never
/// pushes other columns about.
#[derive(Clone, Debug)]
pub struct TableWriter {
    widths: [usize; 7],
}

impl TableWriter {
    /// Widths for these manifests.
    pub fn for_manifests(manifests: &Manifests) -> Self {
        let mut rows: Vec<Row> = manifests
            .errors
            .iter()
            .map(|e| Row {
                source: e.origin.to_string(),
                resource: "-".into(),
                ..blank()
            })
            .collect();
        for (source, resource) in &manifests.resources {
            let desired = resource
                .spec
                .validate()
                .map(|d| crate::oss::describe_rule(d.rule.as_ref()))
                .unwrap_or_else(|_| "-".into());
            rows.push(Row {
                source: source.to_string(),
                resource: super::apply::name_of(resource),
                bucket: resource.spec.bucket.clone(),
                current: desired.clone(),
                desired,
                ..blank()
            });
        }
        Self::for_rows(&rows)
    }

    fn for_rows(rows: &[Row]) -> Self {
        let mut widths = [0; 7];
        for (i, header) in HEADERS.iter().take(7).enumerate() {
            widths[i] = header.len();
        }
        // CURRENT is only known once OSS answers: room for the widest rule without a key id (a
        // bucket's own key id may still be wider); ACTION for its widest value.
        widths[2] = widths[2]
            .max(crate::oss::describe_rule(Some(&crate::oss::EncryptionRule::kms(None, None))).len());
        widths[4] = widths[4].max("blocked (downgrade)".len());
        widths[5] = widths[5].max("check failed".len());
        widths[6] = widths[6].max(24); // x-oss-request-id
        for row in rows {
            for (i, cell) in cells(row).iter().take(7).enumerate() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
        Self { widths }
    }

    fn line(&self, cells: &[String; 8]) -> String {
        let mut text = String::new();
        for (i, cell) in cells.iter().enumerate() {
            match self.widths.get(i) {
                Some(width) => text.push_str(&format!("{cell:<width$}  ")),
                None => text.push_str(cell),
            }
        }
        format!("{}\n", text.trim_end())
    }

    pub fn header(&self) -> String {
        self.line(&HEADERS.map(String::from))
    }

    pub fn row(&self, row: &Row) -> String {
        self.line(&cells(row))
    }
}

fn blank() -> Row {
    Row {
        source: String::new(),
        resource: String::new(),
        bucket: "-".into(),
        current: "-".into(),
        desired: "-".into(),
        action: "error".into(),
        key_check: "-".into(),
        result: String::new(),
        request_id: String::new(),
    }
}

fn cells(r: &Row) -> [String; 8] {
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
        r.key_check.clone(),
        r.request_id.clone(),
        one_line(&result),
    ]
}

/// The closing line: how many resources, changes and errors.
pub fn summary(report: &Report, mode: Mode) -> String {
    let verb = match mode {
        Mode::Plan => "to change",
        Mode::Apply => "changed",
    };
    let blocked = match report.blocked {
        0 => String::new(),
        n => format!(", {n} blocked"),
    };
    format!(
        "\n{} resource(s): {} {verb}, {} error(s){blocked}\n",
        report.rows.len(),
        report.changes,
        report.errors
    )
}

/// The whole report as a table (widths from its rows).
pub fn table(report: &Report, mode: Mode) -> String {
    let writer = TableWriter::for_rows(&report.rows);
    let mut out = writer.header();
    for row in &report.rows {
        out.push_str(&writer.row(row));
    }
    out.push_str(&summary(report, mode));
    out
}

/// Folds a multi-line text into one line, so every row stays one line.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(resource: &str, result: &str) -> Row {
        Row {
            source: "a.yaml (document 1)".into(),
            resource: resource.into(),
            bucket: "audit-logs-prod".into(),
            current: "None".into(),
            desired: "AES256".into(),
            action: "put".into(),
            key_check: "-".into(),
            result: result.into(),
            request_id: "5C3D9175B6FC201293AD0000".into(),
        }
    }

    #[test]
    fn the_table_aligns_and_sums_up() {
        let report = Report {
            rows: vec![row("platform/audit-logs", "would put")],
            changes: 1,
            errors: 0,
            blocked: 0,
        };
        let text = table(&report, Mode::Plan);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("RESOURCE"));
        assert_eq!(lines[0].find("BUCKET"), lines[1].find("audit-logs-prod"));
        assert_eq!(lines[0].find("RESULT"), lines[1].find("would put"));
        assert!(text.ends_with("1 resource(s): 1 to change, 0 error(s)\n"));
    }

    #[test]
    fn multi_line_results_stay_on_one_line_and_errors_name_their_document() {
        let mut failed = row("platform/bad", "first line\n  second line");
        failed.action = "error".into();
        failed.current = "-".into();
        let text = table(
            &Report {
                rows: vec![failed],
                changes: 0,
                errors: 1,
                blocked: 0,
            },
            Mode::Apply,
        );
        let line = text.lines().nth(1).unwrap();
        assert!(
            line.ends_with("a.yaml (document 1): first line second line"),
            "{line}"
        );
    }
}
