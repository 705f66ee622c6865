//! Integration tests, one binary: the CLI end to end, each client against the sandbox or a
//! real peer.

mod backup;
mod flows;
mod faults;
mod host;
mod hostile;
mod kube;
mod pachd_client;
mod python_conformance;
mod repl;
mod sandbox;
mod secrets;
mod scripts;
mod store;
mod support;
