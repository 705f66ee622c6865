//! How the REPL shows values: arrays of typed objects as aligned tables (columns from their
//! `to_map()`), maps and nested data as indented JSON-like text, anything else as its
//! `to_debug`; long output is cut with a count of what was left out.

use rhai::{AST, Array, CallFnOptions, Dynamic, Engine, Map, Scope};

use crate::host::convert::to_json_in;

/// The widest a table cell gets before it is shortened.
const MAX_CELL: usize = 48;

/// Renders `value`; `None` for `()`. With `limit`, at most that many table rows or lines.
pub fn render(engine: &Engine, value: &Dynamic, limit: Option<usize>) -> Option<String> {
    if value.is_unit() {
        return None;
    }
    if value.is_array() {
        let items = value.clone().cast::<Array>();
        if let Some(rows) = typed_rows(engine, &items) {
            return Some(table(engine, &rows, limit));
        }
        if items.iter().any(|item| item.is_array() || item.is_map()) {
            return Some(cut_lines(pretty_json(engine, value), limit));
        }
    }
    if value.is_map() {
        return Some(cut_lines(pretty_json(engine, value), limit));
    }
    Some(cut_lines(to_debug(engine, value), limit))
}

/// A value's script-level `to_debug` (typed objects define it), else its plain form.
pub fn to_debug(engine: &Engine, value: &Dynamic) -> String {
    call_on(engine, "to_debug", value)
        .and_then(|shown| shown.into_string().ok())
        .unwrap_or_else(|| value.to_string())
}

/// Whether a value is one of the bindings' typed objects rather than a Rhai built-in.
fn is_typed(value: &Dynamic) -> bool {
    !matches!(
        value.type_name(),
        "()" | "bool"
            | "i64"
            | "i32"
            | "f64"
            | "f32"
            | "string"
            | "char"
            | "array"
            | "map"
            | "blob"
            | "Fn"
            | "timestamp"
            | "decimal"
    )
}

fn call_on(engine: &Engine, function: &str, value: &Dynamic) -> Option<Dynamic> {
    let options = CallFnOptions::new().in_all_namespaces(true).eval_ast(false);
    engine
        .call_fn_with_options::<Dynamic>(
            options,
            &mut Scope::new(),
            &AST::empty(),
            function,
            (value.clone(),),
        )
        .ok()
}

/// Each item's `to_map()`, when every item is a typed object that has one.
fn typed_rows(engine: &Engine, items: &Array) -> Option<Vec<Map>> {
    if items.is_empty() || !items.iter().all(is_typed) {
        return None;
    }
    items
        .iter()
        .map(|item| call_on(engine, "to_map", item).and_then(|map| map.try_cast::<Map>()))
        .collect()
}

fn pretty_json(engine: &Engine, value: &Dynamic) -> String {
    serde_json::to_string_pretty(&to_json_in(engine, value)).unwrap_or_else(|_| value.to_string())
}

fn cell(engine: &Engine, value: &Dynamic) -> String {
    let text = if value.is_unit() {
        String::new()
    } else if value.is_string() {
        value.to_string()
    } else if value.is_array() || value.is_map() || is_typed(value) {
        to_json_in(engine, value).to_string()
    } else {
        value.to_string()
    };
    let text = text.replace('\n', " ");
    if text.chars().count() > MAX_CELL {
        let kept: String = text.chars().take(MAX_CELL - 1).collect();
        format!("{kept}…")
    } else {
        text
    }
}

fn table(engine: &Engine, rows: &[Map], limit: Option<usize>) -> String {
    let mut columns: Vec<String> = Vec::new();
    for row in rows {
        for key in row.keys() {
            if !columns.iter().any(|column| column == key.as_str()) {
                columns.push(key.to_string());
            }
        }
    }
    let shown = limit.map_or(rows.len(), |limit| limit.min(rows.len()));
    let cells: Vec<Vec<String>> = rows[..shown]
        .iter()
        .map(|row| {
            columns
                .iter()
                .map(|column| {
                    row.get(column.as_str())
                        .map(|value| cell(engine, value))
                        .unwrap_or_default()
                })
                .collect()
        })
        .collect();
    let mut widths: Vec<usize> = columns
        .iter()
        .map(|column| column.chars().count())
        .collect();
    for row in &cells {
        for (width, text) in widths.iter_mut().zip(row) {
            *width = (*width).max(text.chars().count());
        }
    }
    let mut text = String::new();
    for row in std::iter::once(&columns).chain(cells.iter()) {
        let mut line = String::new();
        for (text, width) in row.iter().zip(&widths) {
            let pad = width.saturating_sub(text.chars().count());
            line.push_str(text);
            line.push_str(&" ".repeat(pad + 2));
        }
        text.push_str(line.trim_end());
        text.push('\n');
    }
    if shown < rows.len() {
        text.push_str(&format!(
            "… {} more row(s), {} in all\n",
            rows.len() - shown,
            rows.len()
        ));
    } else {
        text.push_str(&format!("({} row(s))\n", rows.len()));
    }
    text.trim_end().to_owned()
}

fn cut_lines(text: String, limit: Option<usize>) -> String {
    let Some(limit) = limit else {
        return text;
    };
    let total = text.lines().count();
    if total <= limit {
        return text;
    }
    let mut kept: Vec<&str> = text.lines().take(limit).collect();
    let note = format!("… {} more line(s), {total} in all", total - limit);
    kept.push(&note);
    kept.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn engine() -> Engine {
        crate::host::engine::metadata_engine()
    }

    #[test]
    fn maps_print_as_indented_json() {
        let engine = engine();
        let value: Dynamic = engine.eval("#{ name: \"a\", sizes: [1, 2] }").expect("map");
        let text = render(&engine, &value, None).expect("shown");
        assert!(
            text.starts_with("{\n  \"name\": \"a\",\n  \"sizes\": ["),
            "{text}"
        );
    }

    #[test]
    fn unit_prints_nothing_and_scalars_print_as_debug() {
        let engine = engine();
        assert_eq!(render(&engine, &Dynamic::UNIT, None), None);
        assert_eq!(
            render(&engine, &Dynamic::from("x"), None).as_deref(),
            Some("\"x\"")
        );
        assert_eq!(
            render(&engine, &Dynamic::from(3_i64), None).as_deref(),
            Some("3")
        );
    }

    #[test]
    fn long_output_is_cut_with_a_count() {
        let engine = engine();
        let value: Dynamic = engine
            .eval("let m = #{}; for i in 0..30 { m[`k${i}`] = i; } m")
            .expect("map");
        let text = render(&engine, &value, Some(10)).expect("shown");
        assert_eq!(text.lines().count(), 11, "{text}");
        assert!(text.ends_with("… 22 more line(s), 32 in all"), "{text}");
    }

    #[test]
    fn arrays_of_typed_objects_are_tables() {
        let engine = engine();
        // `backup::open` reads inside the allowed directories only: the temporary one is.
        let dir = tempfile::tempdir().expect("temp dir");
        let dump = dir.path().join("pachd-1.11-auth.dump");
        std::fs::copy(
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../shared/fixtures/pachd-1.11-auth.dump"
            ),
            &dump,
        )
        .expect("copy the fixture");
        let script = format!(
            "let ops = []; for op in backup::open({dump:?}) {{ ops.push(op); if ops.len() == 3 {{ break; }} }} ops"
        );
        let value: Dynamic = engine.eval(&script).expect("ops");
        let text = render(&engine, &value, Some(2)).expect("shown");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert_eq!(lines[3], "… 1 more row(s), 3 in all");
    }
}
