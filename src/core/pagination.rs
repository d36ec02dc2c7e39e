//! `?limit=&offset=` and the list envelope `{"items", "total", "limit", "offset"}`.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use validator::Validate;

pub const DEFAULT_LIMIT: u64 = 50;
pub const MAX_LIMIT: u64 = 200;
/// The largest `offset` a list takes (10^9; PostgreSQL's own limit is `i64::MAX`).
pub const MAX_OFFSET: u64 = 1_000_000_000;

#[derive(Debug, Clone, Copy, Deserialize, Validate, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// 1 to 200, default 50.
    #[validate(range(min = 1, max = 200))]
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u64>,
    /// Items to skip, default 0, at most 10^9.
    #[validate(range(max = MAX_OFFSET))]
    #[param(maximum = 1_000_000_000)]
    pub offset: Option<u64>,
}

impl PageParams {
    pub fn limit(&self) -> u64 {
        self.limit.unwrap_or(DEFAULT_LIMIT).min(MAX_LIMIT)
    }

    pub fn offset(&self) -> u64 {
        self.offset.unwrap_or(0)
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub total: u64,
    pub limit: u64,
    pub offset: u64,
}

impl<T> Page<T> {
    pub fn new(items: Vec<T>, total: u64, params: &PageParams) -> Self {
        Page {
            items,
            total,
            limit: params.limit(),
            offset: params.offset(),
        }
    }
}

/// One page of `select` (ordered by the caller) and the total count of its rows.
pub async fn fetch_page<E, C>(
    conn: &C,
    select: sea_orm::Select<E>,
    page: &PageParams,
) -> Result<(Vec<E::Model>, u64), sea_orm::DbErr>
where
    E: sea_orm::EntityTrait,
    E::Model: Sync,
    C: sea_orm::ConnectionTrait,
{
    use sea_orm::{PaginatorTrait, QuerySelect};
    let total = select.clone().count(conn).await?;
    let rows = select
        .offset(page.offset())
        .limit(page.limit())
        .all(conn)
        .await?;
    Ok((rows, total))
}
