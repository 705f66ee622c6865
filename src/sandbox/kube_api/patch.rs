//! Strategic merge patch (the subset kubectl and kube-rs send for the kinds served here) and
//! the simplified server-side apply built on it.
//!
//! Lists merge by their patch merge key (`containers` by `name`, Service `ports` by `port`,
//! container `ports` by `containerPort`, `env` and `volumes` by `name`, ...); other lists are
//! replaced. The directives `$patch: replace|delete`, `$retainKeys`, `$setElementOrder/` and
//! `$deleteFromPrimitiveList/` are honoured.

use serde_json::{Map, Value};

/// How a list field merges.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ListStrategy {
    /// Elements are maps matched by this key.
    Key(&'static str),
    /// Elements are scalars merged as a set.
    Primitive,
    /// The patch replaces the list.
    Replace,
}

fn list_strategy(path: &[String], field: &str) -> ListStrategy {
    let in_container = path.iter().any(|part| {
        matches!(
            part.as_str(),
            "containers" | "initContainers" | "ephemeralContainers"
        )
    });
    match field {
        "containers" | "initContainers" | "ephemeralContainers" => ListStrategy::Key("name"),
        "ports" if in_container => ListStrategy::Key("containerPort"),
        "ports" => ListStrategy::Key("port"),
        "env" | "volumes" | "imagePullSecrets" => ListStrategy::Key("name"),
        "volumeMounts" => ListStrategy::Key("mountPath"),
        "volumeDevices" => ListStrategy::Key("devicePath"),
        "hostAliases" => ListStrategy::Key("ip"),
        "ownerReferences" => ListStrategy::Key("uid"),
        "conditions" => ListStrategy::Key("type"),
        "topologySpreadConstraints" => ListStrategy::Key("topologyKey"),
        "finalizers" => ListStrategy::Primitive,
        _ => ListStrategy::Replace,
    }
}

/// Applies a strategic merge patch to `target`.
pub fn strategic_merge(target: &Value, patch: &Value) -> Result<Value, String> {
    let Value::Object(patch_map) = patch else {
        return Err("a strategic merge patch must be a JSON object".to_owned());
    };
    let mut result = match target {
        Value::Object(map) => map.clone(),
        _ => Map::new(),
    };
    merge_map(&mut result, patch_map, &mut Vec::new())?;
    Ok(Value::Object(result))
}

/// Removes `$`-directives and nulls from a value that is being inserted whole.
fn clean(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(key, item)| !key.starts_with('$') && !item.is_null())
                .map(|(key, item)| (key.clone(), clean(item)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(
            items
                .iter()
                .filter(|item| {
                    item.as_object()
                        .is_none_or(|map| !map.contains_key("$patch"))
                })
                .map(clean)
                .collect(),
        ),
        other => other.clone(),
    }
}

fn merge_map(
    target: &mut Map<String, Value>,
    patch: &Map<String, Value>,
    path: &mut Vec<String>,
) -> Result<(), String> {
    match patch.get("$patch").and_then(Value::as_str) {
        Some("replace") => {
            *target = match clean(&Value::Object(patch.clone())) {
                Value::Object(map) => map,
                _ => Map::new(),
            };
            return Ok(());
        }
        Some("delete") => {
            target.clear();
            return Ok(());
        }
        Some("merge") | None => {}
        Some(other) => return Err(format!("unknown patch directive $patch: {other}")),
    }
    for (key, value) in patch {
        if key.starts_with('$') {
            continue;
        }
        match value {
            Value::Null => {
                target.remove(key);
            }
            Value::Object(sub_patch) => {
                if sub_patch.get("$patch").and_then(Value::as_str) == Some("delete") {
                    target.remove(key);
                    continue;
                }
                let entry = target
                    .entry(key.clone())
                    .or_insert_with(|| Value::Object(Map::new()));
                if !entry.is_object() {
                    *entry = Value::Object(Map::new());
                }
                if let Value::Object(sub_target) = entry {
                    path.push(key.clone());
                    let merged = merge_map(sub_target, sub_patch, path);
                    path.pop();
                    merged?;
                }
            }
            Value::Array(items) => {
                let strategy = list_strategy(path, key);
                let existing = target.get(key).and_then(Value::as_array).cloned();
                path.push(key.clone());
                let merged = match (strategy, existing) {
                    (ListStrategy::Key(merge_key), Some(existing)) => {
                        merge_list(existing, items, merge_key, path)
                    }
                    (ListStrategy::Primitive, Some(mut existing)) => {
                        for item in items {
                            if !existing.contains(item) {
                                existing.push(item.clone());
                            }
                        }
                        Ok(existing)
                    }
                    _ => Ok(match clean(value) {
                        Value::Array(items) => items,
                        _ => Vec::new(),
                    }),
                };
                path.pop();
                target.insert(key.clone(), Value::Array(merged?));
            }
            scalar => {
                target.insert(key.clone(), scalar.clone());
            }
        }
    }
    // Directives that refer to sibling fields apply after the fields themselves merged.
    for (key, value) in patch {
        if let Some(field) = key.strip_prefix("$deleteFromPrimitiveList/") {
            let remove = value.as_array().cloned().unwrap_or_default();
            if let Some(Value::Array(items)) = target.get_mut(field) {
                items.retain(|item| !remove.contains(item));
            }
        } else if let Some(field) = key.strip_prefix("$setElementOrder/") {
            let order = value.as_array().cloned().unwrap_or_default();
            let merge_key = match list_strategy(path, field) {
                ListStrategy::Key(merge_key) => Some(merge_key),
                _ => None,
            };
            if let Some(Value::Array(items)) = target.get_mut(field) {
                reorder(items, &order, merge_key);
            }
        }
    }
    if let Some(Value::Array(keep)) = patch.get("$retainKeys") {
        let keep: Vec<&str> = keep.iter().filter_map(Value::as_str).collect();
        target.retain(|key, _| keep.contains(&key.as_str()) || patch.contains_key(key));
    }
    Ok(())
}

fn key_of<'a>(item: &'a Value, merge_key: &str) -> Option<&'a Value> {
    item.as_object().and_then(|map| map.get(merge_key))
}

fn merge_list(
    mut existing: Vec<Value>,
    patch: &[Value],
    merge_key: &str,
    path: &mut Vec<String>,
) -> Result<Vec<Value>, String> {
    let replace = patch.iter().any(|item| {
        item.as_object()
            .and_then(|map| map.get("$patch"))
            .and_then(Value::as_str)
            == Some("replace")
    });
    if replace {
        return Ok(patch
            .iter()
            .filter(|item| {
                item.as_object()
                    .is_none_or(|map| !map.contains_key("$patch"))
            })
            .map(clean)
            .collect());
    }
    for item in patch {
        let Some(item_map) = item.as_object() else {
            return Err(format!(
                "list {} merges by '{merge_key}' but holds a non-object element",
                path.join(".")
            ));
        };
        let Some(key_value) = item_map.get(merge_key) else {
            return Err(format!(
                "an element of list {} lacks its merge key '{merge_key}'",
                path.join(".")
            ));
        };
        let position = existing
            .iter()
            .position(|candidate| key_of(candidate, merge_key) == Some(key_value));
        let directive = item_map.get("$patch").and_then(Value::as_str);
        match (directive, position) {
            (Some("delete"), Some(index)) => {
                existing.remove(index);
            }
            (Some("delete"), None) => {}
            (_, Some(index)) => {
                if let Value::Object(current) = &mut existing[index] {
                    merge_map(current, item_map, path)?;
                }
            }
            (_, None) => existing.push(clean(item)),
        }
    }
    Ok(existing)
}

fn reorder(items: &mut Vec<Value>, order: &[Value], merge_key: Option<&str>) {
    let mut remaining = std::mem::take(items);
    for wanted in order {
        let wanted_key = match merge_key {
            Some(merge_key) => key_of(wanted, merge_key),
            None => Some(wanted),
        };
        let position = remaining.iter().position(|candidate| match merge_key {
            Some(merge_key) => key_of(candidate, merge_key) == wanted_key,
            None => Some(candidate) == wanted_key,
        });
        if let Some(index) = position {
            items.push(remaining.remove(index));
        }
    }
    items.extend(remaining);
}

/// Server-side apply, simplified: fields the same manager applied before and no longer
/// applies are removed, then the applied configuration is merged strategically.
pub fn server_side_apply(
    live: &Value,
    previous: Option<&Value>,
    applied: &Value,
) -> Result<Value, String> {
    let mut pruned = live.clone();
    if let Some(previous) = previous {
        remove_dropped(&mut pruned, previous, applied, &mut Vec::new());
    }
    strategic_merge(&pruned, applied)
}

fn remove_dropped(live: &mut Value, previous: &Value, applied: &Value, path: &mut Vec<String>) {
    let (Value::Object(live_map), Value::Object(previous_map)) = (live, previous) else {
        return;
    };
    for (key, previous_value) in previous_map {
        if key == "metadata" && path.is_empty() {
            // Names and the namespace stay; labels and annotations prune like other maps.
            if let (Some(live_meta), Some(applied_meta)) = (live_map.get_mut(key), applied.get(key))
            {
                path.push(key.clone());
                remove_dropped(live_meta, previous_value, applied_meta, path);
                path.pop();
            }
            continue;
        }
        let Some(applied_value) = applied.get(key) else {
            live_map.remove(key);
            continue;
        };
        let Some(live_value) = live_map.get_mut(key) else {
            continue;
        };
        path.push(key.clone());
        match (
            previous_value,
            applied_value,
            list_strategy(&path[..path.len() - 1], key),
        ) {
            (Value::Object(_), Value::Object(_), _) => {
                remove_dropped(live_value, previous_value, applied_value, path)
            }
            (
                Value::Array(previous_items),
                Value::Array(applied_items),
                ListStrategy::Key(merge_key),
            ) => {
                if let Value::Array(live_items) = live_value {
                    live_items.retain(|item| {
                        let item_key = key_of(item, merge_key);
                        let was_applied = previous_items
                            .iter()
                            .any(|previous_item| key_of(previous_item, merge_key) == item_key);
                        let still_applied = applied_items
                            .iter()
                            .any(|applied_item| key_of(applied_item, merge_key) == item_key);
                        !was_applied || still_applied
                    });
                    for live_item in live_items.iter_mut() {
                        let item_key = key_of(live_item, merge_key).cloned();
                        let previous_item = previous_items
                            .iter()
                            .find(|candidate| key_of(candidate, merge_key) == item_key.as_ref());
                        let applied_item = applied_items
                            .iter()
                            .find(|candidate| key_of(candidate, merge_key) == item_key.as_ref());
                        if let (Some(previous_item), Some(applied_item)) =
                            (previous_item, applied_item)
                        {
                            remove_dropped(live_item, previous_item, applied_item, path);
                        }
                    }
                }
            }
            _ => {}
        }
        path.pop();
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn service_ports_merge_by_port_and_keep_the_others() {
        let service = json!({"spec": {"ports": [
            {"name": "a", "port": 650, "nodePort": 30650},
            {"name": "b", "port": 651, "nodePort": 30651}]}});
        let patch = json!({"spec": {"ports": [{"port": 650, "nodePort": 30649}]}});
        let merged = strategic_merge(&service, &patch).expect("merges");
        assert_eq!(
            merged["spec"]["ports"],
            json!([{"name": "a", "port": 650, "nodePort": 30649},
                   {"name": "b", "port": 651, "nodePort": 30651}])
        );
    }

    #[test]
    fn containers_merge_by_name_and_directives_apply() {
        let deployment = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "pachd", "image": "a", "ports": [{"containerPort": 650}],
             "env": [{"name": "X", "value": "1"}, {"name": "Y", "value": "2"}]}]}}}});
        let patch = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "pachd", "image": "b",
             "env": [{"name": "X", "$patch": "delete"}, {"name": "Z", "value": "3"}]},
            {"name": "sidecar", "image": "c"}]}}}});
        let merged = strategic_merge(&deployment, &patch).expect("merges");
        let containers = &merged["spec"]["template"]["spec"]["containers"];
        assert_eq!(containers[0]["image"], "b");
        assert_eq!(containers[0]["ports"], json!([{"containerPort": 650}]));
        assert_eq!(
            containers[0]["env"],
            json!([{"name": "Y", "value": "2"}, {"name": "Z", "value": "3"}])
        );
        assert_eq!(containers[1], json!({"name": "sidecar", "image": "c"}));
        let replaced = strategic_merge(
            &merged,
            &json!({"metadata": {"labels": {"$patch": "replace", "only": "this"}}}),
        )
        .expect("merges");
        assert_eq!(replaced["metadata"]["labels"], json!({"only": "this"}));
    }

    #[test]
    fn set_element_order_reorders_the_merged_list() {
        let service = json!({"spec": {"ports": [{"port": 1}, {"port": 2}]}});
        let patch = json!({"spec": {"$setElementOrder/ports": [{"port": 2}, {"port": 1}],
                                     "ports": [{"port": 2, "name": "two"}]}});
        let merged = strategic_merge(&service, &patch).expect("merges");
        assert_eq!(
            merged["spec"]["ports"],
            json!([{"port": 2, "name": "two"}, {"port": 1}])
        );
    }

    #[test]
    fn apply_removes_fields_the_manager_stopped_applying() {
        let live = json!({"metadata": {"name": "c", "labels": {"a": "1", "b": "2", "other": "x"}},
                          "data": {"k": "v", "gone": "g"}});
        let previous = json!({"metadata": {"name": "c", "labels": {"a": "1", "b": "2"}},
                              "data": {"k": "v", "gone": "g"}});
        let applied = json!({"metadata": {"name": "c", "labels": {"a": "1"}}, "data": {"k": "w"}});
        let result = server_side_apply(&live, Some(&previous), &applied).expect("applies");
        assert_eq!(
            result["metadata"]["labels"],
            json!({"a": "1", "other": "x"})
        );
        assert_eq!(result["data"], json!({"k": "w"}));
    }
}
