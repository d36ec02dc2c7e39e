//! `documents`: an avatar's knowledge. Upload (streamed to the blob store, type sniffed,
//! de-duplicated by hash), processing as a durable job (parse → chunk → embed → store in
//! pgvector + full text), reprocess, delete, and hybrid retrieval for the chat pipeline.

mod api;
mod chunk_store;
mod chunking;
mod domain;
mod embedding;
mod parsing;
mod retrieval;
mod sandbox;
mod service;
mod subscribers;
mod tasks;
mod vector_cache;
mod vector_index;

#[cfg(feature = "testkit")]
pub mod testkit;

use std::sync::Arc;
use std::time::Duration;

use crate::app::{AppContext, Module, Registry, startup_check};
use crate::modules::avatars::AvatarsService;
use crate::modules::billing::BillingService;
use crate::modules::platform_config::PlatformConfigService;

pub use domain::errors::DocumentsError;
pub use domain::events::DocumentsEvent;
pub use parsing::{DocumentFormat, ParseLimits};
pub use retrieval::SearchHit;
pub use sandbox::{ChildLimits, ParseRequest, run_child as parse_document_command};
pub use service::{AvatarSearch, ProjectEmbeddings};
pub use service::{DocumentStatus, DocumentView, DocumentsService, ReceivedFile};

pub const MODULE: Module = Module {
    name: "documents",
    install,
    openapi: <api::v1::Doc as utoipa::OpenApi>::openapi,
};

fn install(context: &AppContext, registry: &mut Registry) -> anyhow::Result<()> {
    let settings = &context.settings;
    let embedders = embedding::EmbedderSource::new(
        settings.embeddings.clone(),
        registry.get::<PlatformConfigService>()?,
        context.outbound.clone(),
    )
    .map_err(|error| anyhow::anyhow!("embeddings: {error}"))?;
    let built_in_model = embedders.built_in_model();
    let service = Arc::new(DocumentsService::new(
        context.db.clone(),
        context.bus.clone(),
        context.blobs.clone(),
        registry.get::<AvatarsService>()?,
        embedders,
        service::DocumentsConfig {
            settings: settings.documents.clone(),
            retrieval: settings.retrieval.clone(),
            upload_dir: settings.data_dir.join("tmp").join("uploads"),
            sandbox: sandbox::Sandbox::new(&settings.documents)
                .map_err(|error| anyhow::anyhow!("documents: {error}"))?,
            clock: context.clock.clone(),
            billing: registry.get::<BillingService>()?,
            caches: context.exact_caches.clone(),
        },
    ));

    registry.subscribe(Arc::new(subscribers::DeleteAvatarDocuments(
        service.clone(),
    )));
    registry.subscribe(Arc::new(subscribers::ReindexAvatarText(service.clone())));
    registry.job_data(service.clone());
    // An index build stops itself (statement_timeout) before its job would time out.
    registry.job_timeout(
        tasks::BuildVectorIndex::NAME,
        settings.retrieval.index_build_timeout() + Duration::from_secs(60),
    );
    // A slice of indexing is 20 s plus one batch; the limit only catches a hang.
    registry.job_timeout(tasks::IndexDocument::NAME, Duration::from_secs(300));
    registry.job_timeout(
        tasks::ProcessDocument::NAME,
        settings.documents.job_timeout(),
    );
    registry.periodic(Box::new(tasks::RecoverDocuments {
        cron: settings.documents.recovery_cron.clone(),
    }));
    let (db, dimension) = (context.db.clone(), settings.embeddings.dimension);
    registry.startup_check(
        "embedding dimension",
        startup_check(move || chunk_store::check_embedding_dimension(db.clone(), dimension)),
    );
    // An endpoint's model may change at run time (platform config): only the built-in ones
    // are known at start.
    if let Some(model) = built_in_model {
        let db = context.db.clone();
        registry.startup_check(
            "embedding model",
            startup_check(move || chunk_store::check_embedding_model(db.clone(), model.clone())),
        );
    }
    registry.provide(service);
    registry.routes(api::v1::configure);
    Ok(())
}
