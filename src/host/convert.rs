//! Conversions between script values and JSON, used by `json::`, the journal and `--output json`.

use rhai::{Array, Dynamic, Map, NativeCallContext};

/// Converts a script value to JSON. Typed objects become their `to_map()`; other opaque values
/// their `to_string()`.
pub fn to_json(call: Option<&NativeCallContext>, value: &Dynamic) -> serde_json::Value {
    let to_map = |item: &Dynamic| -> Option<Dynamic> {
        let call = call?;
        call.call_fn::<Map>("to_map", (item.clone(),))
            .map(Dynamic::from_map)
            .or_else(|_| {
                call.call_fn::<String>("to_string", (item.clone(),))
                    .map(Dynamic::from)
            })
            .ok()
    };
    to_json_with(&to_map, value)
}

/// Converts a script value to JSON outside a native call, asking `engine` for typed objects'
/// `to_map()`.
pub fn to_json_in(engine: &rhai::Engine, value: &Dynamic) -> serde_json::Value {
    let to_map = |item: &Dynamic| -> Option<Dynamic> {
        let options = rhai::CallFnOptions::new()
            .in_all_namespaces(true)
            .eval_ast(false);
        let ast = rhai::AST::empty();
        engine
            .call_fn_with_options::<Map>(
                options,
                &mut rhai::Scope::new(),
                &ast,
                "to_map",
                (item.clone(),),
            )
            .map(Dynamic::from_map)
            .ok()
    };
    to_json_with(&to_map, value)
}

/// The shared walk: `to_map` turns an opaque value into something JSON-shaped.
fn to_json_with(
    to_map: &dyn Fn(&Dynamic) -> Option<Dynamic>,
    value: &Dynamic,
) -> serde_json::Value {
    if value.is_unit() {
        return serde_json::Value::Null;
    }
    if let Some(flag) = value.clone().try_cast::<bool>() {
        return flag.into();
    }
    if let Some(number) = value.clone().try_cast::<rhai::INT>() {
        return number.into();
    }
    if let Some(number) = value.clone().try_cast::<rhai::FLOAT>() {
        return serde_json::Number::from_f64(number)
            .map(serde_json::Value::Number)
            .unwrap_or(serde_json::Value::Null);
    }
    if value.is_string() || value.is_char() {
        return value.to_string().into();
    }
    if value.is_array() {
        let array = value.clone().cast::<Array>();
        return array
            .iter()
            .map(|item| to_json_with(to_map, item))
            .collect();
    }
    if value.is_map() {
        let map = value.clone().cast::<Map>();
        return map
            .iter()
            .map(|(key, item)| (key.to_string(), to_json_with(to_map, item)))
            .collect::<serde_json::Map<_, _>>()
            .into();
    }
    if value.is_blob() {
        return value.clone().cast::<rhai::Blob>().into();
    }
    match to_map(value) {
        Some(shaped) if shaped.is_map() || shaped.is_string() => to_json_with(to_map, &shaped),
        _ => value.to_string().into(),
    }
}

/// Converts JSON to a script value (objects become maps, arrays arrays).
pub fn from_json(value: &serde_json::Value) -> Dynamic {
    match value {
        serde_json::Value::Null => Dynamic::UNIT,
        serde_json::Value::Bool(flag) => (*flag).into(),
        serde_json::Value::Number(number) => match number.as_i64() {
            Some(int) => int.into(),
            None => number.as_f64().unwrap_or(f64::NAN).into(),
        },
        serde_json::Value::String(text) => text.clone().into(),
        serde_json::Value::Array(items) => {
            Dynamic::from_array(items.iter().map(from_json).collect())
        }
        serde_json::Value::Object(fields) => Dynamic::from_map(
            fields
                .iter()
                .map(|(key, item)| (key.as_str().into(), from_json(item)))
                .collect(),
        ),
    }
}
