//! CSV exports of the statistics (`format=csv`, and the admin page's export): UTF-8 with a
//! byte-order mark, so spreadsheet programs read Vietnamese correctly, a header row, and
//! every text cell a spreadsheet would run as a formula (starting with `=`, `+`, `-`, `@`, a
//! tab or a carriage return — titles and referrers come from visitors) prefixed with `'`.

use crate::ApiError;

/// The byte-order mark that starts every export.
pub(crate) const BOM: &str = "\u{feff}";

/// `rows` under `header` as CSV text, BOM first.
pub(crate) fn table(header: &[&str], rows: &[Vec<String>]) -> Result<String, ApiError> {
    let mut w = ::csv::WriterBuilder::new().from_writer(BOM.as_bytes().to_vec());
    let fail = |e: ::csv::Error| ApiError::Internal(format!("csv: {e}"));
    w.write_record(header).map_err(fail)?;
    for row in rows {
        w.write_record(row.iter().map(|cell| neutralised(cell).into_owned()))
            .map_err(fail)?;
    }
    let bytes = w
        .into_inner()
        .map_err(|e| ApiError::Internal(format!("csv: {e}")))?;
    String::from_utf8(bytes).map_err(|e| ApiError::Internal(format!("csv: {e}")))
}

/// `cell`, prefixed with `'` if a spreadsheet would take it for a formula. Numbers are
/// written by us and never start so (rates and counts are not negative).
fn neutralised(cell: &str) -> std::borrow::Cow<'_, str> {
    match cell.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{cell}").into(),
        _ => cell.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formulas_are_neutralised_and_the_file_starts_with_a_bom() {
        let text = table(
            &["title", "views"],
            &[
                vec!["=1+1".into(), "3".into()],
                vec!["Tin tức, \"mới\"".into(), "2".into()],
                vec!["@SUM(A1)".into(), "1".into()],
            ],
        )
        .unwrap();
        assert_eq!(
            text,
            "\u{feff}title,views\n'=1+1,3\n\"Tin tức, \"\"mới\"\"\",2\n'@SUM(A1),1\n"
        );
    }
}
