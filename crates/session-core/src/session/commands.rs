//! The console's line commands, as typed or scripted.

use std::path::PathBuf;

use audit_event::Permission;
use uuid::Uuid;

/// One line of console input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `/new`: create a session and show its PIN.
    New,
    /// `/queue`: list the applets waiting.
    Queue,
    /// `/pick [N|GUID]`: pick up the Nth waiting session (1-based), a GUID,
    /// or (without argument) the first one to arrive.
    Pick(Option<PickTarget>),
    /// Plain text: chat.
    Chat(String),
    /// `/ask PERMISSION`.
    Ask(Permission),
    /// `/send FILE`.
    Send(PathBuf),
    /// `/get PATH` (a path on the end user's machine).
    Get(String),
    /// `/sysinfo`.
    SysInfo,
    /// `/view` (true) or `/view off` (false): the end user's screen.
    View(bool),
    /// `/record on|off`.
    Record(bool),
    /// `/control` (true) or `/control off` (false): the end user's mouse and keyboard.
    Control(bool),
    /// `/wait SECONDS`: a script's pause (the session goes on meanwhile).
    Wait(std::time::Duration),
    /// `/end`.
    End,
    /// `/help`.
    Help,
}

/// Which waiting session `/pick` means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PickTarget {
    /// The Nth waiting session (from 1).
    Index(usize),
    /// The session with this GUID.
    Guid(Uuid),
}

/// The help text of the console.
pub const HELP: &str = "\
/new              create a session; give the PIN to the end user
/queue            list the end users waiting for you
/pick [N|GUID]    pick up a waiting session (without N: wait for the first)
TEXT              chat with the end user
/ask PERMISSION   ask the end user for a permission
/send FILE        send a file to the end user
/get PATH         copy a file from the end user's computer
/sysinfo          show the end user's system information
/view [off]       see the end user's screen in a browser page (or stop)
/control [off]    use the end user's mouse and keyboard from that page (or stop)
/record on|off    record the screen and the session's events to a .vrec file
/wait SECONDS     pause a script (up to 600 s) while the session goes on
/end              end the session
/help             this text";

/// Parses one input line; `Ok(None)` for a blank line.
pub fn parse(line: &str) -> Result<Option<Command>, String> {
    let line = line.trim_end_matches(['\r', '\n']);
    if line.trim().is_empty() {
        return Ok(None);
    }
    let Some(rest) = line.strip_prefix('/') else {
        return Ok(Some(Command::Chat(line.to_owned())));
    };
    let (word, arg) = rest
        .split_once(char::is_whitespace)
        .map_or((rest, ""), |(w, a)| (w, a.trim()));
    let need = |what: &str| {
        if arg.is_empty() {
            Err(format!("/{word} needs {what}"))
        } else {
            Ok(arg)
        }
    };
    let command = match word {
        "new" => Command::New,
        "queue" => Command::Queue,
        "pick" if arg.is_empty() => Command::Pick(None),
        "pick" => Command::Pick(Some(match (arg.parse::<usize>(), Uuid::parse_str(arg)) {
            (Ok(n), _) if n > 0 => PickTarget::Index(n),
            (_, Ok(guid)) => PickTarget::Guid(guid),
            _ => {
                return Err(format!(
                    "/pick takes a queue position (1, 2...) or a GUID, not {arg:?}"
                ))
            }
        })),
        "ask" => Command::Ask(need("a permission")?.parse().map_err(
            |e: audit_event::event::UnknownPermission| format!("unknown permission {:?}", e.0),
        )?),
        "send" => Command::Send(PathBuf::from(need("a file")?)),
        "get" => Command::Get(need("a path")?.to_owned()),
        "sysinfo" => Command::SysInfo,
        "view" => Command::View(on_off(arg, true)?),
        "control" => Command::Control(on_off(arg, true)?),
        "record" => Command::Record(on_off(need("on or off")?, true)?),
        "wait" => {
            let text = need("a number of seconds")?;
            let seconds: f64 = text
                .parse()
                .ok()
                .filter(|s: &f64| s.is_finite() && *s > 0.0 && *s <= 600.0)
                .ok_or_else(|| format!("/wait takes seconds from 0 to 600, not {text:?}"))?;
            Command::Wait(std::time::Duration::from_secs_f64(seconds))
        }
        "end" => Command::End,
        "help" => Command::Help,
        other => return Err(format!("unknown command /{other} (try /help)")),
    };
    Ok(Some(command))
}

/// `on`/`off` (or nothing, meaning `default`).
fn on_off(arg: &str, default: bool) -> Result<bool, String> {
    match arg {
        "" => Ok(default),
        "on" => Ok(true),
        "off" => Ok(false),
        other => Err(format!("expected on or off, not {other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_parse() {
        assert_eq!(
            parse("hello there").unwrap(),
            Some(Command::Chat("hello there".into()))
        );
        assert_eq!(parse("  ").unwrap(), None);
        assert_eq!(parse("/pick").unwrap(), Some(Command::Pick(None)));
        assert_eq!(
            parse("/pick 2").unwrap(),
            Some(Command::Pick(Some(PickTarget::Index(2))))
        );
        assert_eq!(
            parse("/ask send_files").unwrap(),
            Some(Command::Ask(Permission::SendFiles))
        );
        assert_eq!(
            parse("/send a b.txt").unwrap(),
            Some(Command::Send("a b.txt".into()))
        );
        assert!(parse("/ask flying").is_err());
        assert!(parse("/send").is_err());
        assert!(parse("/pick 0").is_err());
        assert!(parse("/frobnicate").is_err());
        assert_eq!(
            parse("/wait 2.5").unwrap(),
            Some(Command::Wait(std::time::Duration::from_millis(2500)))
        );
        for bad in ["/wait", "/wait -1", "/wait 601", "/wait soon", "/wait NaN"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        assert_eq!(parse("/view").unwrap(), Some(Command::View(true)));
        assert_eq!(parse("/view off").unwrap(), Some(Command::View(false)));
        assert_eq!(parse("/record on").unwrap(), Some(Command::Record(true)));
        assert_eq!(
            parse("/control off").unwrap(),
            Some(Command::Control(false))
        );
        assert!(parse("/record").is_err() && parse("/record maybe").is_err());
    }
}
