//! Ground truth: the claims of the fast suite checked on a real Kubernetes API server (the
//! upstream apiextensions-apiserver of `../shared/apiserver`, started by `scripts/apiserver-check`,
//! which names its kubeconfig in `REAL_KUBECONFIG`). Every scenario runs on the in-process test
//! server and on the real one, and their observable outcomes must agree. Run only by the
//! `ground-truth` nextest profile (`.config/nextest.toml`); without `REAL_KUBECONFIG` every test
//! fails with a message saying so.

#[path = "../support/mod.rs"]
mod support;

mod admission;
mod behaviour;
mod target;
