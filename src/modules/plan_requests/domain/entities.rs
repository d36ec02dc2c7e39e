//! The plan_requests table. Visible to this module only.

pub(in crate::modules::plan_requests) mod plan_request {
    use sea_orm::entity::prelude::*;

    use crate::core::ids::{PlanRequestId, ProjectId, UserId};
    use crate::modules::plan_requests::PlanRequestStatus;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "plan_requests")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: PlanRequestId,
        pub project_id: ProjectId,
        pub plan_code: String,
        pub comment: Option<String>,
        pub status: PlanRequestStatus,
        pub requested_by: Option<UserId>,
        pub resolved_by: Option<UserId>,
        pub resolution_comment: Option<String>,
        pub created_at: DateTimeUtc,
        pub resolved_at: Option<DateTimeUtc>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
