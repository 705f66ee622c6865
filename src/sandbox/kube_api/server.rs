//! The HTTP face of the emulated cluster: the Kubernetes API paths kubectl and kube-rs use,
//! served over plain HTTP from a [`KubeState`].

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::kubeconfig::SANDBOX_TOKEN;
use super::resources::{self, RESOURCES, ResourceType};
use super::selector::Selectors;
use super::state::{KubeState, PatchKind, WatchEvent, WriteOptions};
use super::status::ApiError;
use super::table;
use super::tls::{DualListener, ServerIdentity};

/// The Kubernetes version the emulated server reports.
pub const SERVER_VERSION: (&str, &str) = ("1", "29");

#[derive(Clone)]
struct App {
    state: Arc<KubeState>,
    stop: CancellationToken,
}

/// Serves the Kubernetes API for `state` on `listener`, over HTTPS with `identity` and over
/// plain HTTP on the same port, until `shutdown` completes. Open watches end at shutdown.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<KubeState>,
    identity: &ServerIdentity,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let stop = CancellationToken::new();
    let listener =
        DualListener::start(listener, identity, stop.clone()).map_err(std::io::Error::other)?;
    let app = App {
        state,
        stop: stop.clone(),
    };
    let router = Router::new()
        .route(
            "/api/v1/namespaces/{namespace}/pods/{name}/portforward",
            axum::routing::any(port_forward),
        )
        .fallback(handle)
        .with_state(app);
    let stop_on_shutdown = stop.clone();
    axum::serve(listener, router)
        .with_graceful_shutdown(async move {
            shutdown.await;
            stop_on_shutdown.cancel();
        })
        .await
}

fn json_response(code: StatusCode, body: &Value) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn error_response(error: &ApiError) -> Response {
    json_response(
        StatusCode::from_u16(error.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        &error.to_status(),
    )
}

/// What a request path names.
enum Target {
    Version,
    CoreVersions,
    GroupList,
    Group(String),
    ResourceList(String, String),
    OpenApiV3Root,
    OpenApiV3(String, String),
    Collection {
        resource: &'static ResourceType,
        namespace: Option<String>,
    },
    Object {
        resource: &'static ResourceType,
        namespace: String,
        name: String,
        subresource: Option<String>,
    },
}

fn parse_path(path: &str) -> Option<Target> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match parts.as_slice() {
        ["version"] => return Some(Target::Version),
        ["api"] => return Some(Target::CoreVersions),
        ["api", "v1"] => return Some(Target::ResourceList(String::new(), "v1".to_owned())),
        ["apis"] => return Some(Target::GroupList),
        ["apis", group] => return Some(Target::Group((*group).to_owned())),
        ["apis", group, version] => {
            return Some(Target::ResourceList(
                (*group).to_owned(),
                (*version).to_owned(),
            ));
        }
        ["openapi", "v3"] => return Some(Target::OpenApiV3Root),
        ["openapi", "v3", "api", "v1"] => {
            return Some(Target::OpenApiV3(String::new(), "v1".to_owned()));
        }
        ["openapi", "v3", "apis", group, version] => {
            return Some(Target::OpenApiV3(
                (*group).to_owned(),
                (*version).to_owned(),
            ));
        }
        ["api", "v1", rest @ ..] => ("", "v1", rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return None,
    };
    let namespaced_plural = |plural: &str| {
        resources::find(group, version, plural).filter(|resource| resource.namespaced)
    };
    match rest {
        ["namespaces", namespace, plural, tail @ ..] if namespaced_plural(plural).is_some() => {
            let resource = namespaced_plural(plural)?;
            match tail {
                [] => Some(Target::Collection {
                    resource,
                    namespace: Some((*namespace).to_owned()),
                }),
                [name] => Some(Target::Object {
                    resource,
                    namespace: (*namespace).to_owned(),
                    name: (*name).to_owned(),
                    subresource: None,
                }),
                [name, subresource] => Some(Target::Object {
                    resource,
                    namespace: (*namespace).to_owned(),
                    name: (*name).to_owned(),
                    subresource: Some((*subresource).to_owned()),
                }),
                _ => None,
            }
        }
        [plural] => Some(Target::Collection {
            resource: resources::find(group, version, plural)?,
            namespace: None,
        }),
        [plural, name] => {
            let resource = resources::find(group, version, plural)?;
            (!resource.namespaced).then(|| Target::Object {
                resource,
                namespace: String::new(),
                name: (*name).to_owned(),
                subresource: None,
            })
        }
        [plural, name, subresource] => {
            let resource = resources::find(group, version, plural)?;
            (!resource.namespaced).then(|| Target::Object {
                resource,
                namespace: String::new(),
                name: (*name).to_owned(),
                subresource: Some((*subresource).to_owned()),
            })
        }
        _ => None,
    }
}

async fn handle(
    State(app): State<App>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let query: HashMap<String, String> = Query::try_from_uri(&uri)
        .map(|Query(query)| query)
        .unwrap_or_default();
    let header_text = |name: header::HeaderName| {
        headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let accept = header_text(header::ACCEPT);
    let content_type = header_text(header::CONTENT_TYPE);
    let host = header_text(header::HOST);
    if let Err(error) = authenticate(&headers, uri.path()) {
        return error_response(&error);
    }
    let Some(target) = parse_path(uri.path()) else {
        return error_response(&ApiError::no_such_resource());
    };
    let result = match target {
        Target::Version => Ok(json_response(StatusCode::OK, &version())),
        Target::CoreVersions => Ok(json_response(
            StatusCode::OK,
            &json!({
                "kind": "APIVersions",
                "versions": ["v1"],
                "serverAddressByClientCIDRs": [{ "clientCIDR": "0.0.0.0/0", "serverAddress": host }],
            }),
        )),
        Target::GroupList => Ok(json_response(StatusCode::OK, &group_list())),
        Target::Group(group) => match group_document(&group) {
            Some(document) => Ok(json_response(StatusCode::OK, &document)),
            None => Err(ApiError::no_such_resource()),
        },
        Target::ResourceList(group, version) => match resource_list(&group, &version) {
            Some(document) => Ok(json_response(StatusCode::OK, &document)),
            None => Err(ApiError::no_such_resource()),
        },
        Target::OpenApiV3Root => Ok(json_response(StatusCode::OK, &openapi_root())),
        Target::OpenApiV3(group, version) => match openapi_group_version(&group, &version) {
            Some(document) => Ok(json_response(StatusCode::OK, &document)),
            None => Err(ApiError::no_such_resource()),
        },
        Target::Collection {
            resource,
            namespace,
        } => {
            collection(
                &app,
                method,
                resource,
                namespace,
                &query,
                &accept,
                &content_type,
                body,
            )
            .await
        }
        Target::Object {
            resource,
            namespace,
            name,
            subresource,
        } => {
            object(
                &app,
                method,
                resource,
                &namespace,
                &name,
                subresource.as_deref(),
                &query,
                &accept,
                &content_type,
                body,
            )
            .await
        }
    };
    result.unwrap_or_else(|error| error_response(&error))
}

/// `pods/NAME/portforward`: a WebSocket upgrade (see [`super::portforward`]).
async fn port_forward(
    State(app): State<App>,
    axum::extract::Path((namespace, name)): axum::extract::Path<(String, String)>,
    request: axum::extract::Request,
) -> Response {
    let served = (|| {
        authenticate(request.headers(), request.uri().path())?;
        let pods = resources::find("", "v1", "pods").ok_or_else(ApiError::no_such_resource)?;
        let pod = app.state.get(pods, &namespace, &name)?;
        let query = request.uri().query().map(str::to_owned);
        super::portforward::upgrade(
            app.state.pod_ports().clone(),
            &pod,
            query.as_deref(),
            request,
        )
    })();
    served.unwrap_or_else(|error| error_response(&error))
}

/// Checks the request's bearer token as an API server's token authenticator does: a wrong
/// token is refused everywhere; no token at all only reaches `/version`, which a real server
/// shows to anonymous clients (the `system:public-info-viewer` role).
fn authenticate(headers: &HeaderMap, path: &str) -> Result<(), ApiError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return if path.trim_end_matches('/') == "/version" {
            Ok(())
        } else {
            Err(ApiError::unauthorized())
        };
    };
    // The scheme is case-insensitive (RFC 7235), as the API server's token authenticator has it.
    let token = value
        .to_str()
        .ok()
        .and_then(|text| text.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim());
    if token == Some(SANDBOX_TOKEN) {
        Ok(())
    } else {
        Err(ApiError::unauthorized())
    }
}

fn write_options(query: &HashMap<String, String>) -> WriteOptions {
    WriteOptions {
        field_manager: query.get("fieldManager").cloned().unwrap_or_default(),
        force: query.get("force").is_some_and(|force| force == "true"),
        dry_run: query.get("dryRun").is_some_and(|dry_run| dry_run == "All"),
    }
}

fn parse_json(body: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(body).map_err(|error| {
        ApiError::bad_request(format!("the request body is not valid JSON: {error}"))
    })
}

#[expect(
    clippy::too_many_arguments,
    reason = "one request's parts, passed through once"
)]
async fn collection(
    app: &App,
    method: Method,
    resource: &'static ResourceType,
    namespace: Option<String>,
    query: &HashMap<String, String>,
    accept: &str,
    content_type: &str,
    body: Bytes,
) -> Result<Response, ApiError> {
    let state = &app.state;
    match method {
        Method::GET => {
            let selectors = Selectors::parse(
                query.get("labelSelector").map(String::as_str),
                query.get("fieldSelector").map(String::as_str),
            )?;
            let watching = query
                .get("watch")
                .is_some_and(|watch| watch == "1" || watch == "true");
            if watching {
                return watch(
                    app,
                    resource,
                    namespace.as_deref(),
                    selectors,
                    query,
                    accept,
                );
            }
            let (items, revision) = state.list(resource, namespace.as_deref(), &selectors);
            if table::wants_table(accept) {
                return Ok(json_response(
                    StatusCode::OK,
                    &table::to_table(resource, &items, revision),
                ));
            }
            Ok(json_response(
                StatusCode::OK,
                &json!({
                    "kind": format!("{}List", resource.kind),
                    "apiVersion": resource.api_version(),
                    "metadata": { "resourceVersion": revision.to_string() },
                    "items": items,
                }),
            ))
        }
        Method::POST => {
            if content_type.contains("yaml") {
                return Err(ApiError::unsupported_media_type(content_type));
            }
            let object = parse_json(&body)?;
            let namespace = namespace.unwrap_or_default();
            let created = state
                .create(resource, &namespace, object, &write_options(query))
                .await?;
            Ok(json_response(StatusCode::CREATED, &created))
        }
        other => Err(ApiError::method_not_allowed(other.as_str())),
    }
}

fn watch(
    app: &App,
    resource: &'static ResourceType,
    namespace: Option<&str>,
    selectors: Selectors,
    query: &HashMap<String, String>,
    accept: &str,
) -> Result<Response, ApiError> {
    let since = match query.get("resourceVersion").map(String::as_str) {
        None | Some("") => None,
        Some(text) => Some(
            text.parse::<u64>()
                .map_err(|_| ApiError::bad_request(format!("invalid resourceVersion '{text}'")))?,
        ),
    };
    let timeout = query
        .get("timeoutSeconds")
        .and_then(|seconds| seconds.parse::<u64>().ok())
        .map(Duration::from_secs)
        .unwrap_or(Duration::from_secs(1800));
    let as_table = table::wants_table(accept);
    let (backlog, mut receiver) = app.state.watch(resource, namespace, since)?;
    let namespace = namespace.map(str::to_owned);
    let stop = app.stop.clone();
    let (sender, stream_receiver) = tokio::sync::mpsc::channel::<Result<Bytes, Infallible>>(64);
    let encode = move |event: &WatchEvent| -> Option<Bytes> {
        if !selectors.matches(&event.object) {
            return None;
        }
        let revision = event.revision;
        let object = if as_table {
            table::to_table(resource, std::slice::from_ref(&event.object), revision)
        } else {
            event.object.clone()
        };
        let mut line = json!({ "type": event.event_type, "object": object }).to_string();
        line.push('\n');
        Some(Bytes::from(line))
    };
    let in_scope = move |event: &WatchEvent| {
        std::ptr::eq(event.resource, resource)
            && namespace
                .as_deref()
                .is_none_or(|namespace| !resource.namespaced || event.namespace() == namespace)
    };
    tokio::spawn(async move {
        for event in &backlog {
            if let Some(line) = encode(event)
                && sender.send(Ok(line)).await.is_err()
            {
                return;
            }
        }
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = &mut deadline => return,
                _ = sender.closed() => return,
                received = receiver.recv() => match received {
                    Ok(event) => {
                        if in_scope(&event)
                            && let Some(line) = encode(&event)
                            && sender.send(Ok(line)).await.is_err()
                        {
                            return;
                        }
                    }
                    // A watcher that fell behind is ended; clients re-list, as with the real server.
                    Err(_) => return,
                },
            }
        }
    });
    let stream = tokio_stream::wrappers::ReceiverStream::new(stream_receiver);
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::TRANSFER_ENCODING, "chunked")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response()))
}

#[expect(
    clippy::too_many_arguments,
    reason = "one request's parts, passed through once"
)]
async fn object(
    app: &App,
    method: Method,
    resource: &'static ResourceType,
    namespace: &str,
    name: &str,
    subresource: Option<&str>,
    query: &HashMap<String, String>,
    accept: &str,
    content_type: &str,
    body: Bytes,
) -> Result<Response, ApiError> {
    let state = &app.state;
    let options = write_options(query);
    let patch_kind = || {
        PatchKind::from_content_type(content_type)
            .ok_or_else(|| ApiError::unsupported_media_type(content_type))
    };
    match (subresource, method) {
        (None, Method::GET) => {
            let object = state.get(resource, namespace, name)?;
            if table::wants_table(accept) {
                let revision = state.revision();
                return Ok(json_response(
                    StatusCode::OK,
                    &table::to_table(resource, &[object], revision),
                ));
            }
            Ok(json_response(StatusCode::OK, &object))
        }
        (None, Method::PUT) => {
            let object = parse_json(&body)?;
            let updated = state
                .update(resource, namespace, name, object, &options)
                .await?;
            Ok(json_response(StatusCode::OK, &updated))
        }
        (None, Method::PATCH) => {
            let kind = patch_kind()?;
            let existed = state.get(resource, namespace, name).is_ok();
            let patched = state
                .patch(resource, namespace, name, kind, &body, &options)
                .await?;
            let code = if existed {
                StatusCode::OK
            } else {
                StatusCode::CREATED
            };
            Ok(json_response(code, &patched))
        }
        (None, Method::DELETE) => {
            let deleted = state.delete(resource, namespace, name, &options).await?;
            Ok(json_response(StatusCode::OK, &deleted))
        }
        (Some("scale"), method) if resource.scale => match method {
            Method::GET => Ok(json_response(
                StatusCode::OK,
                &state.get_scale(resource, namespace, name)?,
            )),
            Method::PUT => Ok(json_response(
                StatusCode::OK,
                &state
                    .write_scale(resource, namespace, name, None, &body, &options)
                    .await?,
            )),
            Method::PATCH => {
                let kind = patch_kind()?;
                Ok(json_response(
                    StatusCode::OK,
                    &state
                        .write_scale(resource, namespace, name, Some(kind), &body, &options)
                        .await?,
                ))
            }
            other => Err(ApiError::method_not_allowed(other.as_str())),
        },
        (Some("status"), Method::GET) => Ok(json_response(
            StatusCode::OK,
            &state.get(resource, namespace, name)?,
        )),
        (Some("log"), Method::GET) if resource.kind == "Pod" => {
            let pod = state.get(resource, namespace, name)?;
            Ok(pod_log(&pod, query))
        }
        _ => Err(ApiError::no_such_resource()),
    }
}

fn pod_log(pod: &Value, query: &HashMap<String, String>) -> Response {
    let containers = pod["spec"]["containers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let container = query
        .get("container")
        .cloned()
        .or_else(|| {
            containers
                .first()
                .and_then(|first| first["name"].as_str().map(str::to_owned))
        })
        .unwrap_or_default();
    let image = containers
        .iter()
        .find(|item| item["name"] == container.as_str())
        .and_then(|item| item["image"].as_str())
        .unwrap_or("unknown");
    let started = pod["status"]["startTime"].as_str().unwrap_or("");
    let mut lines = vec![
        format!("{started} container {container} started from image {image}"),
        format!("{started} running in the ankus sandbox (no process; logs are emulated)"),
    ];
    if let Some(tail) = query
        .get("tailLines")
        .and_then(|tail| tail.parse::<usize>().ok())
    {
        let skip = lines.len().saturating_sub(tail);
        lines.drain(..skip);
    }
    let mut text = lines.join("\n");
    text.push('\n');
    (StatusCode::OK, [(header::CONTENT_TYPE, "text/plain")], text).into_response()
}

fn version() -> Value {
    let (major, minor) = SERVER_VERSION;
    json!({
        "major": major,
        "minor": minor,
        "gitVersion": format!("v{major}.{minor}.0-ankus-sandbox"),
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2024-01-01T00:00:00Z",
        "goVersion": "go1.21.0",
        "compiler": "gc",
        "platform": "linux/amd64",
    })
}

fn group_document(group: &str) -> Option<Value> {
    resources::groups().contains(&group).then(|| {
        let version = json!({ "groupVersion": format!("{group}/v1"), "version": "v1" });
        json!({
            "kind": "APIGroup",
            "apiVersion": "v1",
            "name": group,
            "versions": [version.clone()],
            "preferredVersion": version,
        })
    })
}

fn group_list() -> Value {
    let groups: Vec<Value> = resources::groups()
        .into_iter()
        .filter_map(|group| {
            let mut document = group_document(group)?;
            if let Some(map) = document.as_object_mut() {
                map.remove("kind");
                map.remove("apiVersion");
            }
            Some(document)
        })
        .collect();
    json!({ "kind": "APIGroupList", "apiVersion": "v1", "groups": groups })
}

const VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

fn resource_list(group: &str, version: &str) -> Option<Value> {
    let served: Vec<&ResourceType> = RESOURCES
        .iter()
        .filter(|resource| resource.group == group && resource.version == version)
        .collect();
    if served.is_empty() {
        return None;
    }
    let mut entries = Vec::new();
    for resource in served {
        let mut entry = json!({
            "name": resource.plural,
            "singularName": resource.singular,
            "namespaced": resource.namespaced,
            "kind": resource.kind,
            "verbs": VERBS,
        });
        if !resource.short_names.is_empty() {
            entry["shortNames"] = json!(resource.short_names);
        }
        entries.push(entry);
        if resource.scale {
            entries.push(json!({
                "name": format!("{}/scale", resource.plural),
                "singularName": "",
                "namespaced": resource.namespaced,
                "group": "autoscaling",
                "version": "v1",
                "kind": "Scale",
                "verbs": ["get", "patch", "update"],
            }));
        }
        entries.push(json!({
            "name": format!("{}/status", resource.plural),
            "singularName": "",
            "namespaced": resource.namespaced,
            "kind": resource.kind,
            "verbs": ["get"],
        }));
        if resource.kind == "Pod" {
            entries.push(json!({
                "name": "pods/log",
                "singularName": "",
                "namespaced": true,
                "kind": "Pod",
                "verbs": ["get"],
            }));
            entries.push(json!({
                "name": "pods/portforward",
                "singularName": "",
                "namespaced": true,
                "kind": "PodPortForwardOptions",
                "verbs": ["create", "get"],
            }));
        }
    }
    let group_version = if group.is_empty() {
        version.to_owned()
    } else {
        format!("{group}/{version}")
    };
    Some(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": entries,
    }))
}

fn openapi_root() -> Value {
    let mut paths = serde_json::Map::new();
    paths.insert(
        "api/v1".to_owned(),
        json!({ "serverRelativeURL": "/openapi/v3/api/v1?hash=ankus" }),
    );
    for group in resources::groups() {
        paths.insert(
            format!("apis/{group}/v1"),
            json!({ "serverRelativeURL": format!("/openapi/v3/apis/{group}/v1?hash=ankus") }),
        );
    }
    json!({ "paths": paths })
}

/// A minimal OpenAPI v3 document per group version: one PATCH operation per kind that
/// declares the `fieldValidation` parameter, so kubectl leaves validation to the server.
fn openapi_group_version(group: &str, version: &str) -> Option<Value> {
    let prefix = if group.is_empty() {
        format!("/api/{version}")
    } else {
        format!("/apis/{group}/{version}")
    };
    let mut paths = serde_json::Map::new();
    for resource in RESOURCES
        .iter()
        .filter(|resource| resource.group == group && resource.version == version)
    {
        let path = if resource.namespaced {
            format!(
                "{prefix}/namespaces/{{namespace}}/{}/{{name}}",
                resource.plural
            )
        } else {
            format!("{prefix}/{}/{{name}}", resource.plural)
        };
        paths.insert(
            path,
            json!({
                "patch": {
                    "operationId": format!("patch{}", resource.kind),
                    "parameters": [
                        { "name": "fieldValidation", "in": "query", "schema": { "type": "string" } },
                        { "name": "fieldManager", "in": "query", "schema": { "type": "string" } },
                    ],
                    "responses": { "200": { "description": "OK" } },
                    "x-kubernetes-action": "patch",
                    "x-kubernetes-group-version-kind": {
                        "group": group, "version": version, "kind": resource.kind,
                    },
                },
            }),
        );
    }
    if paths.is_empty() {
        return None;
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": { "title": "Kubernetes", "version": "v1.29.0-ankus-sandbox" },
        "paths": paths,
        "components": { "schemas": {} },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Serves a fresh state on 127.0.0.1:0; the server stops when the token is dropped.
    async fn start() -> (std::net::SocketAddr, tokio_util::sync::DropGuard) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        let identity = ServerIdentity::generate().expect("certificate");
        tokio::spawn(async move {
            serve(
                listener,
                Arc::new(KubeState::new()),
                &identity,
                async move {
                    stopped.cancelled().await;
                },
            )
            .await
        });
        (address, stop.drop_guard())
    }

    /// `GET path` with an optional `Authorization` header: the status code and the JSON body.
    async fn get(
        address: std::net::SocketAddr,
        path: &str,
        authorization: Option<&str>,
    ) -> (u16, Value) {
        let mut stream = tokio::net::TcpStream::connect(address)
            .await
            .expect("connect");
        let mut request =
            format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n");
        if let Some(value) = authorization {
            request.push_str(&format!("Authorization: {value}\r\n"));
        }
        request.push_str("\r\n");
        stream.write_all(request.as_bytes()).await.expect("write");
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.expect("read");
        let code = answer
            .split(' ')
            .nth(1)
            .and_then(|code| code.parse().ok())
            .expect("status line");
        let body = answer.split_once("\r\n\r\n").map_or("", |(_, body)| body);
        (code, serde_json::from_str(body).unwrap_or(Value::Null))
    }

    fn unauthorized_status(body: &Value) -> bool {
        body["kind"] == "Status"
            && body["status"] == "Failure"
            && body["reason"] == "Unauthorized"
            && body["code"] == 401
    }

    #[tokio::test]
    async fn the_kubernetes_api_refused_no_request_without_the_bearer_token() {
        let (address, _stop) = start().await;
        let bearer = format!("Bearer {SANDBOX_TOKEN}");
        let (code, _) = get(address, "/api/v1/namespaces", Some(&bearer)).await;
        assert_eq!(code, 200);
        let lowercase = format!("bearer {SANDBOX_TOKEN}");
        assert_eq!(
            get(address, "/api/v1/namespaces", Some(&lowercase)).await.0,
            200
        );

        for authorization in [None, Some("Bearer wrong"), Some("Basic YWRtaW46YWRtaW4=")] {
            let (code, body) = get(address, "/api/v1/namespaces", authorization).await;
            assert_eq!(code, 401, "{authorization:?}: {body}");
            assert!(unauthorized_status(&body), "{authorization:?}: {body}");
        }
        // Anonymous clients may read the version, as from a real API server; a wrong token
        // may not.
        assert_eq!(get(address, "/version", None).await.0, 200);
        let (code, body) = get(address, "/version", Some("Bearer wrong")).await;
        assert_eq!(code, 401);
        assert!(unauthorized_status(&body), "{body}");
    }
}
