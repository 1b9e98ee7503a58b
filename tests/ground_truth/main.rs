//! Ground truth: the claims of the fast suite checked on a real Kubernetes API server (the
//! upstream apiextensions-apiserver of `../shared/apiserver`, started by `scripts/apiserver-check`,
//! which names its kubeconfig in `REAL_KUBECONFIG`). Every scenario runs on the in-process test
//! server and on the real one, and their observable outcomes must agree. Run only by the
//! `ground-truth` nextest profile (`.config/nextest.toml`); without `REAL_KUBECONFIG` every test
//! fails with a message saying so. The operator binary's tests start servers of their own from
//! the kit named by `REAL_APISERVER_KIT`.

#[path = "../support/mod.rs"]
mod support;

mod admission;
mod behaviour;
mod kit;
mod operator;
mod target;
