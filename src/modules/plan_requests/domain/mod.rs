pub(in crate::modules::plan_requests) mod entities;
pub(in crate::modules::plan_requests) mod errors;
pub(in crate::modules::plan_requests) mod events;
