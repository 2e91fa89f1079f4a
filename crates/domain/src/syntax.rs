//! Python syntax checking before anything is queued (ruff's parser, pure Rust).

use serde::Serialize;

/// A syntax error with a human position: 1-based line, 1-based column in characters.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SyntaxError {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl std::fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file, self.line, self.column, self.message
        )
    }
}

/// Converts a byte offset into 1-based line and column (counted in characters).
fn line_column(source: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(source.len());
    let before = &source[..source.floor_char_boundary(offset)];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

/// Checks that `source` parses as a Python module.
pub fn check_python(file: &str, source: &str) -> Result<(), SyntaxError> {
    if let Some(pos) = source.find('\0') {
        let (line, column) = line_column(source, pos);
        return Err(SyntaxError {
            file: file.into(),
            line,
            column,
            message: "source code cannot contain NUL bytes".into(),
        });
    }
    match ruff_python_parser::parse_module(source) {
        Ok(_) => Ok(()),
        Err(e) => {
            let (line, column) = line_column(source, usize::from(e.location.start()));
            Err(SyntaxError {
                file: file.into(),
                line,
                column,
                message: e.error.to_string(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_code_passes() {
        check_python(
            "main.py",
            "import sys\n\ndef f(x):\n    return x * 2\nprint(f(3))\n",
        )
        .unwrap();
        check_python("main.py", "").unwrap();
        check_python("main.py", "match x:\n    case 1:\n        pass\n").unwrap();
    }

    #[test]
    fn errors_name_line_and_column() {
        let e = check_python("main.py", "print('ok')\ndef f(:\n    pass\n").unwrap_err();
        assert_eq!((e.line, e.column), (2, 7), "{e}");
        let e = check_python("m.py", "x = (1,\n").unwrap_err();
        assert_eq!(e.file, "m.py");
        assert!(e.line >= 1);
        let e = check_python("m.py", "é = 1\nλ = = 2\n").unwrap_err();
        assert_eq!((e.line, e.column), (2, 5), "columns count characters: {e}");
    }

    #[test]
    fn nul_bytes_are_rejected() {
        let e = check_python("m.py", "x = 1\ny = '\0'\n").unwrap_err();
        assert_eq!((e.line, e.column), (2, 6));
    }
}
