pub(super) mod v1;
