//! The dry-run plan: every binding that would change something records one entry here instead
//! of acting when the run is a dry run.

use serde::Serialize;

/// One change a binding would make.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct PlanEntry {
    /// The binding package that would act (`pachd`, `kube`, `store`, `fs`, ...).
    pub binding: String,
    /// What it would do (`stop_pipeline`, `patch`, `put`, ...).
    pub action: String,
    /// What it would act on (a pipeline name, `service/pachd`, a URL).
    pub target: String,
    /// Anything else a reader needs to judge the change (a diff, sizes, options).
    pub details: serde_json::Value,
}

impl PlanEntry {
    /// A new entry with no details.
    pub fn new(binding: &str, action: &str, target: impl Into<String>) -> Self {
        PlanEntry {
            binding: binding.to_owned(),
            action: action.to_owned(),
            target: target.into(),
            details: serde_json::Value::Null,
        }
    }

    /// The same entry with details attached.
    pub fn with_details(mut self, details: serde_json::Value) -> Self {
        self.details = details;
        self
    }
}

/// The ordered list of changes a dry run would have made.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Plan {
    entries: Vec<PlanEntry>,
}

impl Plan {
    /// Appends an entry.
    pub fn record(&mut self, entry: PlanEntry) {
        self.entries.push(entry);
    }

    /// The entries in the order they were recorded.
    pub fn entries(&self) -> &[PlanEntry] {
        &self.entries
    }

    /// True when nothing would change.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Forgets every entry (the REPL's `:dry-run on` starts a fresh plan).
    pub fn clear(&mut self) {
        self.entries.clear();
    }

    /// The plan as an aligned text table, one line per entry.
    pub fn to_table(&self) -> String {
        if self.entries.is_empty() {
            return "plan: nothing would change\n".to_owned();
        }
        let headers = ["#", "binding", "action", "target", "details"];
        let rows: Vec<[String; 5]> = self
            .entries
            .iter()
            .enumerate()
            .map(|(index, entry)| {
                let details = match &entry.details {
                    serde_json::Value::Null => String::new(),
                    other => other.to_string(),
                };
                [
                    (index + 1).to_string(),
                    entry.binding.clone(),
                    entry.action.clone(),
                    entry.target.clone(),
                    details,
                ]
            })
            .collect();
        let mut widths = headers.map(str::len);
        for row in &rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let mut text = format!("plan: {} change(s) would be made\n", rows.len());
        let header_row = headers.map(str::to_owned);
        for row in std::iter::once(&header_row).chain(rows.iter()) {
            let mut line = String::new();
            for (column, (cell, width)) in row.iter().zip(widths).enumerate() {
                if column + 1 == row.len() {
                    line.push_str(cell);
                } else {
                    line.push_str(&format!("{cell:<width$}  "));
                }
            }
            text.push_str(line.trim_end());
            text.push('\n');
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_lists_entries_in_order_with_aligned_columns() {
        let mut plan = Plan::default();
        plan.record(PlanEntry::new("pachd", "stop_pipeline", "sort"));
        plan.record(
            PlanEntry::new("kube", "patch", "service/pachd")
                .with_details(serde_json::json!({"nodePort": [30650, 30649]})),
        );
        let table = plan.to_table();
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines[0], "plan: 2 change(s) would be made");
        assert!(lines[1].starts_with("#  binding  action"));
        assert!(lines[2].starts_with("1  pachd    stop_pipeline  sort"));
        assert!(lines[3].contains("service/pachd"));
        assert!(lines[3].ends_with(r#"{"nodePort":[30650,30649]}"#));
    }

    #[test]
    fn empty_plan_says_nothing_would_change() {
        assert_eq!(Plan::default().to_table(), "plan: nothing would change\n");
    }
}
