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
