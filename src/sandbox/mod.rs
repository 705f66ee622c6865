//! The sandbox: emulated servers that let every script be rehearsed on one machine.

pub mod kube_api;
