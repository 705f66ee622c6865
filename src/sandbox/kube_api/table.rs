//! Server-side printing: `meta.k8s.io/v1` Tables, which `kubectl get` asks for and prints
//! as its columns.

use serde_json::{Value, json};

use super::resources::ResourceType;

fn age(object: &Value) -> String {
    let Some(created) = object["metadata"]["creationTimestamp"]
        .as_str()
        .and_then(|text| text.parse::<jiff::Timestamp>().ok())
    else {
        return "<unknown>".to_owned();
    };
    let seconds = (jiff::Timestamp::now().as_second() - created.as_second()).max(0);
    match seconds {
        0..120 => format!("{seconds}s"),
        120..7_200 => format!("{}m", seconds / 60),
        7_200..172_800 => format!("{}h", seconds / 3600),
        _ => format!("{}d", seconds / 86_400),
    }
}

fn column(name: &str, kind: &str, format: &str, description: &str) -> Value {
    json!({ "name": name, "type": kind, "format": format, "description": description, "priority": 0 })
}

/// A column kubectl shows only with `-o wide`.
fn wide_column(name: &str, description: &str) -> Value {
    json!({ "name": name, "type": "string", "format": "", "description": description, "priority": 1 })
}

fn node_address(object: &Value, kind: &str) -> String {
    object["status"]["addresses"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|entry| entry["type"] == kind)
        .and_then(|entry| entry["address"].as_str())
        .unwrap_or("<none>")
        .to_owned()
}

/// `Ready`, `NotReady` or `Unknown`, then `SchedulingDisabled` for a cordoned node, as
/// kubectl's node printer writes it.
fn node_status(object: &Value) -> String {
    let ready = object["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|condition| condition["type"] == "Ready")
        .map(|condition| match condition["status"].as_str() {
            Some("True") => "Ready",
            Some("False") => "NotReady",
            _ => "Unknown",
        })
        .unwrap_or("Unknown");
    if object["spec"]["unschedulable"] == true {
        format!("{ready},SchedulingDisabled")
    } else {
        ready.to_owned()
    }
}

fn node_roles(object: &Value) -> String {
    let mut roles: Vec<&str> = object["metadata"]["labels"]
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(key, _)| key.strip_prefix("node-role.kubernetes.io/"))
        .filter(|role| !role.is_empty())
        .collect();
    roles.sort_unstable();
    if roles.is_empty() {
        "<none>".to_owned()
    } else {
        roles.join(",")
    }
}

fn service_ports(object: &Value) -> String {
    let ports = object["spec"]["ports"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if ports.is_empty() {
        return "<none>".to_owned();
    }
    ports
        .iter()
        .map(|port| {
            let protocol = port["protocol"].as_str().unwrap_or("TCP");
            match port["nodePort"].as_i64() {
                Some(node_port) => format!("{}:{node_port}/{protocol}", port["port"]),
                None => format!("{}/{protocol}", port["port"]),
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn count(value: &Value) -> i64 {
    value.as_i64().unwrap_or(0)
}

/// Column definitions and one row of cells for `object`.
fn columns_and_cells(resource: &ResourceType, object: &Value) -> (Vec<Value>, Vec<Value>) {
    let name = object["metadata"]["name"].clone();
    let name_column = column(
        "Name",
        "string",
        "name",
        "Name must be unique within a namespace.",
    );
    let age_column = column(
        "Age",
        "string",
        "",
        "CreationTimestamp is a timestamp representing the server time when this object was created.",
    );
    let status = &object["status"];
    let spec = &object["spec"];
    match resource.kind {
        "Pod" => {
            let statuses = status["containerStatuses"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let total = object["spec"]["containers"].as_array().map_or(0, Vec::len);
            let ready = statuses.iter().filter(|item| item["ready"] == true).count();
            let restarts: i64 = statuses
                .iter()
                .map(|item| count(&item["restartCount"]))
                .sum();
            (
                vec![
                    name_column,
                    column(
                        "Ready",
                        "string",
                        "",
                        "The aggregate readiness state of this pod for accepting traffic.",
                    ),
                    column(
                        "Status",
                        "string",
                        "",
                        "The aggregate status of the containers in this pod.",
                    ),
                    column(
                        "Restarts",
                        "string",
                        "",
                        "The number of times the containers in this pod have been restarted.",
                    ),
                    age_column,
                    wide_column(
                        "IP",
                        "IP address allocated to the pod. Routable at least within the cluster. Empty if not yet allocated.",
                    ),
                    wide_column(
                        "Node",
                        "NodeName is a request to schedule this pod onto a specific node.",
                    ),
                    wide_column(
                        "Nominated Node",
                        "nominatedNodeName is set only when this pod preempts other pods on the node.",
                    ),
                    wide_column(
                        "Readiness Gates",
                        "If specified, all readiness gates will be evaluated for pod readiness.",
                    ),
                ],
                vec![
                    name,
                    format!("{ready}/{total}").into(),
                    status["phase"].as_str().unwrap_or("Pending").into(),
                    restarts.to_string().into(),
                    age(object).into(),
                    status["podIP"].as_str().unwrap_or("<none>").into(),
                    spec["nodeName"].as_str().unwrap_or("<none>").into(),
                    "<none>".into(),
                    "<none>".into(),
                ],
            )
        }
        "Node" => {
            let info = &status["nodeInfo"];
            let text = |value: &Value| value.as_str().unwrap_or("<unknown>").to_owned();
            (
                vec![
                    name_column,
                    column("Status", "string", "", "The status of the node"),
                    column("Roles", "string", "", "The roles of the node"),
                    age_column,
                    column(
                        "Version",
                        "string",
                        "",
                        "Kubelet Version reported by the node.",
                    ),
                    wide_column(
                        "Internal-IP",
                        "List of addresses reachable to the node. Queried from cloud provider, if available.",
                    ),
                    wide_column(
                        "External-IP",
                        "List of addresses reachable to the node. Queried from cloud provider, if available.",
                    ),
                    wide_column(
                        "OS-Image",
                        "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy)).",
                    ),
                    wide_column(
                        "Kernel-Version",
                        "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64).",
                    ),
                    wide_column(
                        "Container-Runtime",
                        "Container runtime version reported by the node through runtime remote API (e.g. containerd://1.4.2).",
                    ),
                ],
                vec![
                    name,
                    node_status(object).into(),
                    node_roles(object).into(),
                    age(object).into(),
                    text(&info["kubeletVersion"]).into(),
                    node_address(object, "InternalIP").into(),
                    node_address(object, "ExternalIP").into(),
                    text(&info["osImage"]).into(),
                    text(&info["kernelVersion"]).into(),
                    text(&info["containerRuntimeVersion"]).into(),
                ],
            )
        }
        "Service" => (
            vec![
                name_column,
                column("Type", "string", "", "The type of the service."),
                column("Cluster-IP", "string", "", "The cluster IP of the service."),
                column(
                    "External-IP",
                    "string",
                    "",
                    "The external IP of the service.",
                ),
                column("Port(s)", "string", "", "The ports of the service."),
                age_column,
            ],
            vec![
                name,
                spec["type"].as_str().unwrap_or("ClusterIP").into(),
                spec["clusterIP"].as_str().unwrap_or("<none>").into(),
                "<none>".into(),
                service_ports(object).into(),
                age(object).into(),
            ],
        ),
        "Deployment" => (
            vec![
                name_column,
                column("Ready", "string", "", "Number of the pod with ready state"),
                column(
                    "Up-to-date",
                    "string",
                    "",
                    "Total number of non-terminated pods targeted by this deployment that have the desired template spec.",
                ),
                column(
                    "Available",
                    "string",
                    "",
                    "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment.",
                ),
                age_column,
            ],
            vec![
                name,
                format!(
                    "{}/{}",
                    count(&status["readyReplicas"]),
                    spec["replicas"].as_i64().unwrap_or(1)
                )
                .into(),
                count(&status["updatedReplicas"]).into(),
                count(&status["availableReplicas"]).into(),
                age(object).into(),
            ],
        ),
        "StatefulSet" => (
            vec![
                name_column,
                column("Ready", "string", "", "Number of the pod with ready state"),
                age_column,
            ],
            vec![
                name,
                format!(
                    "{}/{}",
                    count(&status["readyReplicas"]),
                    spec["replicas"].as_i64().unwrap_or(1)
                )
                .into(),
                age(object).into(),
            ],
        ),
        "ReplicaSet" | "ReplicationController" => (
            vec![
                name_column,
                column("Desired", "integer", "", "Number of desired pods."),
                column("Current", "integer", "", "Number of actually running pods."),
                column("Ready", "integer", "", "Number of ready pods."),
                age_column,
            ],
            vec![
                name,
                spec["replicas"].as_i64().unwrap_or(1).into(),
                count(&status["replicas"]).into(),
                count(&status["readyReplicas"]).into(),
                age(object).into(),
            ],
        ),
        "Namespace" => (
            vec![
                name_column,
                column("Status", "string", "", "The status of the namespace"),
                age_column,
            ],
            vec![
                name,
                status["phase"].as_str().unwrap_or("Active").into(),
                age(object).into(),
            ],
        ),
        "ConfigMap" => (
            vec![
                name_column,
                column("Data", "string", "", "Number of data entries."),
                age_column,
            ],
            vec![
                name,
                object["data"]
                    .as_object()
                    .map_or(0, |data| data.len())
                    .into(),
                age(object).into(),
            ],
        ),
        "Secret" => (
            vec![
                name_column,
                column("Type", "string", "", "The type of the secret"),
                column("Data", "string", "", "Number of data entries."),
                age_column,
            ],
            vec![
                name,
                object["type"].as_str().unwrap_or("Opaque").into(),
                object["data"]
                    .as_object()
                    .map_or(0, |data| data.len())
                    .into(),
                age(object).into(),
            ],
        ),
        "Event" => (
            vec![
                column(
                    "Last Seen",
                    "string",
                    "",
                    "Time since the event was last seen.",
                ),
                column("Type", "string", "", "Type of this event."),
                column("Reason", "string", "", "Why the event happened."),
                column("Object", "string", "", "The object this event is about."),
                column("Message", "string", "", "A human-readable description."),
            ],
            vec![
                age(object).into(),
                object["type"].clone(),
                object["reason"].clone(),
                format!(
                    "{}/{}",
                    object["involvedObject"]["kind"]
                        .as_str()
                        .unwrap_or("")
                        .to_lowercase(),
                    object["involvedObject"]["name"].as_str().unwrap_or("")
                )
                .into(),
                object["message"].clone(),
            ],
        ),
        _ => (
            vec![name_column, age_column],
            vec![name, age(object).into()],
        ),
    }
}

/// A Table of `objects`; each row carries its full object.
pub fn to_table(resource: &ResourceType, objects: &[Value], resource_version: u64) -> Value {
    let mut definitions = columns_and_cells(resource, &Value::Null).0;
    let rows: Vec<Value> = objects
        .iter()
        .map(|object| {
            let (columns, cells) = columns_and_cells(resource, object);
            definitions = columns;
            json!({ "cells": cells, "object": object })
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": { "resourceVersion": resource_version.to_string() },
        "columnDefinitions": definitions,
        "rows": rows,
    })
}

/// Whether an `Accept` header asks for a Table.
pub fn wants_table(accept: &str) -> bool {
    accept
        .split(',')
        .next()
        .is_some_and(|first| first.contains("as=Table"))
}
