//! Label and field selectors, as the API server parses them from `labelSelector` and
//! `fieldSelector` query parameters.

use serde_json::Value;

use super::status::ApiError;

#[derive(Clone, Debug, PartialEq)]
enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    Missing(String),
}

/// A parsed label selector and field selector; an empty one matches everything.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Selectors {
    labels: Vec<Requirement>,
    fields: Vec<Requirement>,
}

/// Splits on commas outside parentheses.
fn split_terms(text: &str) -> Vec<String> {
    let mut terms = Vec::new();
    let mut depth = 0usize;
    let mut current = String::new();
    for character in text.chars() {
        match character {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                terms.push(std::mem::take(&mut current));
                continue;
            }
            _ => {}
        }
        current.push(character);
    }
    terms.push(current);
    terms
        .into_iter()
        .map(|term| term.trim().to_owned())
        .filter(|term| !term.is_empty())
        .collect()
}

fn parse_term(term: &str, allow_sets: bool) -> Result<Requirement, ApiError> {
    let bad = || ApiError::bad_request(format!("unable to parse requirement: found '{term}'"));
    if let Some((key, value)) = term.split_once("!=") {
        return Ok(Requirement::NotEquals(
            key.trim().to_owned(),
            value.trim().to_owned(),
        ));
    }
    if let Some((key, value)) = term.split_once("==") {
        return Ok(Requirement::Equals(
            key.trim().to_owned(),
            value.trim().to_owned(),
        ));
    }
    if let Some((key, value)) = term.split_once('=') {
        return Ok(Requirement::Equals(
            key.trim().to_owned(),
            value.trim().to_owned(),
        ));
    }
    if !allow_sets {
        return Err(bad());
    }
    for (word, negated) in [(" notin ", true), (" in ", false)] {
        if let Some((key, rest)) = term.split_once(word) {
            let rest = rest.trim();
            let inner = rest
                .strip_prefix('(')
                .and_then(|rest| rest.strip_suffix(')'))
                .ok_or_else(bad)?;
            let values = inner
                .split(',')
                .map(|value| value.trim().to_owned())
                .filter(|value| !value.is_empty())
                .collect();
            let key = key.trim().to_owned();
            return Ok(if negated {
                Requirement::NotIn(key, values)
            } else {
                Requirement::In(key, values)
            });
        }
    }
    if let Some(key) = term.strip_prefix('!') {
        return Ok(Requirement::Missing(key.trim().to_owned()));
    }
    if term.contains(char::is_whitespace) {
        return Err(bad());
    }
    Ok(Requirement::Exists(term.to_owned()))
}

impl Selectors {
    /// Parses the two query parameters.
    pub fn parse(
        label_selector: Option<&str>,
        field_selector: Option<&str>,
    ) -> Result<Self, ApiError> {
        let labels = split_terms(label_selector.unwrap_or(""))
            .iter()
            .map(|term| parse_term(term, true))
            .collect::<Result<_, _>>()?;
        let fields = split_terms(field_selector.unwrap_or(""))
            .iter()
            .map(|term| parse_term(term, false))
            .collect::<Result<_, _>>()?;
        Ok(Selectors { labels, fields })
    }

    /// Whether `object` matches both selectors.
    pub fn matches(&self, object: &Value) -> bool {
        let label = |key: &str| -> Option<String> {
            object["metadata"]["labels"][key]
                .as_str()
                .map(str::to_owned)
        };
        let field = |key: &str| -> Option<String> {
            let mut current = object;
            for part in key.split('.') {
                current = current.get(part)?;
            }
            Some(match current {
                Value::String(text) => text.clone(),
                Value::Null => String::new(),
                other => other.to_string(),
            })
        };
        self.labels
            .iter()
            .all(|requirement| check(requirement, &label))
            && self.fields.iter().all(|requirement| {
                check(requirement, &|key: &str| {
                    Some(field(key).unwrap_or_default())
                })
            })
    }
}

fn check(requirement: &Requirement, lookup: &dyn Fn(&str) -> Option<String>) -> bool {
    match requirement {
        Requirement::Equals(key, value) => lookup(key).as_deref() == Some(value.as_str()),
        Requirement::NotEquals(key, value) => lookup(key).as_deref() != Some(value.as_str()),
        Requirement::In(key, values) => lookup(key).is_some_and(|found| values.contains(&found)),
        Requirement::NotIn(key, values) => lookup(key).is_none_or(|found| !values.contains(&found)),
        Requirement::Exists(key) => lookup(key).is_some(),
        Requirement::Missing(key) => lookup(key).is_none(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn label_and_field_selectors_filter_like_the_api_server() {
        let pod = json!({"metadata": {"name": "pachd-1", "namespace": "old",
                         "labels": {"app": "pachd", "suite": "pachyderm"}},
                         "status": {"phase": "Running"}});
        let matches = |labels: &str, fields: &str| {
            Selectors::parse(Some(labels), Some(fields))
                .expect("parses")
                .matches(&pod)
        };
        assert!(matches("app=pachd,suite", "status.phase=Running"));
        assert!(matches("app in (etcd, pachd)", "metadata.name!=x"));
        assert!(!matches("app notin (pachd)", ""));
        assert!(!matches("!suite", ""));
        assert!(!matches("", "metadata.namespace=new"));
        assert!(Selectors::parse(None, Some("status.phase")).is_err());
    }
}
