//! The billing module's failures.

use crate::core::error::{ErrorCode, ErrorKind, Failure, module_error};

#[derive(Debug, thiserror::Error)]
pub enum BillingError {
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("a plan with this code exists already")]
    PlanExists,
    #[error("this plan is in use (by {0} projects or requests); hide it instead")]
    PlanInUse(u64),
    #[error("the default plan must stay public")]
    DefaultHidden,
    #[error("there must be a default plan: make another plan the default instead")]
    NoDefault,
    #[error(transparent)]
    Common(#[from] Failure),
}

module_error!(BillingError);

impl ErrorKind for BillingError {
    fn code(&self) -> ErrorCode {
        match self {
            BillingError::NotFound(_) => ErrorCode::NotFound,
            BillingError::PlanExists | BillingError::PlanInUse(_) => ErrorCode::Conflict,
            BillingError::DefaultHidden | BillingError::NoDefault => ErrorCode::Conflict,
            BillingError::Common(failure) => failure.code(),
        }
    }

    fn common(&self) -> Option<&Failure> {
        match self {
            BillingError::Common(failure) => Some(failure),
            _ => None,
        }
    }
}

/// What another module sees of a billing failure.
impl From<BillingError> for Failure {
    fn from(error: BillingError) -> Failure {
        match error {
            BillingError::NotFound(what) => Failure::NotFound(what),
            BillingError::Common(failure) => failure,
            other => Failure::internal(other),
        }
    }
}
