//! Database migrations, one ordered list. Files are `mYYYYMMDD_NNNNNN_<module>_<action>.rs`,
//! each with a working `down`.

pub use sea_orm_migration::prelude::*;

mod m20261122_000001_core_extensions;
mod m20261122_000002_core_jobs;
mod m20261122_000003_core_events;
mod m20261122_000004_auth_users;
mod m20261122_000005_projects;
mod m20261122_000006_platform_config;
mod m20261122_000007_avatars;
mod m20261122_000008_documents;
mod m20261203_022553_documents_per_avatar_vector_indexes;
mod m20261203_023813_end_users_and_chat;
mod m20261203_081822_platform_config_outbound_allow_list;
mod m20261203_084848_auth_refresh_reuse_grace;
mod m20261203_085255_projects_invitations;
mod m20261203_090555_documents_processing_heartbeat;
mod m20261203_140000_billing;
mod m20261203_150000_plan_requests;
mod m20261203_160000_analytics_audit_log;
mod m20261203_170000_analytics_usage;
mod m20261203_180000_telegram;
mod m20261203_190000_notifications;
mod m20261204_080000_documents_vectors_in_background;
mod m20261204_090000_avatars_rag_language;
mod m20261204_100000_avatars_similarity_threshold;
mod m20261204_110000_auth_sessions_cache_invalidation;
mod m20261204_110001_projects_roles_cache_invalidation;
mod m20261204_120000_documents_vectors_cache_invalidation;
mod m20261204_130000_projects_api_keys_cache_invalidation;
mod m20261204_140000_avatars_cache_invalidation;
mod m20261204_150000_documents_chunks_by_avatar_hash;
mod m20261204_160000_avatars_slug;
mod m20261204_170000_projects_api_keys_avatars;
mod m20261204_180000_core_jobs_unique_while_active;
mod m20261204_190000_chat_conversations_follow_end_users;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261122_000001_core_extensions::Migration),
            Box::new(m20261122_000002_core_jobs::Migration),
            Box::new(m20261122_000003_core_events::Migration),
            Box::new(m20261122_000004_auth_users::Migration),
            Box::new(m20261122_000005_projects::Migration),
            Box::new(m20261122_000006_platform_config::Migration),
            Box::new(m20261122_000007_avatars::Migration),
            Box::new(m20261122_000008_documents::Migration),
            Box::new(m20261203_022553_documents_per_avatar_vector_indexes::Migration),
            Box::new(m20261203_023813_end_users_and_chat::Migration),
            Box::new(m20261203_081822_platform_config_outbound_allow_list::Migration),
            Box::new(m20261203_084848_auth_refresh_reuse_grace::Migration),
            Box::new(m20261203_085255_projects_invitations::Migration),
            Box::new(m20261203_090555_documents_processing_heartbeat::Migration),
            Box::new(m20261203_140000_billing::Migration),
            Box::new(m20261203_150000_plan_requests::Migration),
            Box::new(m20261203_160000_analytics_audit_log::Migration),
            Box::new(m20261203_170000_analytics_usage::Migration),
            Box::new(m20261203_180000_telegram::Migration),
            Box::new(m20261203_190000_notifications::Migration),
            Box::new(m20261204_080000_documents_vectors_in_background::Migration),
            Box::new(m20261204_090000_avatars_rag_language::Migration),
            Box::new(m20261204_100000_avatars_similarity_threshold::Migration),
            Box::new(m20261204_110000_auth_sessions_cache_invalidation::Migration),
            Box::new(m20261204_110001_projects_roles_cache_invalidation::Migration),
            Box::new(m20261204_120000_documents_vectors_cache_invalidation::Migration),
            Box::new(m20261204_130000_projects_api_keys_cache_invalidation::Migration),
            Box::new(m20261204_140000_avatars_cache_invalidation::Migration),
            Box::new(m20261204_150000_documents_chunks_by_avatar_hash::Migration),
            Box::new(m20261204_160000_avatars_slug::Migration),
            Box::new(m20261204_170000_projects_api_keys_avatars::Migration),
            Box::new(m20261204_180000_core_jobs_unique_while_active::Migration),
            Box::new(m20261204_190000_chat_conversations_follow_end_users::Migration),
        ]
    }
}
