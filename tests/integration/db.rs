//! Units of work and soft-delete helpers against real PostgreSQL.

use avatar_platform::core::clock::{Clock, SystemClock};
use avatar_platform::core::db::{SoftDelete, new_id, restore, soft_delete};
use sea_orm::entity::prelude::*;
use sea_orm::{ActiveValue::Set, ConnectionTrait};

use crate::helpers::TestDatabase;

mod widget {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "widgets")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub name: String,
        pub created_at: DateTimeUtc,
        pub deleted_at: Option<DateTimeUtc>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

impl SoftDelete for widget::Entity {
    fn deleted_at() -> widget::Column {
        widget::Column::DeletedAt
    }
}

async fn setup() -> (TestDatabase, avatar_platform::core::db::Db) {
    let database = TestDatabase::create().await;
    let db = database.migrated_db().await;
    db.execute_unprepared(
        "CREATE TABLE widgets (id uuid PRIMARY KEY, name text NOT NULL, \
         created_at timestamptz NOT NULL, deleted_at timestamptz)",
    )
    .await
    .unwrap();
    (database, db)
}

fn widget(name: &str) -> widget::ActiveModel {
    widget::ActiveModel {
        id: Set(new_id()),
        name: Set(name.into()),
        created_at: Set(SystemClock.now()),
        deleted_at: Set(None),
    }
}

#[tokio::test]
async fn a_unit_of_work_commits_all_or_nothing() {
    let (_database, db) = setup().await;
    let uow = db.begin().await.unwrap();
    widget("kept").insert(&*uow).await.unwrap();
    uow.commit().await.unwrap();

    let uow = db.begin().await.unwrap();
    widget("rolled back").insert(&*uow).await.unwrap();
    widget("also rolled back").insert(&*uow).await.unwrap();
    drop(uow);

    let names: Vec<String> = widget::Entity::find()
        .all(db.connection())
        .await
        .unwrap()
        .into_iter()
        .map(|w| w.name)
        .collect();
    assert_eq!(names, vec!["kept".to_owned()]);
}

#[tokio::test]
async fn soft_deleted_rows_are_hidden_and_can_be_restored() {
    let (_database, db) = setup().await;
    let a = widget("a").insert(db.connection()).await.unwrap();
    let b = widget("b").insert(db.connection()).await.unwrap();

    let deleted = soft_delete::<widget::Entity, _>(
        db.connection(),
        SystemClock.now(),
        widget::Column::Id.eq(a.id),
    )
    .await
    .unwrap();
    assert_eq!(deleted, 1);
    // Deleting again changes nothing and keeps the first deletion time.
    let first_deleted_at = widget::Entity::find_by_id(a.id)
        .one(db.connection())
        .await
        .unwrap()
        .unwrap()
        .deleted_at
        .expect("deleted_at set");
    assert_eq!(
        soft_delete::<widget::Entity, _>(
            db.connection(),
            SystemClock.now(),
            widget::Column::Id.eq(a.id),
        )
        .await
        .unwrap(),
        0
    );

    let live: Vec<Uuid> = widget::Entity::find_live()
        .all(db.connection())
        .await
        .unwrap()
        .into_iter()
        .map(|w| w.id)
        .collect();
    assert_eq!(live, vec![b.id]);
    let row = widget::Entity::find_by_id(a.id)
        .one(db.connection())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.deleted_at, Some(first_deleted_at));

    restore::<widget::Entity, _>(db.connection(), widget::Column::Id.eq(a.id))
        .await
        .unwrap();
    assert_eq!(
        widget::Entity::find_live()
            .all(db.connection())
            .await
            .unwrap()
            .len(),
        2
    );
}

#[tokio::test]
async fn timestamps_round_trip_exactly_and_ids_sort_by_creation() {
    let (_database, db) = setup().await;
    let first = widget("first").insert(db.connection()).await.unwrap();
    let second = widget("second").insert(db.connection()).await.unwrap();
    assert!(first.id < second.id, "UUID v7 ids sort by creation time");
    assert_eq!(first.id.get_version_num(), 7);
    let read = widget::Entity::find_by_id(first.id)
        .one(db.connection())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(read.created_at, first.created_at);
    assert_eq!(
        serde_json::to_value(read.created_at)
            .unwrap()
            .as_str()
            .unwrap()
            .chars()
            .last(),
        Some('Z'),
        "RFC 3339 in UTC"
    );
}
