pub(in crate::modules::analytics) mod errors;
