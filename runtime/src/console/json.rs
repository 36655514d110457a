//! The console's JSON mode: one request object per line in, one reply per line out.
//!
//! A request's `id` is echoed byte for byte (its raw JSON text), so ids of any size or
//! kind come back unchanged; a line too long to read still gets its `id` back when the id
//! comes within the first bytes kept.

use serde_json::Value;
use serde_json::value::RawValue;

/// A request: `{"id": ..., "cmd": "ask", "question": "..."}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The raw JSON text of the id, when there is one.
    pub id: Option<String>,
    pub cmd: String,
    pub question: Option<String>,
}

/// Why a line is not a request; the reply still carries the id when one was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    pub id: Option<String>,
    pub reason: String,
}

pub const COMMANDS: &str = "caption, ask, snap, live, next, stats or help";

/// Parses one request line.
pub fn parse_request(line: &str) -> Result<Request, Rejected> {
    let fields: std::collections::BTreeMap<String, Box<RawValue>> = match serde_json::from_str(line)
    {
        Ok(f) => f,
        Err(e) => {
            let reason = match serde_json::from_str::<Value>(line) {
                Ok(_) => "request must be a JSON object".to_string(),
                Err(_) => format!("not JSON: {e}"),
            };
            return Err(Rejected {
                id: leading_id(line),
                reason,
            });
        }
    };
    let id = fields.get("id").map(|r| r.get().to_string());
    // an id echoed back must read back: a number beyond the range of a double (1e400)
    // would make the reply unreadable to most JSON parsers
    if let Some(raw) = &id
        && serde_json::from_str::<Value>(raw).is_err()
    {
        return Err(Rejected {
            id: None,
            reason: format!("\"id\" {raw} is out of range; use a string or a smaller number"),
        });
    }
    let reject = |reason: String| Rejected {
        id: id.clone(),
        reason,
    };
    let string = |name: &str| -> Result<Option<String>, Rejected> {
        match fields.get(name) {
            None => Ok(None),
            Some(raw) => serde_json::from_str::<String>(raw.get())
                .map(Some)
                .map_err(|_| reject(format!("\"{name}\" must be a string"))),
        }
    };
    let cmd =
        string("cmd")?.ok_or_else(|| reject(format!("request has no \"cmd\"; use {COMMANDS}")))?;
    let question = string("question")?;
    Ok(Request { id, cmd, question })
}

/// The raw text of an `"id"` member near the start of a line that could not be parsed
/// whole (cut short, or broken further on): a number, a string, or a literal.
pub fn leading_id(line: &str) -> Option<String> {
    let start = line.trim_start().strip_prefix('{')?;
    let mut rest = start;
    // only the first member: later ones could be inside nested values
    rest = rest.trim_start().strip_prefix("\"id\"")?;
    rest = rest.trim_start().strip_prefix(':')?.trim_start();
    let end = if rest.starts_with('"') {
        let mut escaped = false;
        let mut end = None;
        for (i, c) in rest.char_indices().skip(1) {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => {
                    end = Some(i + 1);
                    break;
                }
                _ => {}
            }
        }
        end?
    } else {
        rest.find(|c: char| c == ',' || c == '}' || c.is_whitespace())?
    };
    let raw = &rest[..end];
    // it must be a whole JSON value of a kind an id can be
    match serde_json::from_str::<Value>(raw) {
        Ok(Value::Number(_) | Value::String(_) | Value::Null | Value::Bool(_)) => {
            Some(raw.to_string())
        }
        _ => None,
    }
}

/// The reply line for `reply` (an object), with `id` first when there is one.
pub fn reply_line(id: Option<&str>, reply: &Value) -> String {
    let body = reply.to_string();
    match (id, body.strip_prefix('{')) {
        (Some(id), Some("}")) => format!("{{\"id\":{id}}}"),
        (Some(id), Some(rest)) => format!("{{\"id\":{id},{rest}"),
        _ => body,
    }
}

/// `{"ok": false, "error": reason}`.
pub fn error(reason: impl Into<String>) -> Value {
    serde_json::json!({"ok": false, "error": reason.into()})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_come_back_byte_for_byte() {
        for id in [
            "18446744073709551617",
            "9007199254740993",
            "-1.50e3",
            "\"a \\\"quoted\\\" id\"",
            "null",
        ] {
            let line = format!("{{\"id\": {id}, \"cmd\": \"stats\"}}");
            let r = parse_request(&line).unwrap();
            assert_eq!(r.id.as_deref(), Some(id));
            let out = reply_line(r.id.as_deref(), &serde_json::json!({"ok": true}));
            assert_eq!(out, format!("{{\"id\":{id},\"ok\":true}}"));
        }
    }

    #[test]
    fn an_empty_reply_with_an_id_is_still_json() {
        let line = reply_line(Some("1"), &serde_json::json!({}));
        assert_eq!(line, "{\"id\":1}");
        assert_eq!(reply_line(None, &serde_json::json!({})), "{}");
    }

    #[test]
    fn bad_requests_say_what_is_wrong_and_keep_their_id() {
        let e = parse_request("{}").unwrap_err();
        assert!(e.reason.contains("no \"cmd\""), "{}", e.reason);
        let e = parse_request("{\"id\": 7, \"cmd\": 3}").unwrap_err();
        assert_eq!(
            (e.id.as_deref(), e.reason.as_str()),
            (Some("7"), "\"cmd\" must be a string")
        );
        let e = parse_request("{\"id\": 11e308, \"cmd\": \"help\"}").unwrap_err();
        assert_eq!(e.id, None);
        assert!(e.reason.contains("out of range"), "{}", e.reason);
        let e = parse_request("[1, 2]").unwrap_err();
        assert_eq!(e.reason, "request must be a JSON object");
        let e = parse_request("{\"id\": 12, \"cmd\": \"ask\", \"question\": \"what").unwrap_err();
        assert_eq!(e.id.as_deref(), Some("12"));
        assert!(e.reason.starts_with("not JSON"), "{}", e.reason);
    }

    #[test]
    fn leading_ids_of_cut_lines() {
        assert_eq!(
            leading_id("{\"id\": 42, \"cmd\": \"ask\", \"quest").as_deref(),
            Some("42")
        );
        assert_eq!(leading_id(" {\"id\":\"x,}\" ,").as_deref(), Some("\"x,}\""));
        // a number ends at a comma, a brace or a space
        assert_eq!(leading_id("{\"id\":7}").as_deref(), Some("7"));
        assert_eq!(leading_id("{\"id\": -7.5 ,").as_deref(), Some("-7.5"));
        assert_eq!(leading_id("{\"id\": true,").as_deref(), Some("true"));
        // an escaped quote does not end the string
        assert_eq!(
            leading_id("{\"id\": \"a\\\"b\", \"cmd").as_deref(),
            Some("\"a\\\"b\"")
        );
        assert_eq!(leading_id("{\"cmd\": \"ask\", \"id\": 4"), None);
        assert_eq!(leading_id("{\"id\": [1, 2], "), None);
        assert_eq!(leading_id("{\"id\": 4"), None);
        assert_eq!(leading_id("not json"), None);
    }
}
