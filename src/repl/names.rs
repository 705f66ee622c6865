//! What the completer and highlighter know about names: functions, modules, methods and
//! properties from the engine's metadata (read once per session), plus the session's variables
//! with their types and its script functions (a snapshot taken before each line).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use rhai::Engine;

use super::session::Session;

/// Rhai keywords and built-in statements offered by completion and coloured by the highlighter.
pub const KEYWORDS: &[&str] = &[
    "let",
    "const",
    "fn",
    "if",
    "else",
    "while",
    "loop",
    "for",
    "in",
    "do",
    "until",
    "break",
    "continue",
    "return",
    "throw",
    "try",
    "catch",
    "import",
    "export",
    "as",
    "true",
    "false",
    "switch",
    "private",
    "global",
    "this",
    "Fn",
    "call",
    "curry",
    "type_of",
    "print",
    "debug",
    "is_def_var",
    "is_def_fn",
    "is_shared",
];

/// One callable name as completion shows it.
#[derive(Clone, Debug)]
pub struct FnInfo {
    /// The first overload's signature, as the metadata prints it.
    pub signature: String,
    /// The first line of its doc comment.
    pub summary: String,
}

/// Names from the engine's metadata; they do not change during a session.
#[derive(Debug, Default)]
pub struct EngineNames {
    /// Functions callable without a namespace.
    pub globals: BTreeMap<String, FnInfo>,
    /// `module` -> its functions.
    pub modules: BTreeMap<String, BTreeMap<String, FnInfo>>,
    /// Type key -> functions callable as methods on it.
    pub methods: BTreeMap<String, BTreeMap<String, FnInfo>>,
    /// Type key -> property names (from `get$` getters).
    pub properties: BTreeMap<String, BTreeMap<String, FnInfo>>,
    /// Function name (`name`, `module::name`, `get$prop`) -> the type key it returns.
    pub returns: HashMap<String, String>,
    /// Type key -> the name scripts see (`Backup`, `Op`).
    pub display: HashMap<String, String>,
}

/// The comparable form of a type, from a metadata parameter type (`&mut ImmutableString`,
/// `Backup`) or a runtime type name (`string`, `ankus::bindings::backup::Backup`).
pub fn type_key(type_name: &str) -> String {
    let mut name = type_name.trim();
    loop {
        let stripped = name
            .trim_start_matches('&')
            .trim_start_matches("mut ")
            .trim_start();
        if stripped == name {
            break;
        }
        name = stripped;
    }
    let last = name.rsplit("::").next().unwrap_or(name);
    match last {
        "str" | "String" | "ImmutableString" | "SmartString" | "string" => "string",
        "INT" | "i64" | "i32" | "u32" | "u64" | "usize" | "int" => "int",
        "FLOAT" | "f64" | "f32" | "float" => "float",
        "Array" | "array" => "array",
        "Map" | "map" => "map",
        "Blob" | "blob" | "Vec<u8>" => "blob",
        "FnPtr" | "Fn" => "Fn",
        other => other,
    }
    .to_owned()
}

/// The type a function returns, with result wrappers removed.
fn return_key(return_type: &str) -> Option<String> {
    let mut name = return_type.trim();
    for wrapper in ["BindingResult<", "RhaiResultOf<", "Result<"] {
        if let Some(inner) = name.strip_prefix(wrapper) {
            let inner = inner.strip_suffix('>').unwrap_or(inner);
            // `Result<T, E>`: keep T; generic arguments of T itself are left alone.
            let mut depth = 0usize;
            let cut = inner
                .char_indices()
                .find(|&(_, ch)| match ch {
                    '<' => {
                        depth += 1;
                        false
                    }
                    '>' => {
                        depth = depth.saturating_sub(1);
                        false
                    }
                    ',' => depth == 0,
                    _ => false,
                })
                .map(|(index, _)| index)
                .unwrap_or(inner.len());
            name = inner[..cut].trim();
            break;
        }
    }
    let key = type_key(name);
    (!matches!(key.as_str(), "Dynamic" | "()" | "")).then_some(key)
}

fn is_plain_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(first) if first.is_alphabetic() || first == '_')
        && chars.all(|ch| ch.is_alphanumeric() || ch == '_')
}

fn first_doc_line(function: &serde_json::Value) -> String {
    function["docComments"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|block| block.as_str())
        .flat_map(str::lines)
        .map(|line| line.trim().trim_start_matches("///").trim())
        .find(|line| !line.is_empty() && !line.starts_with("/**"))
        .unwrap_or_default()
        .to_owned()
}

impl EngineNames {
    /// Reads the engine's metadata, standard library included.
    pub fn from_engine(engine: &Engine) -> Self {
        let metadata = engine
            .gen_fn_metadata_to_json(true)
            .ok()
            .and_then(|json| serde_json::from_str::<serde_json::Value>(&json).ok())
            .unwrap_or_default();
        Self::from_metadata(&metadata)
    }

    /// Builds the tables from `gen_fn_metadata_to_json` output.
    pub fn from_metadata(metadata: &serde_json::Value) -> Self {
        let mut names = EngineNames::default();
        for custom in metadata["customTypes"].as_array().into_iter().flatten() {
            if let (Some(type_name), Some(display)) =
                (custom["typeName"].as_str(), custom["displayName"].as_str())
            {
                names
                    .display
                    .insert(type_key(type_name), display.to_owned());
            }
        }
        for function in metadata["functions"].as_array().into_iter().flatten() {
            names.add(None, function);
        }
        if let Some(modules) = metadata["modules"].as_object() {
            for (module, body) in modules {
                names.modules.entry(module.clone()).or_default();
                for function in body["functions"].as_array().into_iter().flatten() {
                    names.add(Some(module), function);
                }
            }
        }
        names
    }

    fn add(&mut self, module: Option<&str>, function: &serde_json::Value) {
        let Some(name) = function["name"].as_str() else {
            return;
        };
        let info = FnInfo {
            signature: function["signature"].as_str().unwrap_or(name).to_owned(),
            summary: first_doc_line(function),
        };
        let global = module.is_none() || function["namespace"].as_str() == Some("global");
        let first_param = function["params"]
            .as_array()
            .and_then(|params| params.first())
            .and_then(|param| param["type"].as_str())
            .map(type_key);
        let returns = function["returnType"].as_str().and_then(return_key);
        if let Some(property) = name.strip_prefix("get$") {
            if let Some(receiver) = &first_param {
                self.properties
                    .entry(receiver.clone())
                    .or_default()
                    .entry(property.to_owned())
                    .or_insert(info);
            }
            if let Some(returned) = returns {
                self.returns.entry(name.to_owned()).or_insert(returned);
            }
            return;
        }
        if !is_plain_name(name) {
            return;
        }
        if let Some(returned) = &returns {
            if let Some(module) = module {
                self.returns
                    .entry(format!("{module}::{name}"))
                    .or_insert_with(|| returned.clone());
            }
            if global {
                self.returns
                    .entry(name.to_owned())
                    .or_insert_with(|| returned.clone());
            }
        }
        if let Some(module) = module {
            self.modules
                .entry(module.to_owned())
                .or_default()
                .entry(name.to_owned())
                .or_insert_with(|| info.clone());
        }
        if global {
            if let Some(receiver) = first_param.filter(|key| key != "Dynamic") {
                self.methods
                    .entry(receiver)
                    .or_default()
                    .entry(name.to_owned())
                    .or_insert_with(|| info.clone());
            }
            if module.is_none() {
                self.globals.entry(name.to_owned()).or_insert(info);
            }
        }
    }

    /// The name scripts use for a type key.
    pub fn display_name(&self, key: &str) -> String {
        self.display
            .get(key)
            .cloned()
            .unwrap_or_else(|| key.to_owned())
    }
}

/// Everything completion and highlighting may use for the next line.
#[derive(Clone, Debug)]
pub struct Names {
    /// The engine's names.
    pub engine: Arc<EngineNames>,
    /// Variable -> type key of the value it holds now.
    pub vars: BTreeMap<String, String>,
    /// Script functions defined in the session.
    pub script_fns: BTreeSet<String>,
    /// Variable holding a map -> its keys (completed like properties).
    pub map_keys: BTreeMap<String, Vec<String>>,
}

impl Names {
    /// A snapshot of `session` on top of the engine's names.
    pub fn snapshot(engine: Arc<EngineNames>, session: &Session) -> Self {
        // The scope lists newest first; a shadowed variable keeps its newest type.
        let mut vars = BTreeMap::new();
        let mut map_keys = BTreeMap::new();
        for (name, _, value) in session.scope().iter_raw() {
            if vars.contains_key(name) {
                continue;
            }
            vars.insert(name.to_owned(), type_key(value.type_name()));
            if let Some(map) = value.read_lock::<rhai::Map>() {
                map_keys.insert(
                    name.to_owned(),
                    map.keys().map(|key| key.to_string()).collect(),
                );
            }
        }
        let script_fns = session
            .functions()
            .iter_functions()
            .map(|function| function.name.to_owned())
            .collect();
        Names {
            engine,
            vars,
            script_fns,
            map_keys,
        }
    }

    /// Whether `name` is something callable: a global, module-level or script function.
    pub fn is_function(&self, name: &str) -> bool {
        self.engine.globals.contains_key(name) || self.script_fns.contains(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_keys_match_between_metadata_and_runtime_names() {
        assert_eq!(type_key("&mut ImmutableString"), "string");
        assert_eq!(type_key("string"), "string");
        assert_eq!(type_key("&mut Backup"), "Backup");
        assert_eq!(type_key("ankus::bindings::backup::Backup"), "Backup");
        assert_eq!(type_key("&mut Array"), "array");
        assert_eq!(type_key("INT"), type_key("i64"));
    }

    #[test]
    fn return_types_lose_their_result_wrapper() {
        assert_eq!(
            return_key("BindingResult<Backup>").as_deref(),
            Some("Backup")
        );
        assert_eq!(
            return_key("Result<Map, Box<EvalAltResult>>").as_deref(),
            Some("map")
        );
        assert_eq!(return_key("Dynamic"), None);
    }

    #[test]
    fn typed_methods_properties_and_string_methods_come_from_the_engine() {
        let engine = crate::host::engine::metadata_engine();
        let names = EngineNames::from_engine(&engine);
        let backup = names.methods.get("Backup").expect("Backup methods");
        assert!(backup.contains_key("summary"), "{:?}", backup.keys());
        assert!(backup.contains_key("verify"));
        let op = names.properties.get("ScriptOp").expect("Op properties");
        assert!(op.contains_key("kind"), "{:?}", op.keys());
        assert_eq!(names.display_name("ScriptOp"), "Op");
        let strings = names.methods.get("string").expect("string methods");
        assert!(strings.contains_key("to_upper"), "{:?}", strings.keys());
        assert!(names.modules["backup"].contains_key("open"));
        assert_eq!(names.returns["backup::open"], "Backup");
        assert!(names.globals.contains_key("sleep"));
    }
}
