//! The line editor: reedline with the REPL's key bindings, completion menu, validator, history
//! hints and prompt.

use std::borrow::Cow;
use std::io::Write;
use std::sync::Arc;

use nu_ansi_term::{Color, Style};
use reedline::{
    ColumnarMenu, DefaultHinter, EditCommand, Emacs, FileBackedHistory, KeyCode, KeyModifiers,
    MenuBuilder, Prompt, PromptEditMode, PromptHistorySearch, PromptHistorySearchStatus, Reedline,
    ReedlineEvent, ReedlineMenu, default_emacs_keybindings,
};
use rhai::Engine;

use super::history::history_path;
use super::validator::RhaiValidator;

/// Entries kept in the history file.
const HISTORY_SIZE: usize = 10_000;

/// Builds the editor. Completer and highlighter are attached per line by the caller.
pub fn build(engine: Arc<Engine>) -> Reedline {
    let mut keybindings = default_emacs_keybindings();
    keybindings.add_binding(
        KeyModifiers::NONE,
        KeyCode::Tab,
        ReedlineEvent::UntilFound(vec![
            ReedlineEvent::Menu("completion_menu".to_owned()),
            ReedlineEvent::MenuNext,
        ]),
    );
    keybindings.add_binding(
        KeyModifiers::ALT,
        KeyCode::Enter,
        ReedlineEvent::Edit(vec![EditCommand::InsertNewline]),
    );
    let menu = ColumnarMenu::default().with_name("completion_menu");
    let colour = crate::host::render::colour_wanted(true);
    let hint_style = if colour {
        Style::new().italic().fg(Color::DarkGray)
    } else {
        Style::new()
    };
    let mut editor = Reedline::create()
        .with_ansi_colors(colour)
        .with_validator(Box::new(RhaiValidator::new(engine)))
        .with_menu(ReedlineMenu::EngineCompleter(Box::new(menu)))
        .with_quick_completions(true)
        .with_partial_completions(true)
        .with_hinter(Box::new(DefaultHinter::default().with_style(hint_style)))
        .with_edit_mode(Box::new(Emacs::new(keybindings)))
        .use_bracketed_paste(true)
        // Lines starting with a space stay out of the history (secrets).
        .with_history_exclusion_prefix(Some(" ".to_owned()));
    // Without a usable history file the REPL still works; history then lasts one session.
    if let Some(path) = history_path() {
        match FileBackedHistory::with_file(HISTORY_SIZE, path.clone()) {
            Ok(history) => editor = editor.with_history(Box::new(history)),
            Err(error) => {
                let _ = writeln!(
                    std::io::stderr(),
                    "warning: history is not saved: cannot open {}: {error}",
                    path.display()
                );
            }
        }
    }
    editor
}

/// `ankus> `, with `  ...` on continuation lines.
pub struct ReplPrompt;

impl Prompt for ReplPrompt {
    fn render_prompt_left(&self) -> Cow<'_, str> {
        Cow::Borrowed("ankus")
    }

    fn render_prompt_right(&self) -> Cow<'_, str> {
        Cow::Borrowed("")
    }

    fn render_prompt_indicator(&self, _mode: PromptEditMode) -> Cow<'_, str> {
        Cow::Borrowed("> ")
    }

    fn render_prompt_multiline_indicator(&self) -> Cow<'_, str> {
        Cow::Borrowed("  ... ")
    }

    fn render_prompt_history_search_indicator(&self, search: PromptHistorySearch) -> Cow<'_, str> {
        let prefix = match search.status {
            PromptHistorySearchStatus::Passing => "",
            PromptHistorySearchStatus::Failing => "failing ",
        };
        Cow::Owned(format!("({prefix}search: {}) ", search.term))
    }
}
