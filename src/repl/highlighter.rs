//! Syntax highlighting with a small lexer: keywords, strings, numbers, comments, known
//! functions and modules, and meta-commands.

use std::sync::Arc;

use nu_ansi_term::{Color, Style};
use reedline::{Highlighter, StyledText};

use super::names::{KEYWORDS, Names};

/// What a stretch of input is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Token {
    /// A keyword.
    Keyword,
    /// A string or character literal.
    Str,
    /// A number.
    Number,
    /// A comment.
    Comment,
    /// A known function or module.
    Function,
    /// A meta-command word.
    Meta,
    /// Anything else.
    Plain,
}

fn style(token: Token) -> Style {
    match token {
        Token::Keyword => Color::Magenta.bold(),
        Token::Str => Color::Green.normal(),
        Token::Number => Color::Yellow.normal(),
        Token::Comment => Color::DarkGray.italic(),
        Token::Function => Color::Cyan.normal(),
        Token::Meta => Color::Blue.bold(),
        Token::Plain => Style::new(),
    }
}

/// Splits `line` into tokens that cover it exactly.
pub fn tokens(line: &str, names: &Names) -> Vec<(Token, String)> {
    if line.trim_start().starts_with(':') {
        let end = line
            .char_indices()
            .skip_while(|(_, ch)| ch.is_whitespace())
            .find(|(_, ch)| ch.is_whitespace())
            .map_or(line.len(), |(index, _)| index);
        let mut out = vec![(Token::Meta, line[..end].to_owned())];
        if end < line.len() {
            out.push((Token::Plain, line[end..].to_owned()));
        }
        return out;
    }
    let chars: Vec<(usize, char)> = line.char_indices().collect();
    let at = |index: usize| chars.get(index).map(|&(_, ch)| ch);
    let offset = |index: usize| chars.get(index).map_or(line.len(), |&(byte, _)| byte);
    let mut out: Vec<(Token, String)> = Vec::new();
    let mut push = |token: Token, start: usize, end: usize| {
        let text = &line[offset(start)..offset(end)];
        match out.last_mut() {
            Some((last, previous)) if *last == token => previous.push_str(text),
            _ => out.push((token, text.to_owned())),
        }
    };
    let mut index = 0;
    while let Some(ch) = at(index) {
        let start = index;
        if ch == '/' && at(index + 1) == Some('/') {
            index = chars.len();
            push(Token::Comment, start, index);
        } else if ch == '/' && at(index + 1) == Some('*') {
            index += 2;
            while at(index).is_some() && !(at(index) == Some('*') && at(index + 1) == Some('/')) {
                index += 1;
            }
            index = (index + 2).min(chars.len());
            push(Token::Comment, start, index);
        } else if ch == '"' || ch == '`' || ch == '\'' {
            index += 1;
            while let Some(next) = at(index) {
                index += 1;
                if next == '\\' {
                    index += 1;
                } else if next == ch {
                    break;
                }
            }
            index = index.min(chars.len());
            push(Token::Str, start, index);
        } else if ch.is_ascii_digit() {
            while at(index)
                .is_some_and(|next| next.is_ascii_alphanumeric() || next == '_' || next == '.')
            {
                // `1..5` is a range, not a float.
                if at(index) == Some('.') && at(index + 1) == Some('.') {
                    break;
                }
                index += 1;
            }
            push(Token::Number, start, index);
        } else if ch.is_alphabetic() || ch == '_' {
            while at(index).is_some_and(|next| next.is_alphanumeric() || next == '_') {
                index += 1;
            }
            let word = &line[offset(start)..offset(index)];
            let is_module = at(index) == Some(':') && at(index + 1) == Some(':');
            let is_call = at(index) == Some('(');
            let token = if KEYWORDS.contains(&word) {
                Token::Keyword
            } else if (is_module && names.engine.modules.contains_key(word))
                || (is_call && names.is_function(word))
            {
                Token::Function
            } else {
                Token::Plain
            };
            push(token, start, index);
        } else {
            index += 1;
            push(Token::Plain, start, index);
        }
    }
    out
}

/// The line editor's highlighter, rebuilt with each line's [`Names`] snapshot.
pub struct RhaiHighlighter {
    names: Arc<Names>,
}

impl RhaiHighlighter {
    /// A highlighter knowing `names`.
    pub fn new(names: Arc<Names>) -> Self {
        RhaiHighlighter { names }
    }
}

impl Highlighter for RhaiHighlighter {
    fn highlight(&self, line: &str, _cursor: usize) -> StyledText {
        let mut styled = StyledText::new();
        for (token, text) in tokens(line, &self.names) {
            styled.push((style(token), text));
        }
        styled
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repl::names::EngineNames;

    fn names() -> Names {
        Names {
            engine: Arc::new(EngineNames::from_engine(
                &crate::host::engine::metadata_engine(),
            )),
            vars: Default::default(),
            script_fns: Default::default(),
            map_keys: Default::default(),
        }
    }

    #[test]
    fn keywords_strings_numbers_comments_and_functions() {
        let line = r#"let b = backup::open("a \" b"); sleep(1.5); // done"#;
        let tokens = tokens(line, &names());
        let joined: String = tokens.iter().map(|(_, text)| text.as_str()).collect();
        assert_eq!(joined, line);
        let find = |text: &str| {
            tokens
                .iter()
                .find(|(_, piece)| piece == text)
                .map(|(token, _)| *token)
        };
        assert_eq!(find("let"), Some(Token::Keyword));
        assert_eq!(find("backup"), Some(Token::Function));
        assert_eq!(find(r#""a \" b""#), Some(Token::Str));
        assert_eq!(find("sleep"), Some(Token::Function));
        assert_eq!(find("1.5"), Some(Token::Number));
        assert_eq!(find("// done"), Some(Token::Comment));
    }

    #[test]
    fn ranges_are_not_floats_and_meta_commands_stand_out() {
        let tokens = tokens("for i in 0..5 {}", &names());
        assert!(
            tokens.contains(&(Token::Number, "0".to_owned())),
            "{tokens:?}"
        );
        let meta = super::tokens(":help sleep", &names());
        assert_eq!(meta[0], (Token::Meta, ":help".to_owned()));
    }
}
