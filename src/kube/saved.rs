//! Saving an object before changing it and restoring it afterwards: the file holds the object
//! without server-managed fields, and the restore replaces the live object under a
//! resourceVersion precondition (a concurrent change fails or is retried on a fresh read,
//! never silently overwritten).

use std::path::Path;

use serde_json::{Value, json};

use super::client::{Change, KubeClient};
use super::error::KubeError;
use super::objects::strip_server_fields;

/// A saved object as read back from its file.
#[derive(Clone, Debug, PartialEq)]
pub struct SavedObject {
    /// `apiVersion/Kind` of the object.
    pub kind: String,
    /// Name.
    pub name: String,
    /// Namespace ("" for cluster-scoped objects).
    pub namespace: String,
    /// The resourceVersion it had when saved.
    pub resource_version: String,
    /// The context it was saved from.
    pub context: String,
    /// The object without server-managed fields.
    pub object: Value,
}

impl SavedObject {
    /// The file's JSON.
    pub fn to_json(&self) -> Value {
        json!({
            "ankus": "saved-object/v1",
            "kind": self.kind,
            "name": self.name,
            "namespace": self.namespace,
            "resourceVersion": self.resource_version,
            "context": self.context,
            "savedAt": jiff::Timestamp::now().to_string(),
            "object": self.object,
        })
    }

    /// Parses a saved file's JSON. A plain object (e.g. `kubectl get -o json` output) is
    /// accepted too.
    pub fn from_json(value: &Value) -> Result<SavedObject, KubeError> {
        let object = if value["ankus"] == "saved-object/v1" {
            value["object"].clone()
        } else {
            value.clone()
        };
        let api_version = object["apiVersion"].as_str().unwrap_or("");
        let kind = object["kind"].as_str().unwrap_or("");
        let name = object["metadata"]["name"].as_str().unwrap_or("");
        if api_version.is_empty() || kind.is_empty() || name.is_empty() {
            return Err(KubeError::Invalid(
                "read the saved object: it lacks apiVersion, kind or metadata.name".to_owned(),
            ));
        }
        Ok(SavedObject {
            kind: format!("{api_version}/{kind}"),
            name: name.to_owned(),
            namespace: object["metadata"]["namespace"]
                .as_str()
                .unwrap_or("")
                .to_owned(),
            resource_version: value["resourceVersion"]
                .as_str()
                .or_else(|| object["metadata"]["resourceVersion"].as_str())
                .unwrap_or("")
                .to_owned(),
            context: value["context"].as_str().unwrap_or("").to_owned(),
            object: strip_server_fields(&object),
        })
    }

    /// Reads a saved file.
    pub fn read(path: &Path) -> Result<SavedObject, KubeError> {
        let bytes = std::fs::read(path).map_err(|source| KubeError::Io {
            action: "read",
            path: path.display().to_string(),
            source,
        })?;
        let value: Value = serde_json::from_slice(&bytes).map_err(|error| {
            KubeError::Invalid(format!("read {}: not JSON: {error}", path.display()))
        })?;
        SavedObject::from_json(&value)
    }
}

impl KubeClient {
    /// Reads an object and returns it ready to save (server-managed fields stripped).
    pub async fn snapshot(
        &self,
        kind: &str,
        name: &str,
        namespace: Option<&str>,
    ) -> Result<SavedObject, KubeError> {
        let object = self.get(kind, name, namespace).await?;
        let mut saved = SavedObject::from_json(&object)?;
        saved.context = self.context().to_owned();
        Ok(saved)
    }

    /// Writes a snapshot to `path` atomically.
    pub fn write_saved(saved: &SavedObject, path: &Path) -> Result<(), KubeError> {
        let text = serde_json::to_string_pretty(&saved.to_json()).unwrap_or_default();
        crate::fsutil::write_atomic(path, text.as_bytes()).map_err(|source| KubeError::Io {
            action: "write",
            path: path.display().to_string(),
            source,
        })
    }

    /// Puts a saved object back: the live object is replaced by the saved one under the live
    /// resourceVersion (retried on a fresh read after a 409). Creates it when it is gone.
    pub async fn restore(&self, saved: &SavedObject, dry_run: bool) -> Result<Change, KubeError> {
        let namespace = (!saved.namespace.is_empty()).then_some(saved.namespace.as_str());
        match self.get(&saved.kind, &saved.name, namespace).await {
            Ok(_) => {
                self.replace(&saved.kind, &saved.name, namespace, &saved.object, dry_run)
                    .await
            }
            Err(error) if error.is_not_found() => {
                let after = self.create(&saved.object, dry_run).await?;
                Ok(Change {
                    before: None,
                    after,
                })
            }
            Err(error) => Err(error),
        }
    }
}
