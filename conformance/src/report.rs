//! The report: rows in the order they ran, a text table and JSON.

use serde::Serialize;

use crate::{Level, Outcome, RowResult};

/// All rows of one run, plus notes about the run itself.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// The rows, in the order they ran.
    pub rows: Vec<RowResult>,
    /// Remarks that belong to no row (a publisher that failed to start, ...).
    pub notes: Vec<String>,
}

impl Report {
    pub(crate) fn push(
        &mut self,
        id: &str,
        level: Level,
        requirement: &str,
        outcome: Outcome,
        detail: impl Into<String>,
    ) {
        self.rows.push(RowResult {
            id: id.to_owned(),
            requirement: requirement.to_owned(),
            level,
            outcome,
            detail: detail.into().replace(['\r', '\n'], " "),
        });
    }

    pub(crate) fn note(&mut self, note: String) {
        self.notes.push(note);
    }

    /// The row with this id (the first, if it ran more than once).
    pub fn row(&self, id: &str) -> Option<&RowResult> {
        self.rows.iter().find(|r| r.id == id)
    }

    /// Rows with this outcome.
    pub fn with_outcome(&self, outcome: Outcome) -> impl Iterator<Item = &RowResult> {
        self.rows.iter().filter(move |r| r.outcome == outcome)
    }

    /// False when a MUST row failed.
    pub fn passed(&self) -> bool {
        !self
            .rows
            .iter()
            .any(|r| r.level == Level::Must && r.outcome == Outcome::Fail)
    }

    /// The report as JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|_| "{}".into())
    }

    /// The report as a text table: id, level, outcome, requirement, detail.
    pub fn table(&self) -> String {
        let w_id = self
            .rows
            .iter()
            .map(|r| r.id.len())
            .max()
            .unwrap_or(2)
            .max(2);
        let w_req = self
            .rows
            .iter()
            .map(|r| r.requirement.chars().count())
            .max()
            .unwrap_or(11)
            .max(11);
        let mut out = format!(
            "{:<w_id$}  {:<6}  {:<4}  {:<w_req$}  detail\n",
            "id", "level", "", "requirement"
        );
        for r in &self.rows {
            let outcome = match r.outcome {
                Outcome::Pass => "pass",
                Outcome::Fail => "FAIL",
                Outcome::Skip => "skip",
            };
            out.push_str(&format!(
                "{:<w_id$}  {:<6}  {:<4}  {:<w_req$}  {}\n",
                r.id,
                r.level.as_str(),
                outcome,
                r.requirement,
                r.detail
            ));
        }
        let count = |o| self.rows.iter().filter(|r| r.outcome == o).count();
        out.push_str(&format!(
            "\n{} pass, {} fail ({} MUST), {} skip\n",
            count(Outcome::Pass),
            count(Outcome::Fail),
            self.rows
                .iter()
                .filter(|r| r.level == Level::Must && r.outcome == Outcome::Fail)
                .count(),
            count(Outcome::Skip)
        ));
        for n in &self.notes {
            out.push_str(&format!("note: {n}\n"));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_failing_must_rows_fail_the_run() {
        let mut r = Report::default();
        r.push("A-1", Level::Should, "x", Outcome::Fail, "no");
        r.push("A-2", Level::Must, "y", Outcome::Skip, "n/a");
        assert!(r.passed());
        r.push("A-3", Level::Must, "z", Outcome::Fail, "line\nbreak");
        assert!(!r.passed());
        let t = r.table();
        assert!(t.contains("A-3") && t.contains("FAIL") && t.contains("line break"));
        let v: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
        assert_eq!(v["rows"][2]["level"], "MUST");
        assert_eq!(v["rows"][2]["outcome"], "fail");
    }
}
