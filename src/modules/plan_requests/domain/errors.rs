//! The plan_requests module's failures.

use crate::core::error::{ErrorCode, ErrorKind, Failure, module_error};

#[derive(Debug, thiserror::Error)]
pub enum PlanRequestsError {
    #[error("plan request not found")]
    NotFound,
    #[error("this project has a pending plan request already")]
    AlreadyPending,
    #[error("this request was resolved already")]
    AlreadyResolved,
    #[error(transparent)]
    Common(#[from] Failure),
}

module_error!(PlanRequestsError);

impl ErrorKind for PlanRequestsError {
    fn code(&self) -> ErrorCode {
        match self {
            PlanRequestsError::NotFound => ErrorCode::NotFound,
            PlanRequestsError::AlreadyPending | PlanRequestsError::AlreadyResolved => {
                ErrorCode::Conflict
            }
            PlanRequestsError::Common(failure) => failure.code(),
        }
    }

    fn common(&self) -> Option<&Failure> {
        match self {
            PlanRequestsError::Common(failure) => Some(failure),
            _ => None,
        }
    }
}
