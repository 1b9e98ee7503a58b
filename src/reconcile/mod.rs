//! The controller: the only place that knows both Kubernetes and OSS.
//! `plan` decides, `controller` acts, `status` reports.

pub mod controller;
pub mod plan;
pub mod status;
