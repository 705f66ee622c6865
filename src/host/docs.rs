//! The documentation of every function scripts can call, read from Rhai's function metadata
//! (the bindings' doc comments): rendered by `ankus docs` and the REPL's `:help`.

/// One documented function, from the metadata JSON.
pub struct FunctionDoc {
    /// `pachd::connect` or `info`.
    pub qualified_name: String,
    /// The signature as Rhai prints it.
    pub signature: String,
    /// The doc comment, without `///`.
    pub doc: String,
}

/// Every function in the metadata, sorted by qualified name (overloads kept).
pub fn function_docs(metadata: &serde_json::Value) -> Vec<FunctionDoc> {
    let mut docs = Vec::new();
    collect(metadata, "", &mut docs);
    docs.sort_by(|a, b| {
        a.qualified_name
            .cmp(&b.qualified_name)
            .then(a.signature.cmp(&b.signature))
    });
    docs
}

fn collect(node: &serde_json::Value, prefix: &str, docs: &mut Vec<FunctionDoc>) {
    if let Some(functions) = node.get("functions").and_then(|value| value.as_array()) {
        for function in functions {
            let name = function["name"].as_str().unwrap_or_default();
            if name.starts_with("get$") || name.starts_with("set$") || name.starts_with("index$") {
                continue;
            }
            let doc = function["docComments"]
                .as_array()
                .map(|lines| {
                    lines
                        .iter()
                        .filter_map(|line| line.as_str())
                        .flat_map(|block| block.lines())
                        .map(|line| {
                            line.trim_start()
                                .trim_start_matches("///")
                                .strip_prefix(' ')
                                .unwrap_or(line.trim_start().trim_start_matches("///"))
                        })
                        .collect::<Vec<_>>()
                        .join("\n")
                })
                .unwrap_or_default();
            docs.push(FunctionDoc {
                qualified_name: format!("{prefix}{name}"),
                signature: format!("{prefix}{}", function["signature"].as_str().unwrap_or(name)),
                doc,
            });
        }
    }
    if let Some(modules) = node.get("modules").and_then(|value| value.as_object()) {
        for (module_name, module) in modules {
            collect(module, &format!("{prefix}{module_name}::"), docs);
        }
    }
}
