//! `import "name"` for scripts: stdlib modules from the override directory, `./stdlib`, or the
//! binary, compiled lazily through the importing engine so nested imports honour overrides too.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rhai::{Engine, EvalAltResult, Module, ModuleResolver, Position, Scope, Shared};

use super::sources::{self, Origin};

/// Resolves stdlib module names; see the module docs.
pub struct StdlibResolver {
    override_dir: Option<PathBuf>,
    cache: Mutex<HashMap<String, Shared<Module>>>,
    loading: Mutex<HashSet<String>>,
}

impl StdlibResolver {
    /// A resolver that looks in `override_dir` first.
    pub fn new(override_dir: Option<PathBuf>) -> Self {
        StdlibResolver {
            override_dir,
            cache: Mutex::new(HashMap::new()),
            loading: Mutex::new(HashSet::new()),
        }
    }

    fn load(
        &self,
        engine: &Engine,
        source_path: Option<&str>,
        path: &str,
        position: Position,
    ) -> Result<(String, String, String), Box<EvalAltResult>> {
        let not_found = || {
            Box::new(EvalAltResult::ErrorModuleNotFound(
                path.to_owned(),
                position,
            ))
        };
        let in_module = |message: String| {
            Box::new(EvalAltResult::ErrorInModule(
                path.to_owned(),
                Box::new(EvalAltResult::ErrorRuntime(message.into(), position)),
                position,
            ))
        };
        let _ = engine;
        if path.starts_with("./") || path.starts_with("../") || path.starts_with('/') {
            let base = source_path
                .and_then(|source| Path::new(source).parent().map(Path::to_path_buf))
                .unwrap_or_else(|| PathBuf::from("."));
            let mut file = base.join(path);
            if file.extension().is_none() {
                file.set_extension("rhai");
            }
            if !file.is_file() {
                return Err(not_found());
            }
            let text = sources::read_text(&file).map_err(|error| in_module(error.to_string()))?;
            let key = file.display().to_string();
            return Ok((key.clone(), key, text));
        }
        let found = sources::find_module(path, self.override_dir.as_deref())
            .map_err(|error| in_module(error.to_string()))?
            .ok_or_else(not_found)?;
        let display = found.display_name("stdlib");
        let key = match &found.origin {
            Origin::File(file) => file.display().to_string(),
            Origin::Embedded => display.clone(),
        };
        Ok((key, display, found.text))
    }
}

impl ModuleResolver for StdlibResolver {
    fn resolve(
        &self,
        engine: &Engine,
        source: Option<&str>,
        path: &str,
        position: Position,
    ) -> Result<Shared<Module>, Box<EvalAltResult>> {
        let (key, display, text) = self.load(engine, source, path, position)?;
        if let Some(module) = self
            .cache
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(&key)
        {
            return Ok(module.clone());
        }
        let wrap = |error: Box<EvalAltResult>| {
            Box::new(EvalAltResult::ErrorInModule(
                path.to_owned(),
                error,
                position,
            ))
        };
        if !self
            .loading
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(key.clone())
        {
            return Err(wrap(Box::new(EvalAltResult::ErrorRuntime(
                format!("module '{path}' imports itself (import cycle)").into(),
                position,
            ))));
        }
        let result = engine
            .compile(&text)
            .map_err(|error| wrap(error.into()))
            .and_then(|mut ast| {
                ast.set_source(display.as_str());
                Module::eval_ast_as_new(Scope::new(), &ast, engine).map_err(wrap)
            });
        self.loading
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(&key);
        let module: Shared<Module> = result?.into();
        self.cache
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(key, module.clone());
        Ok(module)
    }
}
