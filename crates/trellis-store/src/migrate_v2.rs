//! The files table exactly as migration 2 created it. Frozen, like `v1`.

/// Uploaded files (the bytes live on disk).
pub mod file {
    use sea_orm::entity::prelude::*;

    /// One file.
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "trellis_files")]
    pub struct Model {
        /// UUIDv7.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        /// Original file name.
        pub name: String,
        /// Size in bytes.
        pub size: i64,
        /// MIME type.
        pub content_type: String,
        /// SHA-256 of the content, hex.
        pub sha256: String,
        /// Who uploaded it.
        pub created_by: Option<String>,
        /// When.
        pub created_at: DateTimeUtc,
    }

    /// No relations are navigated through sea-orm.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
