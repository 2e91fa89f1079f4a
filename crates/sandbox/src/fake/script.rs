//! The script language of [`super::ScriptedSandbox`]: parsing and escapes. The language itself
//! is documented on the `fake` module.

use assay_domain::OutputStream;
use std::fmt::Write as _;
use std::time::Duration;

/// Highest signal number a script may name (Linux's `SIGRTMAX`).
const MAX_SIGNAL: u8 = 64;

#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Instruction {
    /// `out`/`err`/`repeat`: `data` written `times` times (`None`: until the run is ended).
    Write {
        stream: OutputStream,
        data: Vec<u8>,
        times: Option<u64>,
    },
    EchoStdin,
    Sleep(Duration),
    Hang,
    Cpu(u64),
    Memory(u64),
    Oom,
    Exit(u8),
    Signal(u8),
    Error(String),
}

/// A script that does not parse: the line (from 1) and why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("script line {line}: {reason}")]
pub struct ScriptError {
    pub line: usize,
    pub reason: String,
}

/// Parses a whole script. Blank lines and lines starting with `#` are skipped.
pub(super) fn parse(text: &str) -> Result<Vec<Instruction>, ScriptError> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        out.push(instruction(trimmed).map_err(|reason| ScriptError {
            line: i + 1,
            reason,
        })?);
    }
    Ok(out)
}

/// One instruction: a word, then (after exactly one space) its argument.
fn instruction(line: &str) -> Result<Instruction, String> {
    let (word, arg) = line.split_once(' ').unwrap_or((line, ""));
    let none = |i: Instruction| {
        if arg.trim().is_empty() {
            Ok(i)
        } else {
            Err(format!("`{word}` takes no argument"))
        }
    };
    match word {
        "out" => write(OutputStream::Stdout, arg, Some(1)),
        "err" => write(OutputStream::Stderr, arg, Some(1)),
        "repeat" => {
            let mut parts = arg.splitn(3, ' ');
            let times = match parts.next().unwrap_or("") {
                "forever" => None,
                n => Some(number(n)?),
            };
            let stream = match parts.next().unwrap_or("") {
                "out" => OutputStream::Stdout,
                "err" => OutputStream::Stderr,
                other => {
                    return Err(format!(
                        "`repeat N out|err TEXT`: expected out or err, not {other:?}"
                    ));
                }
            };
            let text = parts.next().unwrap_or("");
            if text.is_empty() {
                return Err("`repeat` needs a text to repeat".into());
            }
            write(stream, text, times)
        }
        "echo-stdin" => none(Instruction::EchoStdin),
        "sleep" => Ok(Instruction::Sleep(Duration::from_millis(number(arg)?))),
        "hang" => none(Instruction::Hang),
        "cpu" => Ok(Instruction::Cpu(number(arg)?)),
        "memory" => Ok(Instruction::Memory(number(arg)?)),
        "oom" => none(Instruction::Oom),
        "exit" => {
            let code = u8::try_from(number(arg)?).map_err(|_| "exit codes are 0 to 255")?;
            Ok(Instruction::Exit(code))
        }
        "signal" => match u8::try_from(number(arg)?) {
            Ok(n) if (1..=MAX_SIGNAL).contains(&n) => Ok(Instruction::Signal(n)),
            _ => Err(format!("signals are 1 to {MAX_SIGNAL}")),
        },
        "error" => {
            if arg.trim().is_empty() {
                Err("`error` needs a reason".into())
            } else {
                Ok(Instruction::Error(arg.to_string()))
            }
        }
        other => Err(format!("unknown instruction {other:?}")),
    }
}

fn write(stream: OutputStream, text: &str, times: Option<u64>) -> Result<Instruction, String> {
    Ok(Instruction::Write {
        stream,
        data: unescape(text)?,
        times,
    })
}

fn number(arg: &str) -> Result<u64, String> {
    let arg = arg.trim();
    arg.parse()
        .map_err(|_| format!("expected a whole number, not {arg:?}"))
}

/// Decodes `\n`, `\t`, `\r`, `\\` and `\xHH`; any other character stands for itself.
fn unescape(text: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            let mut buf = [0u8; 4];
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            continue;
        }
        match chars.next() {
            Some('n') => out.push(b'\n'),
            Some('t') => out.push(b'\t'),
            Some('r') => out.push(b'\r'),
            Some('\\') => out.push(b'\\'),
            Some('x') => {
                let hex: String = chars.by_ref().take(2).collect();
                let byte = (hex.len() == 2)
                    .then(|| u8::from_str_radix(&hex, 16).ok())
                    .flatten()
                    .ok_or_else(|| format!("`\\x` needs two hex digits, not {hex:?}"))?;
                out.push(byte);
            }
            Some(other) => return Err(format!("unknown escape `\\{other}`")),
            None => return Err("a lone `\\` at the end".into()),
        }
    }
    Ok(out)
}

/// Spells `data` as the TEXT of an `out`/`err` line: the escapes above for newlines, tabs,
/// carriage returns, backslashes and bytes that are not printable ASCII.
pub fn escape(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len());
    for &b in data {
        match b {
            b'\n' => out.push_str("\\n"),
            b'\t' => out.push_str("\\t"),
            b'\r' => out.push_str("\\r"),
            b'\\' => out.push_str("\\\\"),
            b' '..=b'~' => out.push(char::from(b)),
            _ => {
                let _ = write!(out, "\\x{b:02x}");
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use Instruction::*;

    fn out(text: &[u8]) -> Instruction {
        Write {
            stream: OutputStream::Stdout,
            data: text.to_vec(),
            times: Some(1),
        }
    }

    #[test]
    fn every_instruction_parses() {
        let script = "# a comment\n\
            \n\
            out hello\\n\n\
            err  two spaces\n\
            repeat 3 out ab\n\
            repeat forever err x y\n\
            echo-stdin\n\
            sleep 250\n\
            cpu 40\n\
            memory 1048576\n\
            \x20  hang\r\n\
            oom\n\
            exit 3\n\
            signal 11\n\
            error the disk is on fire\n";
        assert_eq!(
            parse(script).unwrap(),
            vec![
                out(b"hello\n"),
                Write {
                    stream: OutputStream::Stderr,
                    data: b" two spaces".to_vec(),
                    times: Some(1)
                },
                Write {
                    stream: OutputStream::Stdout,
                    data: b"ab".to_vec(),
                    times: Some(3)
                },
                Write {
                    stream: OutputStream::Stderr,
                    data: b"x y".to_vec(),
                    times: None
                },
                EchoStdin,
                Sleep(Duration::from_millis(250)),
                Cpu(40),
                Memory(1 << 20),
                Hang,
                Oom,
                Exit(3),
                Signal(11),
                Error("the disk is on fire".into()),
            ]
        );
        assert_eq!(parse("").unwrap(), vec![]);
    }

    #[test]
    fn escapes_round_trip() {
        assert_eq!(unescape("a\\tb\\\\c\\r\\x00\\xff é").unwrap(), {
            let mut v = b"a\tb\\c\r\x00\xff ".to_vec();
            v.extend_from_slice("é".as_bytes());
            v
        });
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(unescape(&escape(&all)).unwrap(), all);
        assert_eq!(escape(b"line 1\n"), "line 1\\n");
    }

    #[test]
    fn mistakes_name_their_line() {
        for (script, line, fragment) in [
            ("out a\nbogus", 2, "unknown instruction \"bogus\""),
            ("sleep soon", 1, "whole number"),
            ("exit 256", 1, "0 to 255"),
            ("signal 0", 1, "1 to 64"),
            ("signal 65", 1, "1 to 64"),
            ("repeat 2 both x", 1, "out or err"),
            ("repeat 2 out", 1, "needs a text"),
            ("repeat many out x", 1, "whole number"),
            ("hang now", 1, "no argument"),
            ("error", 1, "needs a reason"),
            ("\n\nout \\q", 3, "unknown escape"),
            ("out \\x4", 1, "two hex digits"),
            ("out ends\\", 1, "lone"),
        ] {
            let e = parse(script).unwrap_err();
            assert_eq!(e.line, line, "{script:?}: {e}");
            assert!(e.reason.contains(fragment), "{script:?}: {e}");
        }
    }
}
