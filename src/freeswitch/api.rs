//! The `msrpcast` API command of fs_cli and ESL: `msrpcast <command>`, answered in JSON.

use crate::json;

/// The usage line `msrpcast help` (and an unknown command) answers with.
pub const USAGE: &str = "msrpcast status|conferences|transfers|counters|members|cancel <transfer>|upload <conference> <path>|reload_tls|help";

/// A parsed command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiCommand {
    /// The engine's status JSON; the value is an `msrpcast_status_what`.
    Status(u32),
    /// The members the module joined (conference, participant).
    Members,
    /// Cancel every delivery of a transfer.
    Cancel(u64),
    /// Spool a local file (readable by FreeSWITCH) as a new transfer to a conference.
    Upload {
        conference: String,
        path: String,
    },
    /// Re-read the TLS certificates and keys in use.
    ReloadTls,
    Help,
}

impl ApiCommand {
    /// Parses the text after `msrpcast` (words separated by whitespace; empty = `status`).
    pub fn parse(cmd: &str) -> Result<ApiCommand, String> {
        let mut words = cmd.split_whitespace();
        let verb = words.next().unwrap_or("status");
        let c = match verb {
            "status" => ApiCommand::Status(3),
            "conferences" => ApiCommand::Status(1),
            "transfers" => ApiCommand::Status(2),
            "counters" => ApiCommand::Status(4),
            "members" => ApiCommand::Members,
            "help" => ApiCommand::Help,
            "reload_tls" => ApiCommand::ReloadTls,
            "cancel" => {
                let id = words
                    .next()
                    .ok_or_else(|| "cancel needs a transfer id".to_owned())?;
                ApiCommand::Cancel(
                    id.parse()
                        .map_err(|_| format!("transfer id {id:?} is not a number"))?,
                )
            }
            "upload" => {
                let conference = words
                    .next()
                    .ok_or_else(|| "upload needs a conference and a path".to_owned())?;
                // The path is the rest of the line (it may contain spaces).
                let rest = cmd.trim_start();
                let rest = rest["upload".len()..].trim_start();
                let path = rest[conference.len()..].trim();
                if path.is_empty() {
                    return Err("upload needs a path after the conference".into());
                }
                return Ok(ApiCommand::Upload {
                    conference: conference.to_owned(),
                    path: path.to_owned(),
                });
            }
            other => return Err(format!("unknown command {other:?}; usage: {USAGE}")),
        };
        if let Some(extra) = words.next() {
            return Err(format!("unexpected {extra:?} after {verb}"));
        }
        Ok(c)
    }
}

/// `{"error":"…"}`.
pub fn error_json(msg: &str) -> String {
    format!("{{\"error\":{}}}", json::escape(msg))
}

/// `{"members":[{"conference":…,"participant":…},…]}`.
pub fn members_json(members: &[(String, String)]) -> String {
    let mut out = String::from("{\"members\":[");
    for (i, (c, p)) in members.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"conference\":");
        json::push_str(&mut out, c);
        out.push_str(",\"participant\":");
        json::push_str(&mut out, p);
        out.push('}');
    }
    out.push_str("]}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands() {
        assert_eq!(ApiCommand::parse(""), Ok(ApiCommand::Status(3)));
        assert_eq!(ApiCommand::parse(" transfers "), Ok(ApiCommand::Status(2)));
        assert_eq!(ApiCommand::parse("conferences"), Ok(ApiCommand::Status(1)));
        assert_eq!(ApiCommand::parse("cancel 42"), Ok(ApiCommand::Cancel(42)));
        assert!(ApiCommand::parse("cancel").is_err());
        assert!(ApiCommand::parse("cancel x").is_err());
        assert!(ApiCommand::parse("status now").is_err());
        assert!(ApiCommand::parse("reboot").unwrap_err().contains("usage"));
        assert_eq!(
            ApiCommand::parse(" upload  3000 /tmp/a b.bin "),
            Ok(ApiCommand::Upload {
                conference: "3000".into(),
                path: "/tmp/a b.bin".into()
            })
        );
        assert!(ApiCommand::parse("upload 3000").is_err());
        assert!(ApiCommand::parse("upload").is_err());
        assert_eq!(ApiCommand::parse("reload_tls"), Ok(ApiCommand::ReloadTls));
        assert!(ApiCommand::parse("reload_tls now").is_err());
    }

    #[test]
    fn json_texts() {
        assert_eq!(error_json("a \"b\""), "{\"error\":\"a \\\"b\\\"\"}");
        assert_eq!(
            members_json(&[("c".into(), "u".into())]),
            "{\"members\":[{\"conference\":\"c\",\"participant\":\"u\"}]}"
        );
        assert_eq!(members_json(&[]), "{\"members\":[]}");
    }
}
