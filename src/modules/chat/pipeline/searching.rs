//! Retrieval started before the answer. The avatar's passages are searched (the question
//! embedded, both lists fetched) while the question is still being checked and stored — end
//! user, conversation, history, reservation — which the search does not need, so the answer's
//! first token waits for the longer of the two, not for both.
//!
//! The search starts once the question can only be refused by its conversation or its token
//! budget (content, avatar and a blocked end user are checked first); a refused question drops
//! its search, which stops it. It has no effect but the question's embedding.

use std::sync::Arc;
use std::time::Instant;

use tokio_util::task::AbortOnDropHandle;

use crate::modules::avatars::AvatarView;
use crate::modules::documents::{AvatarSearch, DocumentsError, DocumentsService};

/// A search under way; dropping it stops it.
pub struct Search {
    handle: AbortOnDropHandle<Searched>,
}

/// What a search found, and how long it took itself (not the wait for it).
pub(super) struct Searched {
    pub(super) found: Result<AvatarSearch, DocumentsError>,
    pub(super) took_ms: u32,
}

impl Search {
    /// Starts searching `avatar`'s passages for `question` (its `top_k`).
    pub fn start(documents: &Arc<DocumentsService>, avatar: &AvatarView, question: &str) -> Self {
        let (documents, avatar, question) =
            (documents.clone(), avatar.clone(), question.to_owned());
        let top_k = usize::try_from(avatar.rag.top_k).unwrap_or(1);
        let handle = tokio::spawn(async move {
            let started = Instant::now();
            let found = documents.search_avatar(&avatar, &question, top_k).await;
            Searched {
                found,
                took_ms: super::millis(started),
            }
        });
        Search {
            handle: AbortOnDropHandle::new(handle),
        }
    }

    /// Waits for the search's outcome (once).
    pub(super) async fn finish(&mut self) -> Searched {
        (&mut self.handle).await.unwrap_or_else(|error| Searched {
            found: Err(DocumentsError::internal(format!(
                "the search task failed: {error}"
            ))),
            took_ms: 0,
        })
    }
}
