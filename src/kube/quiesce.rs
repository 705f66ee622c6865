//! The quiesce mark: an annotation ankus writes on the pachd Service before it pauses
//! pipelines or moves NodePorts, naming the run that holds the cluster, the pipelines it is
//! pausing, the saved spec and the ports it moves. It lives with the cluster, so a successor
//! of a run that was killed (or an operator with `unblock-ingress`/`resume`) finds exactly what
//! to undo, and a second run finds the first one's lease.

use serde_json::{Value, json};

use super::client::{KubeClient, PatchType};
use super::error::KubeError;

/// The annotation that carries the mark (its value is a JSON document).
pub const MARK_ANNOTATION: &str = "ankus.io/quiesce";

/// The annotation as a JSON-pointer path segment (`/` escaped as `~1`).
const MARK_POINTER: &str = "/metadata/annotations/ankus.io~1quiesce";

/// How often a mark write is re-read and re-sent when the Service changed under it.
const ATTEMPTS: u32 = 5;

/// A mark found on a Service.
#[derive(Clone, Debug, PartialEq)]
pub struct QuiesceMark {
    /// The record as the run wrote it (`holder`, `state`, `pipelines`, `saved`, `ports`, ...).
    pub record: Value,
    /// Whether the Service's nodePorts are where the record's `ports` (old → new) moved them.
    pub swapped: bool,
}

/// The moves a record names: `ports` maps an old nodePort (as a string) to its new one.
fn moves(record: &Value) -> Vec<(i64, i64)> {
    record["ports"]
        .as_object()
        .map(|ports| {
            ports
                .iter()
                .filter_map(|(from, to)| Some((from.parse::<i64>().ok()?, to.as_i64()?)))
                .collect()
        })
        .unwrap_or_default()
}

/// The nodePorts a Service declares.
fn node_ports(service: &Value) -> Vec<i64> {
    service["spec"]["ports"]
        .as_array()
        .map(|ports| {
            ports
                .iter()
                .filter_map(|port| port["nodePort"].as_i64())
                .collect()
        })
        .unwrap_or_default()
}

/// Whether every move of `record` is in place on `service`.
fn is_swapped(service: &Value, record: &Value) -> bool {
    let ports = node_ports(service);
    let moves = moves(record);
    !moves.is_empty()
        && moves
            .iter()
            .all(|(from, to)| ports.contains(to) && !ports.contains(from))
}

/// The mark on `service` (a Service object as read), if it carries one.
pub fn mark_of(service: &Value) -> Result<Option<QuiesceMark>, KubeError> {
    let Some(text) = service["metadata"]["annotations"][MARK_ANNOTATION].as_str() else {
        return Ok(None);
    };
    let record: Value = serde_json::from_str(text).map_err(|error| {
        KubeError::Invalid(format!(
            "read the {MARK_ANNOTATION} annotation of service {}: it is not the JSON ankus writes ({error}); remove it with kubectl annotate if it is stale",
            service["metadata"]["name"].as_str().unwrap_or("?")
        ))
    })?;
    Ok(Some(QuiesceMark {
        swapped: is_swapped(service, &record),
        record,
    }))
}

/// The JSON-patch operation that sets the mark to `record` on `service`.
pub fn set_mark_operation(service: &Value, record: &Value) -> Value {
    let text = record.to_string();
    if service["metadata"]["annotations"].is_object() {
        json!({ "op": "add", "path": MARK_POINTER, "value": text })
    } else {
        json!({ "op": "add", "path": "/metadata/annotations", "value": { MARK_ANNOTATION: text } })
    }
}

/// The operation pinning a patch to the resourceVersion read (the server refuses it with 409
/// Conflict when the object changed since).
fn pin(service: &Value) -> Value {
    json!({
        "op": "replace",
        "path": "/metadata/resourceVersion",
        "value": service["metadata"]["resourceVersion"].as_str().unwrap_or_default(),
    })
}

impl KubeClient {
    /// The quiesce mark on Service `service`, if any.
    pub async fn quiesce_mark(&self, service: &str) -> Result<Option<QuiesceMark>, KubeError> {
        let object = self.get("services", service, None).await?;
        mark_of(&object)
    }

    /// Writes `record` as the mark of Service `service` under the resourceVersion it read, so
    /// of two runs marking at once one wins and the other finds its mark. A mark of another
    /// run (`holder.run` differs from `record`'s) is never overwritten: that is an error
    /// naming its holder.
    pub async fn set_quiesce_mark(&self, service: &str, record: &Value) -> Result<(), KubeError> {
        self.patch_pinned(service, &format!("mark service {service}"), |object| {
            if let Some(existing) = mark_of(object)?
                && existing.record["holder"]["run"] != record["holder"]["run"]
            {
                return Err(KubeError::Held {
                    service: service.to_owned(),
                    holder: crate::holder::describe(&existing.record["holder"]),
                });
            }
            Ok(Some(vec![set_mark_operation(object, record)]))
        })
        .await
        .map(|_| ())
    }

    /// Removes the mark of Service `service`, leaving everything else as it is. Returns
    /// whether there was one.
    pub async fn clear_quiesce_mark(&self, service: &str) -> Result<bool, KubeError> {
        self.patch_pinned(service, &format!("unmark service {service}"), |object| {
            Ok(mark_of(object)?.map(|_| vec![json!({ "op": "remove", "path": MARK_POINTER })]))
        })
        .await
        .map(|after| after.is_some())
    }

    /// Moves back every nodePort the mark of Service `service` moved (new → old) and removes
    /// the mark, in one patch: the Service ends exactly as before the block, whatever else
    /// changed on it since. Ports already back are left alone. Returns the Service after, or
    /// `None` when it carried no mark.
    pub async fn revert_quiesce(&self, service: &str) -> Result<Option<Value>, KubeError> {
        let action = format!("put back the nodePorts of service {service}");
        self.patch_pinned(service, &action, |object| {
            let Some(mark) = mark_of(object)? else {
                return Ok(None);
            };
            let ports = object["spec"]["ports"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let mut operations = Vec::new();
            for (from, to) in moves(&mark.record) {
                if let Some(index) = ports
                    .iter()
                    .position(|port| port["nodePort"].as_i64() == Some(to))
                {
                    let path = format!("/spec/ports/{index}/nodePort");
                    operations.push(json!({ "op": "test", "path": path, "value": to }));
                    operations.push(json!({ "op": "replace", "path": path, "value": from }));
                }
            }
            operations.push(json!({ "op": "remove", "path": MARK_POINTER }));
            Ok(Some(operations))
        })
        .await
    }

    /// Reads Service `service`, asks `plan` for the JSON-patch operations to make (`None`:
    /// nothing to do), and sends them pinned to the resourceVersion read; a conflict (someone
    /// changed the Service meanwhile) reads and plans again, up to [`ATTEMPTS`] times. Returns
    /// the Service after the patch, or `None` when `plan` had nothing to do.
    async fn patch_pinned(
        &self,
        service: &str,
        action: &str,
        plan: impl Fn(&Value) -> Result<Option<Vec<Value>>, KubeError>,
    ) -> Result<Option<Value>, KubeError> {
        for _ in 0..ATTEMPTS {
            let object = self.get("services", service, None).await?;
            let Some(mut operations) = plan(&object)? else {
                return Ok(None);
            };
            operations.insert(0, pin(&object));
            match self
                .patch(
                    "services",
                    service,
                    None,
                    PatchType::Json,
                    &Value::Array(operations),
                    false,
                )
                .await
            {
                Ok(change) => return Ok(Some(change.after)),
                Err(error) if error.is_conflict() => continue,
                Err(error) => return Err(error),
            }
        }
        Err(KubeError::KeptChanging {
            action: action.to_owned(),
            attempts: ATTEMPTS,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(ports: &[i64], mark: Option<&Value>) -> Value {
        let mut object = json!({
            "metadata": { "name": "pachd", "resourceVersion": "7" },
            "spec": { "ports": ports.iter().map(|port| json!({ "nodePort": port })).collect::<Vec<_>>() },
        });
        if let Some(mark) = mark {
            object["metadata"]["annotations"] = json!({ MARK_ANNOTATION: mark.to_string() });
        }
        object
    }

    #[test]
    fn a_mark_knows_whether_its_ports_are_swapped() {
        let record =
            json!({ "holder": { "run": "r" }, "ports": { "30650": 30649, "30600": 31600 } });
        let before = service(&[30650, 30600], Some(&record));
        let after = service(&[30649, 31600], Some(&record));
        let half = service(&[30649, 30600], Some(&record));
        assert_eq!(
            mark_of(&before).expect("mark").map(|m| m.swapped),
            Some(false)
        );
        assert_eq!(
            mark_of(&after).expect("mark").map(|m| m.swapped),
            Some(true)
        );
        assert_eq!(
            mark_of(&half).expect("mark").map(|m| m.swapped),
            Some(false)
        );
        assert_eq!(mark_of(&service(&[30650], None)).expect("none"), None);
    }

    #[test]
    fn a_mangled_mark_is_an_error_naming_the_annotation() {
        let mut object = service(&[30650], None);
        object["metadata"]["annotations"] = json!({ MARK_ANNOTATION: "{not json" });
        let error = mark_of(&object).expect_err("mangled");
        assert!(error.to_string().contains("ankus.io/quiesce"), "{error}");
    }

    #[test]
    fn the_mark_is_added_whether_or_not_the_service_has_annotations() {
        let record = json!({ "state": "pausing" });
        let bare = set_mark_operation(&service(&[30650], None), &record);
        assert_eq!(bare["path"], "/metadata/annotations");
        let annotated = set_mark_operation(&service(&[30650], Some(&record)), &record);
        assert_eq!(annotated["path"], MARK_POINTER);
    }
}
