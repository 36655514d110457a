//! The console's commands.

/// What a line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Caption,
    Ask(std::string::String),
    /// Freeze the current frame for the next questions.
    Snap,
    /// Follow the source again.
    Live,
    /// Move to the next frame of a folder or of the scene generator.
    Next,
    Stats,
    Help,
    /// An empty line: show the prompt again.
    Nothing,
}

pub const HELP: &str = "commands:
  caption           describe the current frame
  ask <question>    answer a question about it (a bare question works too)
  snap              freeze the current frame; follow-up questions reuse its work
  live              follow the camera again
  next              next frame (folders and --synthetic)
  stats             frames, questions, time to first token
  help              this list";

/// Parses a console line. Words are matched without regard to case.
pub fn parse(line: &str) -> Result<Command, std::string::String> {
    let line = line.trim();
    let (word, rest) = match line.split_once(char::is_whitespace) {
        Some((w, r)) => (w, r.trim()),
        None => (line, ""),
    };
    let word = word.to_ascii_lowercase();
    let bare = |c: Command| {
        if rest.is_empty() {
            Ok(c)
        } else {
            Err(format!("`{word}` takes no argument"))
        }
    };
    match word.as_str() {
        "" => Ok(Command::Nothing),
        "caption" | "describe" => bare(Command::Caption),
        "snap" => bare(Command::Snap),
        "live" => bare(Command::Live),
        "next" => bare(Command::Next),
        "stats" => bare(Command::Stats),
        "help" | "?" => bare(Command::Help),
        "ask" if rest.is_empty() => {
            Err("ask what? for example: ask how many objects are there?".into())
        }
        "ask" => Ok(Command::Ask(rest.to_string())),
        _ => Ok(Command::Ask(line.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_and_bare_questions() {
        assert_eq!(parse("caption"), Ok(Command::Caption));
        assert_eq!(parse("  SNAP "), Ok(Command::Snap));
        assert_eq!(
            parse("ask  what color is the star?"),
            Ok(Command::Ask("what color is the star?".into()))
        );
        assert_eq!(
            parse("how many circles are there?"),
            Ok(Command::Ask("how many circles are there?".into()))
        );
        assert_eq!(parse(""), Ok(Command::Nothing));
        assert_eq!(parse("help"), Ok(Command::Help));
        assert_eq!(parse("?"), Ok(Command::Help));
        assert_eq!(parse("live"), Ok(Command::Live));
        assert_eq!(parse("Next"), Ok(Command::Next));
        assert_eq!(parse("stats"), Ok(Command::Stats));
        assert_eq!(parse("describe"), Ok(Command::Caption));
        // a word that is no command is a question, whole
        assert_eq!(parse("nextness?"), Ok(Command::Ask("nextness?".into())));
        assert!(parse("ask").unwrap_err().contains("ask what"));
        assert!(parse("stats now").unwrap_err().contains("no argument"));
    }
}
