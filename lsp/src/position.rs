//! Conversions between byte offsets and LSP positions, which count UTF-16 code units per line.

use lsp_types::{Position, Range};

/// The start offset of every line of a text.
pub struct LineIndex<'a> {
    text: &'a str,
    line_starts: Vec<usize>,
}

impl<'a> LineIndex<'a> {
    pub fn new(text: &'a str) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        LineIndex { text, line_starts }
    }

    /// Converts a byte offset into a position.
    pub fn position(&self, offset: usize) -> Position {
        let offset = offset.min(self.text.len());
        let line = self.line_starts.partition_point(|&start| start <= offset) - 1;
        let start = self.line_starts[line];
        let prefix = self.text.get(start..offset).unwrap_or("");
        Position {
            line: line as u32,
            character: prefix.encode_utf16().count() as u32,
        }
    }

    pub fn range(&self, start: usize, end: usize) -> Range {
        Range {
            start: self.position(start),
            end: self.position(end),
        }
    }

    /// Converts a position into a byte offset, clamping to the line and the text.
    pub fn offset(&self, position: Position) -> usize {
        let Some(&start) = self.line_starts.get(position.line as usize) else {
            return self.text.len();
        };
        let end = self
            .line_starts
            .get(position.line as usize + 1)
            .map_or(self.text.len(), |e| e - 1);
        let mut units = 0u32;
        for (index, c) in self.text[start..end].char_indices() {
            if units >= position.character {
                return start + index;
            }
            units += c.len_utf16() as u32;
        }
        end
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_count_utf16_units() {
        let text = "# ψ𝜓\nconst a = 1";
        let index = LineIndex::new(text);
        let offset = text.find("𝜓").unwrap() + "𝜓".len();
        assert_eq!(
            index.position(offset),
            Position {
                line: 0,
                character: 5
            }
        );
        assert_eq!(
            index.offset(Position {
                line: 1,
                character: 6
            }),
            text.find('a').unwrap()
        );
        assert_eq!(index.offset(index.position(offset)), offset);
    }
}
