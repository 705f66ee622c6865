//! Rhai-facing packages, one per domain. Bindings are thin: they convert arguments, call a
//! client, pass mutations through the dry-run gate and convert errors once.

pub mod backup;
pub mod kube;
pub mod pachd;
pub mod store;
pub mod sys;
pub mod transfer;

use rhai::{Engine, exported_module};

/// Registers every package: `sys` functions globally, the others under their namespace.
pub fn register_all(engine: &mut Engine) {
    engine.register_global_module(exported_module!(sys::sys_api).into());
    engine.register_static_module("json", exported_module!(sys::json_api).into());
    engine.register_static_module("fs", exported_module!(sys::fs_api).into());
    backup::register_types(engine);
    engine.register_static_module("backup", exported_module!(backup::backup_api).into());
    engine.register_static_module("kube", exported_module!(kube::kube_api).into());
    kube::register_types(engine);
    pachd::register_types(engine);
    engine.register_static_module("pachd", exported_module!(pachd::pachd_api).into());
    engine.register_global_module(exported_module!(transfer::transfer_api).into());
    store::register_types(engine);
    engine.register_static_module("store", exported_module!(store::store_api).into());
}

/// The one path policy of every binding that touches local files: `path` resolved (symlinks
/// and `..` included) to a place inside the allowed directories, else a `permission_denied`
/// error naming `--allow-path`.
pub(crate) fn local_path(
    host: &crate::host::context::HostCtx,
    path: &str,
    position: rhai::Position,
) -> crate::host::error::BindingResult<std::path::PathBuf> {
    host.options().fs_policy.check(path).map_err(|message| {
        crate::host::error::script_fail(crate::kind::Kind::PermissionDenied, message, position)
    })
}

/// [`local_path`] for a target that may also be a URL: a path or a `file://` URL is checked,
/// other URLs and `-` touch no local file.
pub(crate) fn local_target(
    host: &crate::host::context::HostCtx,
    target: &str,
    position: rhai::Position,
) -> crate::host::error::BindingResult<()> {
    host.options()
        .fs_policy
        .check_target(target)
        .map(|_| ())
        .map_err(|message| {
            crate::host::error::script_fail(crate::kind::Kind::PermissionDenied, message, position)
        })
}
