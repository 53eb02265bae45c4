//! Tables for people: columns aligned on the widest cell, two spaces apart,
//! a header line. (Scripts read `--json` instead.)

/// A table being filled, row by row.
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: &[&str]) -> Table {
        Table {
            header: header.iter().map(|h| (*h).to_owned()).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row. Control and format characters are shown escaped
    /// (`\u{1b}`, `\u{202e}`): a cell may hold what a client sent (a user
    /// agent), which must neither drive the operator's terminal nor reorder
    /// the row (bidi overrides).
    pub fn row(&mut self, cells: Vec<String>) {
        debug_assert_eq!(cells.len(), self.header.len());
        let shown = |cell: String| {
            if cell.chars().any(hidden) {
                cell.chars()
                    .map(|c| {
                        if hidden(c) {
                            c.escape_unicode().to_string()
                        } else {
                            c.to_string()
                        }
                    })
                    .collect()
            } else {
                cell
            }
        };
        self.rows.push(cells.into_iter().map(shown).collect());
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The table as lines of text; the last column is not padded.
    pub fn render(&self) -> String {
        let width = |column: usize| {
            std::iter::once(&self.header)
                .chain(&self.rows)
                .map(|row| row[column].chars().count())
                .max()
                .unwrap_or(0)
        };
        let widths: Vec<usize> = (0..self.header.len()).map(width).collect();
        let mut text = String::new();
        for row in std::iter::once(&self.header).chain(&self.rows) {
            let mut line = String::new();
            for (column, cell) in row.iter().enumerate() {
                if column > 0 {
                    line.push_str("  ");
                }
                line.push_str(cell);
                if column + 1 < row.len() {
                    let padding = widths[column] - cell.chars().count();
                    line.extend(std::iter::repeat_n(' ', padding));
                }
            }
            text.push_str(line.trim_end());
            text.push('\n');
        }
        text
    }
}

/// A character that does something other than show itself: controls (Cc)
/// and format characters (Cf: bidi overrides, zero-width characters).
fn hidden(c: char) -> bool {
    use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};
    c.is_control() || c.general_category() == GeneralCategory::Format
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_line_up() {
        let mut table = Table::new(&["id", "name"]);
        table.row(vec!["1".into(), "alice".into()]);
        table.row(vec!["12345".into(), "é".into()]);
        assert_eq!(table.render(), "id     name\n1      alice\n12345  é\n");
    }

    #[test]
    fn control_characters_are_shown_escaped() {
        let mut table = Table::new(&["reason"]);
        table.row(vec!["x\u{1b}[31mred\n".into()]);
        assert_eq!(table.render(), "reason\nx\\u{1b}[31mred\\u{a}\n");
        let mut table = Table::new(&["reason"]);
        table.row(vec!["\u{202e}nimda".into()]);
        assert_eq!(table.render(), "reason\n\\u{202e}nimda\n");
    }
}
